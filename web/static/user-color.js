// A stable colour per user: the username's FNV-1a hash picks a hue, so a user
// looks the same in every room, tab and session. The hue reaches CSS as the
// custom property --user-hue (set through the CSSOM, which the page's CSP
// allows); style.css turns it into a colour dark enough to read on the light
// theme.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** A hue in [0, 360) for `username`: 32-bit FNV-1a over its UTF-8 bytes. */
export function userHue(username) {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(String(username))) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash % 360;
}

/** Gives `node` the colour of `username` (through the user-colored class). */
export function paintUser(node, username) {
  node.classList.add('user-colored');
  node.style.setProperty('--user-hue', String(userHue(username)));
  return node;
}
