// Keyboard shortcuts of the grid: "/" searches, "?" lists the shortcuts in a dialog, the arrow
// keys move between cards as they are laid out on screen (Enter opens one: it is a link).

import { Modal, dialogOpen } from './modal.js';

/** True while the user types: those keys are theirs. */
function editing(target) {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || target.closest('input, textarea, select') !== null)
  );
}

function center(rect) {
  return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
}

/**
 * The card to move to from `from` with an arrow `key`, among the shown `cards` in reading
 * order: left and right step through that order (wrapping between rows); up and down go to the
 * nearest row above or below, to the card closest in x. Null at an edge.
 */
export function nextCard(cards, from, key) {
  const index = cards.indexOf(from);
  if (key === 'ArrowLeft') return cards[index - 1] ?? null;
  if (key === 'ArrowRight') return cards[index + 1] ?? null;
  const down = key === 'ArrowDown';
  const here = from.getBoundingClientRect();
  const origin = center(here);
  let row = null; // the top of the nearest row in that direction
  let best = null;
  let bestDx = Infinity;
  for (const card of cards) {
    const rect = card.getBoundingClientRect();
    const beyond = down ? rect.top >= here.bottom - 1 : rect.bottom <= here.top + 1;
    if (card === from || !beyond) continue;
    const closer = row === null || (down ? rect.top < row - 1 : rect.top > row + 1);
    const sameRow = row !== null && Math.abs(rect.top - row) <= 1;
    if (!closer && !sameRow) continue;
    const dx = Math.abs(center(rect).x - origin.x);
    if (closer || dx < bestDx) {
      row = closer ? rect.top : row;
      best = card;
      bestDx = dx;
    }
  }
  return best;
}

/**
 * The shortcuts. `search()` brings the search field up and focuses it; `cards()` lists the
 * shown card links in reading order; `blocked()` is true while the grid is covered (the focus
 * view), when only "?" applies. `dialog` is the shortcuts <dialog>.
 */
export function keyboardShortcuts({ dialog, search, cards, blocked }) {
  const modal = new Modal(dialog);
  const open = () => modal.open(dialog.querySelector('[data-modal=close]'));

  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (dialogOpen() || editing(event.target)) return;
    if (event.key === '?') {
      event.preventDefault();
      open();
      return;
    }
    if (blocked()) return;
    if (event.key === '/') {
      event.preventDefault();
      search();
      return;
    }
    const from = event.target instanceof Element ? event.target.closest('a.card') : null;
    if (!from || event.shiftKey) return;
    if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'].includes(event.key)) return;
    event.preventDefault();
    const shown = cards();
    const to = nextCard(shown, from, event.key);
    to?.focus();
    to?.scrollIntoView({ block: 'nearest' });
  });

  return { open, close: () => modal.close() };
}
