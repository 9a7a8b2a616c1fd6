// Keyboard shortcuts of the grid: "/" searches, "?" lists the shortcuts in a dialog, the arrow
// keys move between cards as they are laid out on screen (Enter opens one: it is a link).

const FOCUSABLE = 'button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])';

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
  let opener = null;

  const close = () => {
    if (!dialog.open) return;
    dialog.close();
    opener?.focus({ preventScroll: true });
    opener = null;
  };

  const open = () => {
    if (dialog.open) return;
    opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    dialog.showModal();
    dialog.querySelector('[data-shortcuts=close]').focus();
  };

  dialog.querySelector('[data-shortcuts=close]').addEventListener('click', close);
  // Its own Esc (before the page's, which would also leave the focus view) and a Tab that
  // stays inside.
  dialog.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === 'Tab') {
      const inside = [...dialog.querySelectorAll(FOCUSABLE)];
      const first = inside[0];
      const last = inside[inside.length - 1];
      const back = event.shiftKey;
      if (document.activeElement === (back ? first : last) || !dialog.contains(event.target)) {
        event.preventDefault();
        (back ? last : first).focus();
      }
    }
  });
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    close();
  });
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) close(); // the backdrop
  });

  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (dialog.open || editing(event.target)) return;
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

  return { open, close };
}
