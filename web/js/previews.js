// Previews for the grid: each card's image fetched over HTTP at the card's size, cards in view
// first (the others when they scroll into view), a few at a time, so one large image never
// holds back the others. The service announces images without their bytes (socket.js).

import { historyImageUrl, previewUrl } from './urls.js';

// Preview widths asked for: a card's width in device pixels rounded up to one of these, so
// every viewer of a similar screen hits the service's cache.
export const WIDTHS = [160, 320, 640, 1280, 2560];
export const MAX_FETCHES = 4;
const NEAR_VIEW = '200px'; // cards this close to the viewport load as if in it

/** The preview width for a card `cssWidth` CSS pixels wide on this screen. */
export function previewWidth(cssWidth, ratio = window.devicePixelRatio || 1) {
  const needed = Math.ceil(cssWidth * ratio);
  return WIDTHS.find((width) => width >= needed) ?? WIDTHS.at(-1);
}

/**
 * Fetches the previews cards ask for. A card has at most one fetch running and one waiting:
 * a newer update replaces the waiting one (the newest wins) but lets the running one finish,
 * so a card that updates faster than its previews arrive still shows images. A fetch of a card
 * that leaves the page is aborted. `onLoaded(card, header, blob, width)` gets the bytes;
 * `width` is Infinity for the full image (sent when the service makes no preview of it).
 * Cards need `item` (observed for visibility), `media` (measured) and `header`/`width` (what
 * they show).
 */
export class PreviewLoader {
  #onLoaded;
  #waiting = new Map(); // card -> header, oldest request first
  #running = new Map(); // card -> AbortController
  #visible = new Set();
  #cards = new Map(); // observed element -> card
  #inView;
  #resized;

  constructor(onLoaded) {
    this.#onLoaded = onLoaded;
    this.#inView = new IntersectionObserver((entries) => this.#seen(entries), {
      rootMargin: NEAR_VIEW,
    });
    // A card grown wider (a resize, a larger layout) gets a sharper preview.
    this.#resized = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const card = this.#cards.get(entry.target.closest('li'));
        const idle = card && !this.#waiting.has(card) && !this.#running.has(card);
        if (idle && card.header && previewWidth(card.media.clientWidth) > card.width) {
          this.request(card, card.header);
        }
      }
    });
  }

  /** Load the preview of `header` for `card` once it is in view; replaces a waiting request. */
  request(card, header) {
    if (!this.#cards.has(card.item)) {
      this.#cards.set(card.item, card);
      this.#inView.observe(card.item);
      this.#resized.observe(card.media);
    }
    this.#waiting.delete(card);
    this.#waiting.set(card, header);
    this.#pump();
  }

  /** The card is gone: abort its fetch and forget it. */
  forget(card) {
    this.#running.get(card)?.abort();
    this.#running.delete(card);
    this.#waiting.delete(card);
    this.#visible.delete(card);
    this.#cards.delete(card.item);
    this.#inView.unobserve(card.item);
    this.#resized.unobserve(card.media);
    this.#pump();
  }

  /** For tests and diagnostics: fetches running and requests waiting. */
  get state() {
    return { running: this.#running.size, waiting: this.#waiting.size };
  }

  #seen(entries) {
    for (const entry of entries) {
      const card = this.#cards.get(entry.target);
      if (!card) continue;
      if (entry.isIntersecting) this.#visible.add(card);
      else this.#visible.delete(card);
    }
    this.#pump();
  }

  #pump() {
    for (const [card, header] of this.#waiting) {
      if (this.#running.size >= MAX_FETCHES) return;
      if (!this.#visible.has(card) || this.#running.has(card)) continue;
      this.#waiting.delete(card);
      this.#load(card, header);
    }
  }

  async #load(card, header) {
    const controller = new AbortController();
    this.#running.set(card, controller);
    const width = previewWidth(card.media.clientWidth);
    const options = { signal: controller.signal, priority: 'high' };
    try {
      let response = await fetch(previewUrl(header.topic, header.seq, width), options);
      let loaded = width;
      if (response.status === 422) {
        // No preview of this one (too many pixels for the service to decode): the image.
        response = await fetch(historyImageUrl(header.topic, header.seq), options);
        loaded = Infinity;
      }
      // 404: no longer kept, a newer update is on its way.
      if (!response.ok) {
        if (response.status !== 404) throw new Error(`HTTP ${response.status}`);
      } else {
        const blob = await response.blob();
        if (!controller.signal.aborted) this.#onLoaded(card, header, blob, loaded);
      }
    } catch (error) {
      if (error.name !== 'AbortError') {
        console.warn(`elog-stream: ${header.topic}: preview ${header.seq}: ${error.message}`);
      }
    } finally {
      if (this.#running.get(card) === controller) this.#running.delete(card);
      this.#pump();
    }
  }
}
