// Typing notices both ways (docs/protocol.md §19.6, §26.5). There is no
// "stopped typing" notice: someone counts as typing for a few seconds after
// their last notice, or until their message arrives or they leave.

// Longer than the 2 s between a typist's notices, so a steady typist does
// not flicker.
const SHOWN_FOR_MS = 3500;

/** "ann is typing…" under a room's messages, for the other people in it. */
export class TypingIndicator {
  #node;
  #typists = new Map(); // user id -> {name, timer}

  /** Writes into `node`, which should be an aria-live region. */
  constructor(node) {
    this.#node = node;
  }

  /** `user` ({id, username}) sent a typing notice. */
  show(user) {
    clearTimeout(this.#typists.get(user.id)?.timer);
    const timer = setTimeout(() => this.clear(user.id), SHOWN_FOR_MS);
    this.#typists.set(user.id, { name: String(user.username), timer });
    this.#render();
  }

  /** The user with `userId` is no longer typing (their message came, or they left). */
  clear(userId) {
    const typist = this.#typists.get(userId);
    if (!typist) return;
    clearTimeout(typist.timer);
    this.#typists.delete(userId);
    this.#render();
  }

  clearAll() {
    for (const id of [...this.#typists.keys()]) this.clear(id);
  }

  #render() {
    const names = [...this.#typists.values()].map((typist) => typist.name);
    if (names.length === 0) this.#node.textContent = '';
    else if (names.length === 1) this.#node.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) this.#node.textContent = `${names[0]} and ${names[1]} are typing…`;
    else this.#node.textContent = 'Several people are typing…';
  }
}

/** Sends a typing notice for the user's keystrokes, at most one per `intervalMs`. */
export class TypingNotifier {
  #notify;
  #intervalMs;
  #lastSent = -Infinity;

  constructor(notify, intervalMs) {
    this.#notify = notify;
    this.#intervalMs = intervalMs;
  }

  /** The user typed. */
  typed() {
    const now = Date.now();
    if (now - this.#lastSent < this.#intervalMs) return;
    this.#lastSent = now;
    this.#notify();
  }
}
