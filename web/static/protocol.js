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
  MUTED: 'You are muted in this room.',
};

/** The mute lengths staff may pick, in seconds (the server takes 1 s to a year). */
export const MUTE_CHOICES = [
  { label: '10 minutes', seconds: 10 * 60 },
  { label: '1 hour', seconds: 60 * 60 },
  { label: '1 day', seconds: 24 * 60 * 60 },
];

/**
 * "You are muted in this room until HH:MM." for a mute ending at `until`
 * (Unix ms, from a MUTED error or a muted event); the date is added when
 * the mute does not end today.
 */
export function mutedText(until) {
  const end = new Date(Number(until));
  if (Number.isNaN(end.getTime())) return ERROR_TEXT.MUTED;
  const time = end.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const today = end.toDateString() === new Date().toDateString();
  const when = today ? time : `${end.toLocaleDateString()} ${time}`;
  return `You are muted in this room until ${when}.`;
}

/** The words for error `code`; unknown codes are shown as they are. */
export function errorText(code) {
  return ERROR_TEXT[code] || `Error: ${code}`;
}
