// Protocol v2 as the browser sees it (docs/protocol.md, sections 15 to 26):
// the subprotocol to offer, the figures a client works with, and what each
// error code means in words.

/** The WebSocket subprotocol that selects protocol v2 (§16). */
export const SUBPROTOCOL = 'whisper.v2';

/** Messages asked for by a join and by each history page (the server's default). */
export const PAGE_SIZE = 50;

/** The server passes on one typing notice per user and room in this time (§19.6). */
export const TYPING_INTERVAL_MS = 2000;

/**
 * How long the server remembers a send's nonce (§19.3): a retry after that
 * could be stored as a second message, so nothing is resent by itself later.
 */
export const NONCE_MEMORY_MS = 10 * 60 * 1000;

export const ERROR_TEXT = {
  ROOM_INVALID: 'That room does not exist.',
  ROOM_ACCESS_DENIED: 'This room is for staff only, or you have not joined it.',
  USER_HAS_TO_LOGIN: 'Your session has ended. Please log in again.',
  BAD_REQUEST: 'The server did not understand that request.',
  UNKNOWN_COMMAND: 'The server does not know that command.',
  MESSAGE_TOO_LARGE: 'Message too long.',
  TOO_MANY_ROOMS: 'You have joined too many rooms. Leave one first.',
  RATE_LIMITED: 'You are sending too fast. Wait a moment and try again.',
  UNAVAILABLE: 'The server could not do that just now, try again.',
  MESSAGE_NOT_FOUND: 'That message is no longer stored.',
};

/** The words for error `code`; unknown codes are shown as they are. */
export function errorText(code) {
  return ERROR_TEXT[code] || `Error: ${code}`;
}
