// A modal <dialog>: opened with showModal, Tab kept inside, Esc, a click on the backdrop or a
// [data-modal=close] button closes it, and the keyboard focus goes back where it came from.

const FOCUSABLE =
  'button:not([disabled]), [href], input:not([disabled]):not([type=hidden]), select, ' +
  'textarea, [tabindex]:not([tabindex="-1"])';

/** True while a dialog is open: the page's own keyboard shortcuts leave its keys alone. */
export function dialogOpen() {
  return document.querySelector('dialog[open]') !== null;
}

export class Modal {
  #dialog;
  #onClose;
  #opener = null;

  /** `dialog` is the <dialog>; `onClose()` is called each time it closes. */
  constructor(dialog, { onClose = () => {} } = {}) {
    this.#dialog = dialog;
    this.#onClose = onClose;
    for (const button of dialog.querySelectorAll('[data-modal=close]')) {
      button.addEventListener('click', () => this.close());
    }
    // Its own Esc (before the page's, which would also leave the focus view) and a Tab that
    // stays inside.
    dialog.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        event.stopPropagation();
        this.close();
      } else if (event.key === 'Tab') {
        const inside = [...dialog.querySelectorAll(FOCUSABLE)].filter(
          (node) => node.getClientRects().length > 0,
        );
        const first = inside[0];
        const last = inside[inside.length - 1];
        const back = event.shiftKey;
        if (document.activeElement === (back ? first : last) || !dialog.contains(event.target)) {
          event.preventDefault();
          (back ? last : first)?.focus();
        }
      }
    });
    dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      this.close();
    });
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog) this.close(); // the backdrop
    });
  }

  get isOpen() {
    return this.#dialog.open;
  }

  /** Show the dialog and focus `first` (an element inside it). */
  open(first) {
    if (this.#dialog.open) return;
    const active = document.activeElement;
    this.#opener = active instanceof HTMLElement && active !== document.body ? active : null;
    this.#dialog.showModal();
    first.focus();
  }

  close() {
    if (!this.#dialog.open) return;
    this.#dialog.close();
    this.#opener?.focus({ preventScroll: true });
    this.#opener = null;
    this.#onClose();
  }
}
