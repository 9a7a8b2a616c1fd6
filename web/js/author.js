// The name a logbook entry is signed with: the login's name when the session has one (the
// service signs with it), else the name this browser gave once, remembered in localStorage.

import { sessionName } from './session.js';

const KEY = 'elog-author';
export const MAX_AUTHOR = 100;

/** The remembered name, '' when none (or something else wrote the key). */
export function storedAuthor() {
  const name = localStorage.getItem(KEY) ?? '';
  return name.trim() && name.length <= MAX_AUTHOR ? name : '';
}

export function rememberAuthor(name) {
  localStorage.setItem(KEY, name.trim());
}

/**
 * Shows who signs in a dialog: "Signed as NAME" (with "Change name" when it is this browser's
 * own), or the name field when there is none yet. Its elements: [data-author=known] holding
 * [data-author=name] and [data-author=change]; [data-author=ask] holding the input.
 */
export class AuthorField {
  #el;
  #fromSession = false;

  constructor(root) {
    const $ = (part) => root.querySelector(`[data-author=${part}]`);
    this.#el = { known: $('known'), name: $('name'), change: $('change'), ask: $('ask') };
    this.#el.input = this.#el.ask.querySelector('input');
    this.#el.change.addEventListener('click', () => {
      this.#asking(true);
      this.#el.input.focus();
      this.#el.input.select();
    });
  }

  /** Show the name known now (the session's, else this browser's); ask when there is none. */
  async refresh() {
    const fromSession = await sessionName();
    this.#fromSession = fromSession !== null;
    const name = fromSession ?? storedAuthor();
    this.#el.input.value = fromSession ? '' : name;
    this.#el.name.textContent = name;
    this.#el.change.hidden = this.#fromSession;
    this.#asking(!name);
  }

  /** The name for the request body: null when the session signs (the service knows it). */
  get value() {
    return this.#fromSession ? null : this.#el.input.value.trim();
  }

  /** The first element to focus when the name is still to be given, else null. */
  get missing() {
    return !this.#fromSession && !this.#el.input.value.trim() ? this.#el.input : null;
  }

  /** The entry was accepted: remember the name given (asked once). */
  accepted() {
    if (this.#fromSession) return;
    const name = this.value;
    if (name) {
      rememberAuthor(name);
      this.#el.name.textContent = name;
      this.#asking(false);
    }
  }

  #asking(ask) {
    this.#el.known.hidden = ask;
    this.#el.ask.hidden = !ask;
    this.#el.input.required = ask;
  }
}
