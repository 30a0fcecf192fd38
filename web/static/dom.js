// Building elements without HTML parsing: text always goes in as textContent.

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * A new `tag` element. Props: `class`, `text` (textContent), `dataset`, and any
 * other key as an attribute; `children` are nodes or strings (text).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}
