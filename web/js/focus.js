// The focus view: one topic large, with its full description, metadata, a download link and
// a scrubber through the versions the server keeps.

import { getJson } from './api.js';
import { ago, bytes, downloadName, isoTime, localTime } from './format.js';
import { altText } from './grid.js';
import { Scrubber } from './scrubber.js';
import { historyImageUrl, historyUrl, imageUrl, topicUrl } from './urls.js';

// New images of the open topic refresh the history list (which versions are still kept)
// once they pause this long, so a fast publisher costs one request per pause, not per image.
const HISTORY_REFRESH_MS = 500;

export class FocusView {
  #root;
  #el;
  #scrubber;
  #token = 0; // bumped by open and close: answers for a previous topic are dropped
  #swapToken = 0; // bumped by every swap: only the latest image reaches the screen
  #wanted = null; // seq of the image being swapped in, or on screen
  #card = null; // the grid card of the topic, whose newest image the view shows when live
  #refreshTimer = 0;
  #historyBusy = 0;
  #historyAgain = false;
  topic = null;
  #header = null; // of the image on screen

  /** `root` is the focus <section>; `onClose()` is called by its back button. */
  constructor(root, { onClose }) {
    this.#root = root;
    const $ = (selector) => root.querySelector(selector);
    this.#el = {
      title: $('[data-focus=topic]'),
      notice: $('[data-focus=notice]'),
      media: $('[data-focus=media]'),
      download: $('[data-focus=download]'),
      description: $('[data-focus=description]'),
      experiment: $('[data-focus=experiment]'),
      seq: $('[data-focus=seq]'),
      updated: $('[data-focus=updated]'),
      type: $('[data-focus=type]'),
      size: $('[data-focus=size]'),
      digest: $('[data-focus=digest]'),
    };
    this.#scrubber = new Scrubber($('[data-focus=scrub]'), {
      onSettle: (entry, following) => this.#showVersion(entry, following),
    });
    $('[data-focus=back]').addEventListener('click', () => onClose());
    window.addEventListener('resize', () => this.#fit());
    document.addEventListener('keydown', (event) => this.#key(event));
  }

  get isOpen() {
    return this.topic !== null;
  }

  /** Show `topic`: from its card when the grid has it, else (a shared link) over HTTP. */
  open(topic, card) {
    this.#reset();
    this.topic = topic;
    this.#card = card ?? null;
    this.#root.hidden = false;
    this.#el.title.textContent = topic;
    this.#notice('');
    for (const key of ['description', 'experiment', 'seq', 'updated', 'type', 'size', 'digest']) {
      this.#el[key].textContent = '';
    }
    this.#el.download.href = imageUrl(topic);
    this.#el.download.download = downloadName(topic, 'image/png');
    if (card?.header) this.update(card);
    else this.#fetch(topic);
    this.#loadHistory();
    this.#el.title.focus();
  }

  close() {
    this.#reset();
    this.topic = null;
    this.#root.hidden = true;
  }

  #reset() {
    this.#notLive(false);
    this.#token += 1;
    this.#swapToken += 1;
    this.#wanted = null;
    this.#header = null;
    this.#card = null;
    this.#historyAgain = false;
    clearTimeout(this.#refreshTimer);
    this.#scrubber.reset();
    this.#el.media.replaceChildren();
  }

  /** The card of the open topic shows a new image: show it here too, unless scrolled back. */
  update(card) {
    if (card.topic !== this.topic || !card.header) return;
    this.#notLive(false);
    this.#card = card;
    this.#notice('');
    const following = this.#scrubber.add(card.header);
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(() => this.#loadHistory(), HISTORY_REFRESH_MS);
    if (following && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
    }
  }

  expired(topic) {
    if (topic === this.topic) {
      this.#notice('This topic has expired: nothing was published for its whole lifetime. ' +
        'The last image stays here until you go back.');
    }
  }

  tick() {
    if (!this.#header) return;
    const at = this.#header.updated_at;
    this.#el.updated.textContent = `${localTime(at)} (${ago(at)})`;
  }

  #key(event) {
    if (!this.isOpen || event.defaultPrevented) return;
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const delta = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    const target = event.target;
    // Text fields keep their arrows; the slider moves itself (and tells the scrubber).
    const editing =
      target instanceof HTMLElement &&
      (target.isContentEditable || target.closest('input, textarea, select') !== null);
    if (!delta || editing) return;
    event.preventDefault();
    this.#scrubber.step(delta);
  }

  /** The scrubber came to rest on `entry`: the card's image if it is the newest, else HTTP. */
  #showVersion(entry, following) {
    if (entry.seq === this.#wanted) return;
    const card = this.#card;
    if (following && card?.header?.seq === entry.seq && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
      return;
    }
    const img = new Image();
    img.src = historyImageUrl(this.topic, entry.seq);
    this.#swap(img, entry, { kept: true });
  }

  /** Put `img` (showing the version `header`) on screen once decoded; never a half image. */
  async #swap(img, header, { kept = false } = {}) {
    const token = ++this.#swapToken;
    this.#wanted = header.seq;
    img.className = 'focus-img';
    img.alt = altText(header);
    img.dataset.seq = String(header.seq);
    try {
      await img.decode();
    } catch {
      if (token !== this.#swapToken) return;
      this.#wanted = this.#header?.seq ?? null;
      // A card's image fails only when a newer one revoked its URL first (that one follows);
      // a kept one when the server dropped it meanwhile.
      if (kept) {
        this.#notice(`Update #${header.seq} is no longer kept on the server.`);
        this.#loadHistory();
      }
      return;
    }
    if (token !== this.#swapToken) return;
    if (kept) this.#notice('');
    this.#el.media.replaceChildren(img);
    this.#render(header);
    this.#fit();
  }

  #render(header) {
    this.#header = header;
    const el = this.#el;
    el.description.textContent = header.description || '(no description)';
    el.experiment.textContent = header.experiment;
    el.seq.textContent = String(header.seq);
    el.updated.dateTime = isoTime(header.updated_at);
    el.type.textContent = header.content_type;
    el.size.textContent = bytes(header.size);
    el.digest.textContent = header.digest;
    // This very version, even once newer ones were published.
    el.download.href = historyImageUrl(this.topic, header.seq);
    el.download.download = downloadName(this.topic, header.content_type, header.seq);
    this.tick();
  }

  async #fetch(topic) {
    const token = this.#token;
    this.#notice('Loading…');
    let header;
    try {
      header = await getJson(topicUrl(topic));
    } catch (error) {
      if (token !== this.#token) return;
      if (error.status === 404) this.#notLive(true);
      else this.#notice(`Could not load this topic (${error.message}).`);
      return;
    }
    // The grid's card may have come first over the socket: it is at least as new.
    if (token !== this.#token || this.#card) return;
    this.#notice('');
    if (this.#scrubber.add(header)) this.#showVersion(header, false);
  }

  /** (Re)load the list of kept versions; one request at a time, repeated if asked meanwhile. */
  async #loadHistory() {
    const token = this.#token;
    if (this.#historyBusy === token) {
      this.#historyAgain = true;
      return;
    }
    this.#historyBusy = token;
    this.#historyAgain = false;
    try {
      const history = await getJson(historyUrl(this.topic));
      if (token === this.#token && Array.isArray(history)) this.#scrubber.replace(history);
    } catch (error) {
      // 404: the topic is not live; the view says so already, or will when it expires.
      if (error.status !== 404) console.warn('elog-stream: could not load history:', error.message);
    } finally {
      if (this.#historyBusy === token) this.#historyBusy = 0;
    }
    if (this.#historyAgain && token === this.#token) this.#loadHistory();
  }

  /** Draw the image with crisp pixels when shown at twice its size or more (HiDPI screens). */
  #fit() {
    const img = this.#el.media.querySelector('img');
    if (!img?.naturalWidth) return;
    const scale = (img.clientWidth * window.devicePixelRatio) / img.naturalWidth;
    img.classList.toggle('pixelated', scale >= 2);
  }

  /**
   * A topic that is not live (a stale or mistyped link): say so plainly, with nothing of a
   * detail view (no empty metadata, no Download of an image that does not exist). Cleared when
   * the topic's card arrives (it went live) and when the view is closed or reused.
   */
  #notLive(missing) {
    this.#root.classList.toggle('focus-missing', missing);
    this.#el.download.hidden = missing;
    this.#notice(
      missing
        ? 'Not live: no topic of this name is being published now. It may have expired, or ' +
            'the link is mistyped. Go back to see all live topics.'
        : '',
    );
  }

  #notice(text) {
    this.#el.notice.textContent = text;
    this.#el.notice.hidden = !text;
  }
}
