// The history scrubber of the focus view: the kept versions of one topic, a position among
// them, and its controls (older/newer buttons, a slider, "Back to live").
//
// Only where the user comes to rest is reported (`onSettle`), so stepping quickly through
// fifty versions loads one image, not fifty.

import { clockTime } from './format.js';

const SETTLE_MS = 150;

export class Scrubber {
  #root;
  #el;
  #onSettle;
  #entries = []; // oldest first: {seq, updated_at, ...} as the history API and image headers
  #index = -1;
  #following = true;
  #settleTimer = 0;

  /** `root` holds the [data-scrub] controls; `onSettle(entry, following)` shows a version. */
  constructor(root, { onSettle }) {
    this.#root = root;
    this.#onSettle = onSettle;
    const $ = (name) => root.querySelector(`[data-scrub=${name}]`);
    this.#el = {
      older: $('older'),
      newer: $('newer'),
      slider: $('slider'),
      position: $('position'),
      ahead: $('ahead'),
      live: $('live'),
    };
    const el = this.#el;
    el.older.addEventListener('click', () => this.step(-1));
    el.newer.addEventListener('click', () => this.step(1));
    el.live.addEventListener('click', () => this.toNewest());
    el.slider.addEventListener('input', () => this.#moveTo(el.slider.valueAsNumber - 1));
    el.slider.addEventListener('change', () => this.#settle());
    this.#render();
  }

  /** The versions listed, newest first. */
  get entries() {
    return [...this.#entries].reverse();
  }

  /** True at the newest version: new images are shown as they arrive. */
  get following() {
    return this.#following;
  }

  reset() {
    clearTimeout(this.#settleTimer);
    this.#entries = [];
    this.#index = -1;
    this.#following = true;
    this.#render();
  }

  /** A new image of the topic arrived; returns whether the view follows it (shows it now). */
  add(header) {
    const last = this.#entries.at(-1);
    if (last && header.seq === last.seq) {
      this.#entries[this.#entries.length - 1] = header;
    } else if (last && header.seq < last.seq) {
      // The topic expired and started again at 1: the old versions are gone.
      this.#entries = [header];
      this.#index = 0;
      this.#following = true;
    } else {
      this.#entries.push(header);
      if (this.#following) this.#index = this.#entries.length - 1;
    }
    this.#render();
    return this.#following;
  }

  /** The history from the API, newest first. The position stays on the version shown. */
  replace(history) {
    const fetched = [...history].reverse();
    if (!fetched.length) return;
    const newest = fetched.at(-1).seq;
    // Images that arrived while the list was on its way are newer than anything in it.
    const entries = [...fetched, ...this.#entries.filter((entry) => entry.seq > newest)];
    const shown = this.#entries[this.#index];
    let index = entries.length - 1;
    if (!this.#following && shown) {
      index = entries.findIndex((entry) => entry.seq >= shown.seq);
      if (index < 0) index = entries.length;
      // No longer kept on the server, but it is on screen: keep its place in the list.
      if (entries[index]?.seq !== shown.seq) entries.splice(index, 0, shown);
    }
    this.#entries = entries;
    this.#index = index;
    this.#render();
  }

  step(delta) {
    if (this.#index >= 0) this.#moveTo(this.#index + delta);
  }

  toNewest() {
    this.#moveTo(this.#entries.length - 1);
    this.#settle();
  }

  #moveTo(index) {
    if (!this.#entries.length) return;
    const clamped = Math.max(0, Math.min(this.#entries.length - 1, index));
    if (clamped === this.#index) return;
    this.#index = clamped;
    this.#following = clamped === this.#entries.length - 1;
    this.#render();
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => this.#settle(), SETTLE_MS);
  }

  #settle() {
    clearTimeout(this.#settleTimer);
    const entry = this.#entries[this.#index];
    if (entry) this.#onSettle(entry, this.#following);
  }

  #render() {
    const el = this.#el;
    const count = this.#entries.length;
    const entry = this.#entries[this.#index];
    this.#root.hidden = count < 2; // one version: nothing to scrub through
    this.#root.dataset.seq = entry ? String(entry.seq) : '';
    const position = entry
      ? `#${entry.seq} · ${this.#index + 1} of ${count} · ${clockTime(entry.updated_at)}`
      : '';
    el.position.textContent = position;
    el.slider.max = String(Math.max(1, count));
    el.slider.value = String(this.#index + 1);
    el.slider.setAttribute('aria-valuetext', position);
    el.older.disabled = this.#index <= 0;
    el.newer.disabled = this.#index >= count - 1;
    const ahead = count - 1 - this.#index;
    el.ahead.textContent = this.#following ? 'newest' : `${ahead} newer`;
    el.ahead.classList.toggle('scrub-behind', !this.#following);
    el.live.disabled = this.#following;
  }
}
