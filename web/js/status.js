// The header's connection pill: live, connecting, reconnecting (with a countdown in its title)
// or offline (with the service's reason when it refused); a click retries at once.

import { LIVE, OFFLINE, RECONNECTING } from './socket.js';

export class StatusPill {
  #button;
  #text;
  #state = 'connecting';
  #retryAt = 0;
  #reason = '';

  /** `button` holds the `text` element; `onRetry()` is called by a click while not live. */
  constructor(button, text, { onRetry }) {
    this.#button = button;
    this.#text = text;
    button.addEventListener('click', () => onRetry());
  }

  /** When the next attempt is due (Date.now() ms), 0 when one is under way or none is. */
  get retryAt() {
    return this.#retryAt;
  }

  /** Why the service refused this page ('' when it did not). */
  get reason() {
    return this.#reason;
  }

  /** A state of socket.js (LIVE, CONNECTING, RECONNECTING, OFFLINE) with its onStatus detail. */
  show(state, { retryInMs = 0, reason = '' } = {}) {
    this.#state = state;
    this.#retryAt = retryInMs ? Date.now() + retryInMs : 0;
    this.#reason = reason;
    const button = this.#button;
    button.dataset.state = state;
    // The wait before the next attempt, for tests and the curious (0: an attempt is under way).
    button.dataset.retryInMs = String(Math.round(retryInMs));
    const label = { [LIVE]: 'Live', [RECONNECTING]: 'Reconnecting…', [OFFLINE]: 'Offline' }[state];
    this.#text.textContent = reason ? `${label}: ${reason}` : (label ?? 'Connecting…');
    button.disabled = state === LIVE;
    this.tick();
  }

  /** Redraw the countdown in the title. */
  tick() {
    const seconds = Math.ceil((this.#retryAt - Date.now()) / 1000);
    this.#button.title =
      this.#state === LIVE
        ? 'Connected: new images appear as they are published'
        : this.#reason
          ? `Not connected: the service refused (${this.#reason}). Click to try again.`
          : this.#retryAt && seconds > 0
            ? `Not connected: retrying in ${seconds} s. Click to retry now.`
            : 'Connecting…';
  }
}
