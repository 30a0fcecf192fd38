// Protocol v1 as the browser sees it (docs/protocol.md): message kinds, the
// room_users reply type, and what each error code means in words.

export const MSG = { MESSAGE: 0, WARNING: 1, ALERT: 2, MUTED: 3, ENTER: 4, LEAVE: 5 };
export const ROOM_USERS = 6;

export const ERROR_TEXT = {
  ROOM_INVALID: 'That room does not exist.',
  ROOM_ACCESS_DENIED: 'This room is for staff only, or you have not joined it.',
  USER_HAS_TO_LOGIN: 'Your session has ended. Please log in again.',
  BAD_REQUEST: 'The server did not understand that request.',
  UNKNOWN_COMMAND: 'The server does not know that command.',
  MESSAGE_TOO_LARGE: 'Message too long.',
  TOO_MANY_ROOMS: 'You have joined too many rooms. Leave one first.',
  RATE_LIMITED: 'You are sending too fast. Wait a moment and try again.',
  UNAVAILABLE: 'The server could not deliver that, try again.',
};

/** The words for error `code`; unknown codes are shown as they are. */
export function errorText(code) {
  return ERROR_TEXT[code] || `Error: ${code}`;
}
