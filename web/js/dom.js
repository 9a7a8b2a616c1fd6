// Building the page's elements. Text from the network goes in as text (textContent), never HTML.

/** A new `tag` element with `className` and, if given, `text` as its text. */
export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
