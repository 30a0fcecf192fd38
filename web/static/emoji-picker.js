// The emoji picker of a send form: a button that opens a small grid of common
// emoji; picking one inserts it at the input's cursor (replacing a selection)
// and puts the focus back in the input.
//
// Keyboard: the arrow keys, Home and End move through the grid, Enter or Space
// picks, Escape closes (also from the input), Tab out of the grid closes it.
// A pointer press anywhere outside closes it too. At most one picker is open.

import { el } from './dom.js';

const EMOJI = [
  ['😀', 'grinning face'], ['😂', 'tears of joy'], ['🙂', 'slightly smiling face'],
  ['😉', 'winking face'], ['😊', 'smiling eyes'], ['😍', 'heart eyes'],
  ['😘', 'blowing a kiss'], ['😎', 'sunglasses'], ['🤔', 'thinking face'],
  ['😐', 'neutral face'], ['🙄', 'rolling eyes'], ['😴', 'sleeping face'],
  ['😅', 'sweat smile'], ['😢', 'crying face'], ['😭', 'sobbing face'],
  ['😡', 'angry face'], ['😱', 'screaming face'], ['🤯', 'mind blown'],
  ['🥳', 'party face'], ['🤗', 'hugging face'], ['👍', 'thumbs up'],
  ['👎', 'thumbs down'], ['👏', 'clapping hands'], ['🙌', 'raised hands'],
  ['🙏', 'folded hands'], ['👋', 'waving hand'], ['💪', 'flexed biceps'],
  ['👀', 'eyes'], ['❤️', 'red heart'], ['💔', 'broken heart'],
  ['🔥', 'fire'], ['✨', 'sparkles'], ['🎉', 'party popper'],
  ['✅', 'check mark'], ['❌', 'cross mark'], ['⚠️', 'warning'],
  ['💡', 'light bulb'], ['☕', 'hot beverage'], ['🍕', 'pizza'], ['🚀', 'rocket'],
];
// Must match the grid's column count in style.css (.emoji-picker).
const COLUMNS = 8;

let openPicker = null; // {close} of the picker that is open, if any

/**
 * Adds an emoji button to `form` (before its submit button) that inserts into
 * `input`. Returns the button.
 */
export function attachEmojiPicker(form, input) {
  const toggle = el('button', {
    type: 'button', class: 'emoji-toggle', title: 'Insert emoji',
    'aria-label': 'Insert emoji', 'aria-haspopup': 'true', 'aria-expanded': 'false',
    text: '😊',
  });
  let picker = null; // built on first open

  const options = () => [...picker.querySelectorAll('.emoji-option')];

  const onOutsidePress = (event) => {
    if (!picker.contains(event.target) && !toggle.contains(event.target)) close(false);
  };

  function close(refocus) {
    if (!picker || picker.hidden) return;
    picker.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    document.removeEventListener('pointerdown', onOutsidePress, true);
    if (openPicker && openPicker.close === close) openPicker = null;
    if (refocus) input.focus();
  }

  function open() {
    if (openPicker) openPicker.close(false);
    if (!picker) picker = build();
    picker.hidden = false;
    toggle.setAttribute('aria-expanded', 'true');
    document.addEventListener('pointerdown', onOutsidePress, true);
    openPicker = { close };
    options()[0].focus();
  }

  function pick(emoji) {
    const start = input.selectionStart ?? input.value.length;
    const end = input.selectionEnd ?? start;
    input.setRangeText(emoji, start, end, 'end');
    close(true);
  }

  function build() {
    const grid = el('div', {
      class: 'emoji-picker', role: 'dialog', 'aria-label': 'Emoji', hidden: '',
    });
    for (const [emoji, name] of EMOJI) {
      const option = el('button', {
        type: 'button', class: 'emoji-option', title: name, 'aria-label': name,
        tabindex: '-1', text: emoji,
      });
      option.addEventListener('click', () => pick(emoji));
      grid.append(option);
    }
    grid.addEventListener('keydown', (event) => {
      const all = options();
      const index = all.indexOf(document.activeElement);
      const moves = {
        ArrowRight: index + 1, ArrowLeft: index - 1,
        ArrowDown: index + COLUMNS, ArrowUp: index - COLUMNS,
        Home: 0, End: all.length - 1,
      };
      if (event.key === 'Escape') {
        event.preventDefault();
        event.stopPropagation();
        close(true);
      } else if (event.key in moves && index >= 0) {
        event.preventDefault();
        const next = moves[event.key];
        if (next >= 0 && next < all.length) all[next].focus();
      }
    });
    grid.addEventListener('focusout', (event) => {
      if (event.relatedTarget && !grid.contains(event.relatedTarget)
          && event.relatedTarget !== toggle) close(false);
    });
    toggle.after(grid); // Tab from the grid goes on to the Send button
    return grid;
  }

  toggle.addEventListener('click', () => {
    if (picker && !picker.hidden) close(true);
    else open();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && picker && !picker.hidden) {
      event.preventDefault();
      close(true);
    }
  });

  const submit = form.querySelector('button[type="submit"]');
  form.insertBefore(toggle, submit);
  return toggle;
}
