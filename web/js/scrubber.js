// The history scrubber of the focus view: the kept versions of one topic, a position among
// them, and its controls (older/newer buttons, a slider, "Back to live").
//
// The list holds only what the server keeps. Each new image evicts what the publish that made
// it trimmed, by the limits the history request reported (`historyLimits`, docs/protocol.md),
// so the list stays right between reloads; reloads correct the rest (versions never seen over
// the socket, publishers of unknown limits). The label always describes the image on screen
// (`showing`), never a version on its way or gone.
//
// Only where the user comes to rest is reported (`onSettle`), so stepping quickly through
// fifty versions loads one image, not fifty.

import { clockTime } from './format.js';

const SETTLE_MS = 150;

// Why the scrubber settled on a version (the third argument of `onSettle`).
export const BY_USER = 'user';
export const GONE = 'gone'; // the version shown, or asked for, is no longer kept
export const RESTORED = 'restored'; // the version asked for by `pin` (a link) is kept

/** The history limits in the Elog-History-* headers of a history response, else null. */
export function historyLimits(headers) {
  const [length, bytes, seconds] = ['Length', 'Bytes', 'Seconds'].map((name) => {
    const text = headers.get(`Elog-History-${name}`);
    return text === null || text.trim() === '' ? NaN : Number(text);
  });
  const valid = [length, bytes, seconds].every((n) => Number.isFinite(n) && n >= 0);
  return valid && length >= 1 ? { length, bytes, seconds } : null;
}

/**
 * How many of `entries` (oldest first) the publish of their last one evicted: the publish
 * script's rule, oldest first until the first it keeps; the newest is always kept.
 */
function evicted(entries, limits) {
  const newest = entries.at(-1);
  let bytes = entries.reduce((sum, entry) => sum + (entry.size || 0), 0);
  let count = 0;
  for (const entry of entries.slice(0, -1)) {
    const old =
      newest.seq - entry.seq >= limits.length ||
      bytes > limits.bytes ||
      (limits.seconds > 0 && entry.updated_at < newest.updated_at - limits.seconds);
    if (!old) break;
    bytes -= entry.size || 0;
    count += 1;
  }
  return count;
}

export class Scrubber {
  #root;
  #el;
  #onSettle;
  #entries = []; // oldest first: {seq, updated_at, size, ...} as the history API and headers
  #index = -1; // the version the slider is on
  #following = true; // showing each new image as it arrives
  #shown = null; // the version whose image is on screen
  #limits = null;
  #settleTimer = 0;

  /**
   * `root` holds the [data-scrub] controls; `onSettle(entry, following, why)` shows a
   * version: `why` is BY_USER, RESTORED, or GONE with `{wanted}`, the seq no longer kept.
   */
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
    el.slider.addEventListener('change', () => this.#settle(BY_USER));
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

  /** The oldest version listed, or undefined. */
  get oldest() {
    return this.#entries[0];
  }

  /** The limits the server keeps the history by, as the last history response said. */
  get limits() {
    return this.#limits;
  }

  reset() {
    clearTimeout(this.#settleTimer);
    this.#entries = [];
    this.#index = -1;
    this.#following = true;
    this.#shown = null;
    this.#limits = null;
    this.#render();
  }

  /** A new image of the topic arrived; returns whether the view follows it (shows it now). */
  add(header) {
    const last = this.#entries.at(-1);
    const at = this.#entries.findIndex((entry) => entry.seq === header.seq);
    if (at >= 0) {
      this.#entries[at] = header;
    } else if (last && header.seq < last.seq) {
      // The topic expired and started again at 1: the old versions are gone. (Else an older
      // image than the list has, sent late, that the server no longer keeps: not listed.)
      if (header.updated_at > last.updated_at) {
        this.#entries = [header];
        this.#index = 0;
        this.#following = true;
      }
    } else {
      this.#entries.push(header);
      if (this.#following) this.#index = this.#entries.length - 1;
      this.#evict();
    }
    this.#render();
    return this.#following;
  }

  /** The history from the API, newest first, and its `historyLimits`. */
  replace(history, limits) {
    const fetched = [...history].reverse();
    if (!fetched.length) return;
    this.#limits = limits;
    const newest = fetched.at(-1).seq;
    const target = this.#entries[this.#index];
    // Images that arrived while the list was on its way are newer than anything in it.
    this.#entries = [...fetched, ...this.#entries.filter((entry) => entry.seq > newest)];
    this.#evict(target);
    if (this.#following) this.#index = this.#entries.length - 1;
    this.#render();
  }

  /**
   * Go to the version `seq` (a link) and stay on it, not following; to the next one kept if
   * it is not kept (GONE), to the newest if none is newer. Call after `replace`.
   */
  pin(seq) {
    clearTimeout(this.#settleTimer);
    const index = this.#entries.findIndex((entry) => entry.seq === seq);
    if (index < 0) {
      this.#relocate(seq);
      return;
    }
    this.#index = index;
    this.#following = false;
    this.#render();
    this.#settle(RESTORED);
  }

  /** The image of `entry` is on screen now: the label describes it. */
  showing(entry) {
    this.#shown = entry;
    this.#render();
  }

  step(delta) {
    if (this.#index >= 0) this.#moveTo(this.#index + delta);
  }

  toNewest() {
    this.#moveTo(this.#entries.length - 1);
    this.#following = true;
    this.#render();
    this.#settle(BY_USER);
  }

  /** Drop what the newest image's publish evicted; move off the version `target` if gone. */
  #evict(target = this.#entries[this.#index]) {
    const count = this.#limits ? evicted(this.#entries, this.#limits) : 0;
    if (count) this.#entries = this.#entries.slice(count);
    if (this.#following || !target) return;
    const index = this.#entries.findIndex((entry) => entry.seq === target.seq);
    if (index >= 0) this.#index = index;
    else this.#relocate(target.seq);
  }

  /** The version `wanted` is not kept: go to the first kept after it (else the newest). */
  #relocate(wanted) {
    let index = this.#entries.findIndex((entry) => entry.seq > wanted);
    if (index < 0) index = this.#entries.length - 1;
    this.#index = index;
    this.#following = index === this.#entries.length - 1;
    this.#render();
    clearTimeout(this.#settleTimer);
    const entry = this.#entries[index];
    if (entry) queueMicrotask(() => this.#onSettle(entry, this.#following, { why: GONE, wanted }));
  }

  #moveTo(index) {
    if (!this.#entries.length) return;
    const clamped = Math.max(0, Math.min(this.#entries.length - 1, index));
    if (clamped === this.#index) return;
    this.#index = clamped;
    this.#following = clamped === this.#entries.length - 1;
    this.#render();
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => this.#settle(BY_USER), SETTLE_MS);
  }

  #settle(why) {
    clearTimeout(this.#settleTimer);
    const entry = this.#entries[this.#index];
    if (entry) this.#onSettle(entry, this.#following, { why });
  }

  #describe(entry) {
    const at = this.#entries.findIndex((kept) => kept.seq === entry.seq);
    const place = at >= 0 ? `${at + 1} of ${this.#entries.length}` : 'no longer kept';
    return `#${entry.seq} · ${place} · ${clockTime(entry.updated_at)}`;
  }

  #render() {
    const el = this.#el;
    const count = this.#entries.length;
    const entry = this.#entries[this.#index];
    this.#root.hidden = count < 2; // one version: nothing to scrub through
    this.#root.dataset.seq = entry ? String(entry.seq) : '';
    this.#root.dataset.oldest = count ? String(this.#entries[0].seq) : '';
    this.#root.dataset.newest = count ? String(this.#entries.at(-1).seq) : '';
    const limits = this.#limits;
    this.#root.dataset.limits = limits ? `${limits.length} ${limits.bytes} ${limits.seconds}` : '';
    // The label is the image's; the slider's own text is where it points.
    el.position.textContent = this.#shown ? this.#describe(this.#shown) : '';
    el.slider.max = String(Math.max(1, count));
    el.slider.value = String(this.#index + 1);
    el.slider.setAttribute('aria-valuetext', entry ? this.#describe(entry) : '');
    el.older.disabled = this.#index <= 0;
    el.newer.disabled = this.#index >= count - 1;
    const ahead = count - 1 - this.#index;
    el.ahead.textContent = this.#following ? 'newest' : `${ahead} newer`;
    el.ahead.classList.toggle('scrub-behind', !this.#following);
    el.live.disabled = this.#following;
  }
}
