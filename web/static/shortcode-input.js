// Shortcodes become emoji as they are typed: typing the closing colon of
// :smile: replaces the code with 😄, as in Slack and GitHub. Only typing
// converts; pasted text keeps its colons, so a pasted log line or path is sent
// as it was. The opening colon must start the text or follow something other
// than a letter or digit, so times such as "10:100:" stay as they are.

import { SHORTCODES } from './shortcodes.js';

// A shortcode just before the cursor, and what stands before it.
const CODE_BEFORE_CURSOR = /(?:^|[^\p{L}\p{N}_]):([\w+-]+):$/u;

/** Converts shortcodes typed into `input` (a text input). */
export function attachShortcodes(input) {
  input.addEventListener('input', (event) => {
    if (event.inputType !== 'insertText' || !event.data?.endsWith(':')) return;
    const cursor = input.selectionStart;
    if (cursor === null || cursor !== input.selectionEnd) return;
    const match = CODE_BEFORE_CURSOR.exec(input.value.slice(0, cursor));
    const emoji = match && SHORTCODES.get(match[1].toLowerCase());
    if (!emoji) return;
    const codeLength = match[1].length + 2;
    input.setRangeText(emoji, cursor - codeLength, cursor, 'end');
  });
}
