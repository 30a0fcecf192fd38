// One room's messages as its pane shows them (docs/protocol.md §26.4).
//
// A room's messages arrive by several paths (the join result, history pages,
// live events, send results) and in any order; the list keys them by seq and
// keeps one line per seq, in seq order. Below them come the user's own
// messages that have no seq yet ("outgoing": sending, or failed), in the
// order typed. Notices (someone joined or left, a reload) go in where they
// happened and are not numbered.
//
// The view stays pinned to the newest line while the user is at the bottom,
// and a page of older messages added at the top leaves what the user is
// looking at where it was.

import { el } from './dom.js';
import { formatMessage } from './format.js';
import { paintUser } from './user-color.js';

// Within this many pixels of the bottom counts as being at the bottom.
const AT_BOTTOM_PX = 40;

function twoDigits(n) {
  return String(n).padStart(2, '0');
}

function timeNode(ts) {
  const date = new Date(ts);
  const now = new Date();
  const time = `${twoDigits(date.getHours())}:${twoDigits(date.getMinutes())}`;
  // Older than today: the day too, or "09:12" would read as this morning.
  const text = date.toDateString() === now.toDateString()
    ? time
    : `${date.toLocaleDateString(undefined, { day: 'numeric', month: 'short' })} ${time}`;
  return el('time', { class: 'msg-time', datetime: date.toISOString(), title: date.toLocaleString(), text });
}

// What a deleted message shows instead of its text.
function deletedText() {
  return el('p', { class: 'msg-text msg-deleted', text: 'message deleted' });
}

export class MessageList {
  #node;
  #isOwn;
  #seqs = []; // ascending
  #lines = new Map(); // seq -> li
  #atBottom = true; // as of the last scroll
  #canDelete;
  #onDelete;
  #ownAuthor = null; // the author of outgoing lines, this user
  // Seqs announced deleted before their message was shown here: shown
  // deleted when it comes.
  #deletedAhead = new Set();

  /**
   * Manages `node` (an <ol>); `isOwn(user)` says whether a message's author
   * is this user. Options: `canDelete(user)` says whether this user may
   * delete a message of `user` (a "delete" button on its line), and
   * `onDelete(seq)` is called when that button is clicked.
   */
  constructor(node, isOwn, { canDelete = () => false, onDelete = () => {} } = {}) {
    this.#node = node;
    this.#isOwn = isOwn;
    this.#canDelete = canDelete;
    this.#onDelete = onDelete;
    // The list shrinks when the online list above it fills in, and changes
    // with the window: whoever was reading the newest message still is.
    node.addEventListener('scroll', () => { this.#atBottom = this.#isAtBottom(); });
    new ResizeObserver(() => {
      if (this.#atBottom) node.scrollTop = node.scrollHeight;
    }).observe(node);
  }

  /** The lowest seq shown, or undefined when no message is. */
  get oldestSeq() {
    return this.#seqs[0];
  }

  /** Whether the user has scrolled to within `px` of the top. */
  nearTop(px) {
    return this.#node.scrollTop <= px;
  }

  /** Whether there is more than fits, so the user can scroll at all. */
  get overflows() {
    return this.#node.scrollHeight > this.#node.clientHeight;
  }

  /** Shows a stored message (§18.1) in its place; false if its seq is already shown. */
  add(message) {
    if (this.#lines.has(message.seq)) return false;
    this.#keepingBottom(() => this.#insert(message.seq, this.#messageLine(message)));
    return true;
  }

  /**
   * Shows `messages` instead of every message and notice shown (outgoing
   * ones stay), after a notice `marker` saying why when given.
   */
  replace(messages, marker) {
    for (const line of [...this.#node.children]) {
      if (!line.classList.contains('outgoing')) line.remove();
    }
    this.#seqs = [];
    this.#lines.clear();
    // The page comes as the server has it now, deletions included.
    this.#deletedAhead.clear();
    this.#bulk(() => {
      const before = this.#firstOutgoing();
      if (marker) this.#node.insertBefore(this.#noticeLine('reload', marker, Date.now()), before);
      for (const message of messages) this.#insert(message.seq, this.#messageLine(message));
    });
    this.#node.scrollTop = this.#node.scrollHeight;
  }

  /** Adds a history page (older than everything shown) at the top, keeping the view still. */
  prependOlder(messages) {
    const oldest = this.oldestSeq ?? Infinity;
    const older = messages.filter((message) => message.seq < oldest && !this.#lines.has(message.seq));
    this.#keepingView(() => this.#bulk(() => {
      const page = document.createDocumentFragment();
      for (const message of older) {
        const line = this.#messageLine(message);
        this.#lines.set(message.seq, line);
        page.append(line);
      }
      this.#seqs = [...older.map((message) => message.seq), ...this.#seqs];
      this.#node.prepend(page);
    }));
  }

  /**
   * The message `seq` was deleted: its line shows "message deleted" instead
   * of its text, and loses its delete button. A seq not shown yet is shown
   * deleted when it comes.
   */
  markDeleted(seq) {
    const line = this.#lines.get(seq);
    if (!line) {
      this.#deletedAhead.add(seq);
      return;
    }
    line.classList.add('deleted');
    line.querySelector('.msg-text')?.replaceWith(deletedText());
    line.querySelector('.delete-button')?.remove();
  }

  /** Shows or hides the "loading older messages" line at the top. */
  showLoadingOlder(loading) {
    const line = this.#node.querySelector(':scope > .loading-older');
    if (!loading && line) {
      this.#keepingView(() => line.remove());
    } else if (loading && !line) {
      this.#keepingView(() => this.#node.prepend(
        el('li', { class: 'notice loading-older', text: 'Loading older messages…' })));
    }
  }

  /** Adds a notice `li.notice-<kind>` after everything shown, outgoing lines excepted. */
  addNotice(kind, text, ts) {
    this.#keepingBottom(() => this.#node.insertBefore(this.#noticeLine(kind, text, ts), this.#firstOutgoing()));
  }

  /** Adds an own message that has no seq yet, marked as sending; returns its line. */
  addOutgoing(text, author) {
    this.#ownAuthor = author;
    const line = this.#messageLine({ ts: Date.now(), user: author, text });
    line.classList.add('outgoing');
    line.append(el('span', { class: 'msg-status' }));
    this.markSending(line);
    this.#node.append(line);
    this.#node.scrollTop = this.#node.scrollHeight;
    return line;
  }

  /** Marks an outgoing line as on its way. */
  markSending(line) {
    line.classList.add('pending');
    line.classList.remove('failed');
    line.querySelector('.msg-status').replaceChildren('sending…');
  }

  /** Marks an outgoing line as failed, with a retry button calling `onRetry`. */
  markFailed(line, onRetry) {
    line.classList.add('failed');
    line.classList.remove('pending');
    const retry = el('button', { type: 'button', class: 'retry-button', text: 'retry' });
    retry.addEventListener('click', onRetry);
    line.querySelector('.msg-status').replaceChildren('failed — ', retry);
  }

  /**
   * The server stored an outgoing line's message as `seq` at `ts`: the line
   * becomes that message, or goes if the message is already shown (it came
   * by another path, e.g. recovered after a reconnect, §26.3).
   */
  confirm(line, seq, ts) {
    line.remove();
    if (this.#lines.has(seq)) return;
    line.classList.remove('outgoing', 'pending', 'failed');
    line.querySelector('.msg-status').remove();
    line.querySelector('.msg-time').replaceWith(timeNode(ts));
    line.dataset.seq = String(seq);
    if (this.#canDelete(this.#ownAuthor)) this.#addDeleteButton(line, seq);
    this.#keepingBottom(() => this.#insert(seq, line));
    if (this.#deletedAhead.delete(seq)) this.markDeleted(seq);
  }

  #addDeleteButton(line, seq) {
    const button = el('button', {
      type: 'button', class: 'delete-button', text: 'delete', 'aria-label': 'Delete this message',
    });
    button.addEventListener('click', () => this.#onDelete(seq));
    line.append(button);
  }

  // Puts `line` before the line of the next higher seq, or else before the
  // outgoing lines. Messages mostly come in order, so the search is short.
  #insert(seq, line) {
    let low = 0;
    let high = this.#seqs.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.#seqs[middle] < seq) low = middle + 1;
      else high = middle;
    }
    const next = low < this.#seqs.length ? this.#lines.get(this.#seqs[low]) : this.#firstOutgoing();
    this.#seqs.splice(low, 0, seq);
    this.#lines.set(seq, line);
    this.#node.insertBefore(line, next);
  }

  #firstOutgoing() {
    return this.#node.querySelector(':scope > .outgoing');
  }

  // A change above what the user is looking at must not move it: keep the
  // distance to the bottom, which changes at the top do not touch.
  #keepingView(change) {
    const fromBottom = this.#node.scrollHeight - this.#node.scrollTop;
    change();
    this.#node.scrollTop = this.#node.scrollHeight - fromBottom;
  }

  #isAtBottom() {
    const list = this.#node;
    return list.scrollHeight - list.scrollTop - list.clientHeight < AT_BOTTOM_PX;
  }

  #keepingBottom(change) {
    const atBottom = this.#isAtBottom();
    change();
    if (atBottom) this.#node.scrollTop = this.#node.scrollHeight;
  }

  // Many lines at once: screen readers announce the result, not each line.
  #bulk(change) {
    this.#node.setAttribute('aria-busy', 'true');
    change();
    this.#node.removeAttribute('aria-busy');
  }

  #messageLine(message) {
    const user = message.user || {};
    const username = String(user.username ?? '');
    const own = this.#isOwn(user);
    const numbered = message.seq !== undefined;
    const deleted = Boolean(message.deleted) || (numbered && this.#deletedAhead.delete(message.seq));
    const text = deleted
      ? deletedText()
      : el('p', { class: 'msg-text' }, formatMessage(String(message.text ?? '')));
    // A deleted account's messages stay, with its id but no name.
    const author = username
      ? el('span', { class: 'msg-user', text: username, title: user.name || username })
      : el('span', { class: 'msg-user msg-user-deleted', text: 'deleted user' });
    const line = el('li', { class: own ? 'message own' : 'message' },
      author,
      timeNode(message.ts),
      text);
    if (deleted) line.classList.add('deleted');
    if (numbered) {
      line.dataset.seq = String(message.seq);
      if (!deleted && this.#canDelete(user)) this.#addDeleteButton(line, message.seq);
    }
    return paintUser(line, username);
  }

  #noticeLine(kind, text, ts) {
    return el('li', { class: `notice notice-${kind}` },
      el('span', { class: 'notice-text', text }),
      timeNode(ts));
  }
}
