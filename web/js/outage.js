// The banner shown while the service is unreachable: since when, when the next attempt comes,
// and a "Retry now" button. The header's status pill announces the change; this says more.

import { isoTime, localTime, shortTime } from './format.js';

export class OutageBanner {
  #root;
  #since;
  #detail;
  #state = null; // {since, retryAt, reason} while shown

  /** `root` holds [data-outage=since] (a <time>), [data-outage=detail] and [data-outage=retry]. */
  constructor(root, { onRetry }) {
    this.#root = root;
    this.#since = root.querySelector('[data-outage=since]');
    this.#detail = root.querySelector('[data-outage=detail]');
    root.querySelector('[data-outage=retry]').addEventListener('click', onRetry);
  }

  /**
   * Show the banner: offline since `since` (Date.now() ms), the next attempt at `retryAt`
   * (0: one is under way), or the refusal `reason` (nothing is retried by itself then).
   */
  show({ since, retryAt, reason }) {
    this.#state = { since, retryAt, reason };
    this.#root.hidden = false;
    document.body.classList.add('outage-open');
    this.#since.dateTime = isoTime(since / 1000);
    this.#since.title = localTime(since / 1000);
    this.#since.textContent = shortTime(since / 1000);
    this.tick();
  }

  hide() {
    this.#state = null;
    this.#root.hidden = true;
    document.body.classList.remove('outage-open');
  }

  /** Redraw the countdown. */
  tick() {
    if (!this.#state) return;
    const { retryAt, reason } = this.#state;
    const seconds = Math.ceil((retryAt - Date.now()) / 1000);
    const text = reason
      ? `: ${reason}`
      : retryAt && seconds > 0
        ? ` — retrying in ${seconds} s`
        : ' — retrying now…';
    if (this.#detail.textContent !== text) this.#detail.textContent = text;
  }
}
