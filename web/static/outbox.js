// A room's own messages until the server has stored them (docs/protocol.md
// §19.3, §26.3).
//
// Each message gets a nonce of its own and shows at once as "sending". It is
// confirmed by whichever comes first: the send's result or the sender's own
// `message` event carrying the nonce. A timeout, an error reply or a closed
// socket marks it "failed — retry"; a retry sends the same text with the same
// nonce, so the server answers with the first copy's seq if it had stored it
// and nobody hears it twice. Messages that failed only because the connection
// went are sent again by themselves once the room is joined again, within the
// time the server remembers nonces: one of them may have been stored, and its
// retry's result is what tells that copy from a second one.

import { NONCE_MEMORY_MS } from './protocol.js';

// 128 random bits as hex. crypto.getRandomValues, unlike randomUUID, also
// works on a page served over plain HTTP.
function newNonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export class Outbox {
  #list;
  #send;
  #onError;
  #author;
  #waiting = new Map(); // nonce -> {nonce, text, line, firstSentAt, sending, resendOnRejoin}

  /**
   * Shows messages in `list` (a MessageList) as written by `author`;
   * `send(text, nonce)` resolves to the send's result {seq, ts} or rejects
   * with a RequestError; `onError(error)` is told why a message failed.
   */
  constructor(list, author, send, onError) {
    this.#list = list;
    this.#author = author;
    this.#send = send;
    this.#onError = onError;
  }

  /** Sends a new message. */
  submit(text) {
    const entry = {
      nonce: newNonce(), text, line: null, firstSentAt: Date.now(), sending: false, resendOnRejoin: false,
    };
    entry.line = this.#list.addOutgoing(text, this.#author);
    this.#waiting.set(entry.nonce, entry);
    this.#transmit(entry);
  }

  /** The own `message` event for `nonce` arrived: that message is stored as `seq`. */
  acknowledge(nonce, seq, ts) {
    const entry = this.#waiting.get(nonce);
    if (entry) this.#confirm(entry, seq, ts);
  }

  /** The room was joined again: resend what failed with the connection. */
  resendAfterRejoin() {
    for (const entry of this.#waiting.values()) {
      const fresh = Date.now() - entry.firstSentAt < NONCE_MEMORY_MS;
      if (!entry.sending && entry.resendOnRejoin && fresh) this.#transmit(entry);
    }
  }

  #transmit(entry) {
    entry.sending = true;
    entry.resendOnRejoin = false;
    this.#list.markSending(entry.line);
    this.#send(entry.text, entry.nonce).then(
      (result) => {
        if (this.#waiting.get(entry.nonce) === entry) this.#confirm(entry, result.seq, result.ts);
      },
      (error) => {
        if (this.#waiting.get(entry.nonce) === entry) this.#fail(entry, error);
      },
    );
  }

  #confirm(entry, seq, ts) {
    this.#waiting.delete(entry.nonce);
    this.#list.confirm(entry.line, seq, ts);
  }

  #fail(entry, error) {
    entry.sending = false;
    entry.resendOnRejoin = error.connectionLost;
    this.#list.markFailed(entry.line, () => this.#transmit(entry));
    this.#onError(error);
  }
}
