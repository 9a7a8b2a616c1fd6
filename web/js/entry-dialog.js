// The dialogs that write to a logbook: pinning an image (focus view) and retracting an entry
// (logbook page). Each asks for one text (the comment, the reason) and who signs it
// (author.js), sends it, and shows the service's answer: what was made, or why it was refused.

import { AuthorField } from './author.js';
import { Modal } from './modal.js';

export class EntryDialog {
  #el;
  #modal;
  #author;
  #job = null; // {send, done, refused, closed} of the dialog as opened
  #token = 0; // bumped by each open and close: a late answer for a closed dialog is dropped

  /**
   * `dialog` holds a form [data-entry=form] with [data-entry=what] (what the dialog acts on),
   * [data-entry=fields] (the text [data-entry=text] and the author, see AuthorField),
   * [data-entry=error], [data-entry=done], a submit button [data-entry=submit] and a
   * [data-modal=close] button.
   */
  constructor(dialog) {
    const $ = (part) => dialog.querySelector(`[data-entry=${part}]`);
    this.#el = {
      form: $('form'),
      what: $('what'),
      fields: $('fields'),
      text: $('text'),
      error: $('error'),
      done: $('done'),
      submit: $('submit'),
      close: dialog.querySelector('[data-modal=close]'),
    };
    this.#author = new AuthorField(dialog);
    this.#modal = new Modal(dialog, { onClose: () => (this.#token += 1) });
    this.#el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#submit();
    });
  }

  get isOpen() {
    return this.#modal.isOpen;
  }

  /**
   * Ask, then `send(text, author)` (a promise of the entry the service answers; author null
   * when the login signs). `what` says what is acted on; `refused` starts the message of a
   * refusal ("Not pinned"); `done(entry)` gives the nodes that say it worked, or none: then
   * the dialog closes and `closed()` is called (the keyboard focus is back).
   */
  async open({ what, send, done, refused, closed = () => {} }) {
    const token = ++this.#token;
    this.#job = { send, done, refused, closed };
    const el = this.#el;
    el.what.textContent = what;
    el.text.value = '';
    el.fields.hidden = false;
    el.submit.hidden = false;
    el.submit.disabled = false;
    el.close.textContent = 'Cancel';
    this.#show(el.error, '');
    this.#show(el.done, '');
    await this.#author.refresh();
    if (token !== this.#token) return;
    this.#modal.open(this.#author.missing ?? el.text);
  }

  close() {
    this.#modal.close();
  }

  async #submit() {
    const el = this.#el;
    const missing = this.#author.missing;
    if (missing) {
      missing.focus();
      return;
    }
    const token = this.#token;
    const { send, done, refused, closed } = this.#job;
    el.submit.disabled = true;
    this.#show(el.error, '');
    let entry;
    try {
      entry = await send(el.text.value, this.#author.value);
    } catch (error) {
      if (token !== this.#token) return;
      el.submit.disabled = false;
      // The service's own reason ("... is no longer kept"), or why it could not be asked.
      const reason = error.detail || (error.status ? error.message : 'the service did not answer');
      this.#show(el.error, `${refused}: ${reason}`);
      return;
    }
    if (token !== this.#token) return;
    this.#author.accepted();
    const nodes = done(entry);
    if (!nodes?.length) {
      this.close();
      closed();
      return;
    }
    el.fields.hidden = true;
    el.submit.hidden = true;
    el.close.textContent = 'Close';
    this.#show(el.done, nodes);
    (el.done.querySelector('a') ?? el.close).focus();
  }

  /** Show `content` (text or nodes) in `node`; hide it when empty. */
  #show(node, content) {
    if (typeof content === 'string') node.textContent = content;
    else node.replaceChildren(...content);
    node.hidden = !content.length;
  }
}
