// One chat WebSocket speaking protocol v2 (docs/protocol.md §17, §26.1).
//
// Every request gets an id and a promise; the reply with that id settles it.
// Several requests may be under way at once: v2 replies name their request,
// so unlike v1 nothing has to wait its turn. Two kinds of frame carry no id:
// a reply to a request refused by the rate limit (RATE_LIMITED), which
// answers the oldest request still waiting, since replies come in request
// order (§22); and {"error":{"code":"ROOM_ACCESS_DENIED"|"ROOM_INVALID",
// "room":R}}, the server taking the socket out of a room made staff-only or
// deleted (§19.2), which answers nothing. Events are handed on as they arrive.
//
// A request with no reply in time means the connection is stuck: it is
// dropped, and every request still waiting fails with DISCONNECTED, so the
// caller's reconnect starts from a clean slate.

import { SUBPROTOCOL } from './protocol.js';

/** A request failed on this side: no answer in time. */
export const TIMEOUT = 'TIMEOUT';
/** A request failed on this side: the socket closed, or was never open. */
export const DISCONNECTED = 'DISCONNECTED';

/**
 * Why a request failed: a server error code (§21), TIMEOUT or DISCONNECTED;
 * `until` is when a mute ends, for MUTED.
 */
export class RequestError extends Error {
  constructor(code, room, until) {
    super(code);
    this.code = code;
    this.room = room;
    this.until = until;
  }

  /** True when the connection, not the server, failed the request. */
  get connectionLost() {
    return this.code === TIMEOUT || this.code === DISCONNECTED;
  }
}

export class ChatSocket {
  #ws;
  #handlers;
  #replyTimeoutMs;
  #nextId = 1;
  #waiting = new Map(); // id -> {resolve, reject, timer}, in the order sent
  #closed = false;

  /**
   * Opens `url`. `handlers`: onOpen(), onEvent(frame), onRemoved(roomId)
   * and onClose(reason), called once, reason 'protocol' when the server
   * does not speak v2; no handler is called after onClose.
   */
  constructor(url, handlers, replyTimeoutMs) {
    this.#handlers = handlers;
    this.#replyTimeoutMs = replyTimeoutMs;
    this.#ws = new WebSocket(url, [SUBPROTOCOL]);
    this.#ws.addEventListener('open', () => {
      // A server without v2 answers without the subprotocol (§16); its v1
      // frames would be misread.
      if (this.#ws.protocol !== SUBPROTOCOL) this.#close('protocol');
      else this.#handlers.onOpen();
    });
    this.#ws.addEventListener('message', (event) => this.#receive(event.data));
    this.#ws.addEventListener('close', () => this.#close('closed'));
  }

  get isOpen() {
    return !this.#closed && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Sends a request; resolves to its result, rejects with a RequestError. */
  request(command, fields) {
    if (!this.isOpen) return Promise.reject(new RequestError(DISCONNECTED, fields.room));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.#waiting.has(id)) return;
        this.#waiting.delete(id);
        reject(new RequestError(TIMEOUT, fields.room));
        this.#close('timeout');
      }, this.#replyTimeoutMs);
      this.#waiting.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ command, id, ...fields }));
    });
  }

  /** Closes the connection; waiting requests fail with DISCONNECTED. */
  close() {
    this.#close('dropped');
  }

  #close(reason) {
    if (this.#closed) return;
    this.#closed = true;
    this.#ws.close();
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const { reject, timer } of waiting) {
      clearTimeout(timer);
      reject(new RequestError(DISCONNECTED));
    }
    this.#handlers.onClose(reason);
  }

  #receive(data) {
    if (this.#closed) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    if ('event' in frame) {
      this.#handlers.onEvent(frame);
    } else if ('result' in frame || 'error' in frame) {
      this.#reply(frame);
    }
  }

  #reply(frame) {
    const error = frame.error && typeof frame.error === 'object' ? frame.error : null;
    let id = frame.id;
    if (id === undefined) {
      const removal = error?.code === 'ROOM_ACCESS_DENIED' || error?.code === 'ROOM_INVALID';
      if (removal && error.room !== undefined) {
        this.#handlers.onRemoved(error.room, error.code);
        return;
      }
      id = this.#waiting.keys().next().value;
    }
    const waiting = this.#waiting.get(id);
    if (!waiting) return;
    this.#waiting.delete(id);
    clearTimeout(waiting.timer);
    if (error) waiting.reject(new RequestError(String(error.code), error.room, error.until));
    else waiting.resolve(frame.result);
  }
}
