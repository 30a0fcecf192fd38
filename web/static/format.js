// Chat message formatting: turns a message's text into DOM nodes.
//
//   *bold*    -> <strong>        `code` -> <code>, taken literally
//   _italic_  -> <em>            http:// and https:// URLs -> <a>
//   ~strike~  -> <s>             everything else -> text nodes
//
// Safety: the result is built from createElement and text nodes only; user text
// is never parsed as HTML. A link's href is set only after new URL() says its
// protocol is http: or https:, so javascript:, data:, vbscript: and file: stay
// plain text (the scanner only looks for http(s):// in the first place).
//
// Rules, close to what chat apps do:
// - A marker (* _ ~) opens only at the start or after a character that is not
//   a letter or digit, and only when followed by a non-space; it closes at the
//   next same marker that follows a non-space and is not followed by a letter
//   or digit. So 2*3*4, snake_case_name and "a * b * c" stay as typed.
// - Formatting nests (*bold _and italic_*), but a marker cannot nest in itself.
// - `code` runs to the next backtick; nothing inside it is formatted. Two
//   backticks in a row (``) are plain text, not an empty code span.
// - A URL runs to the next whitespace or < > " `; trailing punctuation such as
//   a full stop, and a closing bracket with no opening one in the URL, are left
//   out of it. URLs and code spans are never split by a marker's closer.
// - An opener with no closer is plain text.
//
// Cost: a marker search that fails is not repeated for that marker in the same
// span (a later search could only look at fewer characters), and a marker
// cannot nest in itself, so the work stays linear in the message length even
// for hostile input such as thousands of unmatched asterisks.

const MARKERS = { '*': 'strong', _: 'em', '~': 's' };
const URL_STOP = /[\s<>"`]/u;
const TRAILING_PUNCTUATION = '.,;:!?\'"*_~';
const WORD_CHAR = /[\p{L}\p{N}]/u;
const SPACE = /\s/u;

const isWordChar = (ch) => ch !== undefined && WORD_CHAR.test(ch);
const isSpace = (ch) => ch === undefined || SPACE.test(ch);

/** The message `text` as a DocumentFragment of text, strong, em, s, code and a nodes. */
export function formatMessage(text) {
  return withChildren(document.createDocumentFragment(), parseSpan(String(text)));
}

// Parse one span (the whole message, or the inside of a marker pair) into nodes.
function parseSpan(s) {
  const nodes = [];
  let plain = '';
  const flush = () => {
    if (plain) nodes.push(document.createTextNode(plain));
    plain = '';
  };
  const noCloser = new Set(); // markers already known to have no closer in this span

  let i = 0;
  while (i < s.length) {
    const ch = s[i];

    if (ch === '`' && s[i + 1] === '`') {
      plain += '``';
      i += 2;
      continue;
    }
    const codeEnd = ch === '`' ? codeSpanEnd(s, i) : -1;
    if (codeEnd > 0) {
      flush();
      const code = document.createElement('code');
      code.textContent = s.slice(i + 1, codeEnd);
      nodes.push(code);
      i = codeEnd + 1;
      continue;
    }

    const urlEnd = urlEndAt(s, i);
    if (urlEnd > 0) {
      const link = linkFor(s.slice(i, urlEnd));
      if (link) {
        flush();
        nodes.push(link);
      } else {
        plain += s.slice(i, urlEnd);
      }
      i = urlEnd;
      continue;
    }

    if (MARKERS[ch] && !noCloser.has(ch) && opensAt(s, i)) {
      const close = closerAfter(s, i + 1, ch);
      if (close > 0) {
        flush();
        nodes.push(withChildren(document.createElement(MARKERS[ch]), parseSpan(s.slice(i + 1, close))));
        i = close + 1;
        continue;
      }
      noCloser.add(ch);
    }

    plain += ch;
    i += 1;
  }
  flush();
  return nodes;
}

// Appends one by one: spreading a long message's nodes as arguments could
// exceed the engine's argument limit.
function withChildren(parent, children) {
  for (const child of children) parent.appendChild(child);
  return parent;
}

// Index of the backtick closing a code span opened at `start`, or -1.
// Callers have already stepped over `` (two backticks are plain text).
function codeSpanEnd(s, start) {
  return s.indexOf('`', start + 1);
}

// Where an http(s) URL starting at `start` ends (exclusive), or -1 if none starts there.
function urlEndAt(s, start) {
  if (s[start] !== 'h' && s[start] !== 'H') return -1;
  if (isWordChar(s[start - 1])) return -1;
  const head = s.slice(start, start + 8).toLowerCase();
  const schemeLength = head.startsWith('https://') ? 8 : head.startsWith('http://') ? 7 : 0;
  if (!schemeLength) return -1;
  let end = start + schemeLength;
  while (end < s.length && !URL_STOP.test(s[end])) end += 1;
  // Leave out trailing punctuation, and a ")" or "]" the URL did not open.
  // Only closing characters are dropped, so the opening ones are counted once.
  const url = s.slice(start, end);
  const opensParen = url.includes('(');
  const opensBracket = url.includes('[');
  while (end > start + schemeLength) {
    const last = s[end - 1];
    const unopened = (last === ')' && !opensParen) || (last === ']' && !opensBracket);
    if (TRAILING_PUNCTUATION.includes(last) || unopened) end -= 1;
    else break;
  }
  return end > start + schemeLength ? end : -1;
}

// An <a> for `url` if it is a well-formed http: or https: URL, else null.
function linkFor(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return null;
  const a = document.createElement('a');
  a.href = url;
  a.textContent = url;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  return a;
}

function opensAt(s, i) {
  return !isWordChar(s[i - 1]) && !isSpace(s[i + 1]) && s[i + 1] !== s[i];
}

function closesAt(s, i) {
  return !isSpace(s[i - 1]) && !isWordChar(s[i + 1]);
}

// Index of the marker closing the one opened just before `from`, or -1.
// Code spans and URLs are stepped over whole, as parseSpan will see them.
function closerAfter(s, from, marker) {
  let j = from;
  while (j < s.length) {
    if (s[j] === '`' && s[j + 1] === '`') {
      j += 2;
      continue;
    }
    const codeEnd = s[j] === '`' ? codeSpanEnd(s, j) : -1;
    if (codeEnd > 0) {
      j = codeEnd + 1;
      continue;
    }
    const urlEnd = urlEndAt(s, j);
    if (urlEnd > 0) {
      j = urlEnd;
      continue;
    }
    if (s[j] === marker && j > from && closesAt(s, j)) return j;
    j += 1;
  }
  return -1;
}
