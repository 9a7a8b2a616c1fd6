// The focus view: one topic large, with its full description, metadata, a download link and
// a scrubber through the versions the server keeps.

import { getJson, getJsonAndHeaders } from './api.js';
import { ago, bytes, downloadName, isoTime, localTime } from './format.js';
import { altText } from './grid.js';
import { BY_USER, GONE, Scrubber, historyLimits } from './scrubber.js';
import { historyImageUrl, historyUrl, imageUrl, topicUrl } from './urls.js';

// New images of the open topic reload the history list (which versions are still kept) at
// most this often, also while they never pause: a fast publisher costs one request a second.
// Between reloads the scrubber drops what each new image evicts by itself.
const HISTORY_REFRESH_MS = 1000;

export class FocusView {
  #root;
  #el;
  #scrubber;
  #token = 0; // bumped by open and close: answers for a previous topic are dropped
  #swapToken = 0; // bumped by every swap: only the latest image reaches the screen
  #wanted = null; // seq of the image being swapped in, or on screen
  #card = null; // the grid card of the topic, whose newest image the view shows when live
  #refreshTimer = 0;
  #lastRefresh = -Infinity; // performance.now() of the last history request
  #historyBusy = 0;
  #historyAgain = false;
  #pinned = null; // seq asked for by the link that opened the view, until the history is in
  #onVersion;
  topic = null;
  #header = null; // of the image on screen
  #noticeKind = '';

  /**
   * `root` is the focus <section>; `onClose()` is called by its back button, `onVersion()`
   * when `pinnedSeq` changed (the version to put in the URL).
   */
  constructor(root, { onClose, onVersion = () => {} }) {
    this.#onVersion = onVersion;
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
      onSettle: (entry, following, why) => this.#settled(entry, following, why),
    });
    $('[data-focus=back]').addEventListener('click', () => onClose());
    window.addEventListener('resize', () => this.#fit());
    document.addEventListener('keydown', (event) => this.#key(event));
  }

  get isOpen() {
    return this.topic !== null;
  }

  /** The version shown when it is not the newest (for the URL), else null. */
  get pinnedSeq() {
    if (this.#pinned !== null) return this.#pinned;
    return this.#scrubber.following ? null : (this.#wanted ?? null);
  }

  /**
   * Show `topic`: from its card when the grid has it, else (a shared link) over HTTP; `seq`
   * (from a link) shows that version, once the history says whether it is still kept.
   */
  open(topic, card, { seq = null } = {}) {
    this.#reset();
    this.#pinned = Number.isSafeInteger(seq) && seq > 0 ? seq : null;
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
    this.#token += 1;
    this.#swapToken += 1;
    this.#wanted = null;
    this.#header = null;
    this.#card = null;
    this.#pinned = null;
    this.#historyAgain = false;
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = 0;
    this.#scrubber.reset();
    this.#el.media.replaceChildren();
  }

  /** The card of the open topic shows a new image: show it here too, unless scrolled back. */
  update(card) {
    if (card.topic !== this.topic || !card.header) return;
    this.#card = card;
    if (this.#noticeKind !== GONE) this.#notice('');
    const following = this.#scrubber.add(card.header);
    this.#refreshSoon();
    // A link's version waits for the history: no flash of the newest image first.
    if (following && this.#pinned === null && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
    }
  }

  /** Reload the history within HISTORY_REFRESH_MS of the last reload, not sooner. */
  #refreshSoon() {
    if (this.#refreshTimer) return;
    const wait = Math.max(0, this.#lastRefresh + HISTORY_REFRESH_MS - performance.now());
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = 0;
      this.#loadHistory();
    }, wait);
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

  /** The scrubber came to rest on `entry`: say why if it had to, show it, note it in the URL. */
  #settled(entry, following, { why, wanted }) {
    if (why === GONE) {
      let where = 'the next kept';
      if (following) where = 'the newest';
      else if (entry === this.#scrubber.oldest) where = 'the oldest kept';
      this.#notice(
        `Update #${wanted} is no longer kept on the server${this.#keeps()}: ` +
          `showing ${where}, #${entry.seq}.`,
        GONE,
      );
    } else if (why === BY_USER && this.#noticeKind === GONE) {
      this.#notice('');
    }
    this.#showVersion(entry, following);
    this.#onVersion();
  }

  /** " (it keeps 50 updates, 5 s)": the limits, when the server told them. */
  #keeps() {
    const limits = this.#scrubber.limits;
    if (!limits) return '';
    const updates = limits.length === 1 ? 'only the newest update' : `${limits.length} updates`;
    const within = limits.seconds > 0 ? `, ${limits.seconds} s` : '';
    return ` (it keeps ${updates}${within})`;
  }

  /** The card's image if `entry` is the newest, else the kept one over HTTP. */
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
        // The reloaded list no longer has it: the scrubber moves on and says so.
        this.#notice(`Update #${header.seq} is no longer kept on the server.`, GONE);
        this.#loadHistory();
      }
      return;
    }
    if (token !== this.#swapToken) return;
    this.#el.media.replaceChildren(img);
    this.#render(header);
    this.#scrubber.showing(header);
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
      this.#notice(
        error.status === 404
          ? 'No live topic has this name: it may have expired, or the link is mistyped.'
          : `Could not load this topic (${error.message}).`,
      );
      return;
    }
    // The grid's card may have come first over the socket: it is at least as new.
    if (token !== this.#token || this.#card) return;
    this.#notice('');
    if (this.#scrubber.add(header) && this.#pinned === null) this.#showVersion(header, false);
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
    this.#lastRefresh = performance.now();
    try {
      const { body, headers } = await getJsonAndHeaders(historyUrl(this.topic));
      if (token === this.#token && Array.isArray(body)) {
        this.#scrubber.replace(body, historyLimits(headers));
        this.#restorePinned();
      } else if (token === this.#token) {
        this.#unpin();
      }
    } catch (error) {
      // 404: the topic is not live; the view says so already, or will when it expires.
      if (error.status !== 404) console.warn('elog-stream: could not load history:', error.message);
      if (token === this.#token) this.#unpin();
    } finally {
      if (this.#historyBusy === token) this.#historyBusy = 0;
    }
    if (this.#historyAgain && token === this.#token) this.#loadHistory();
  }

  /** The first history is in: go to the version the link asked for (or say it is gone). */
  #restorePinned() {
    const seq = this.#pinned;
    if (seq === null) return;
    this.#pinned = null;
    this.#scrubber.pin(seq);
  }

  /** No history to find the link's version in: show the newest instead. */
  #unpin() {
    if (this.#pinned === null) return;
    this.#pinned = null;
    const card = this.#card;
    if (card?.header && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
    }
    this.#onVersion();
  }

  /** Draw the image with crisp pixels when shown at twice its size or more (HiDPI screens). */
  #fit() {
    const img = this.#el.media.querySelector('img');
    if (!img?.naturalWidth) return;
    const scale = (img.clientWidth * window.devicePixelRatio) / img.naturalWidth;
    img.classList.toggle('pixelated', scale >= 2);
  }

  /** Show `text` (none: hide); a GONE notice stays until the user moves the scrubber. */
  #notice(text, kind = '') {
    this.#noticeKind = text ? kind : '';
    this.#el.notice.textContent = text;
    this.#el.notice.hidden = !text;
  }
}
