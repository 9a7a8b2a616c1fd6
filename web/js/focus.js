// The focus view: one topic large, with its full description, metadata, a download link and
// a scrubber through the versions the server keeps; zoom and pan (zoom.js), full screen, a
// collapsible details panel, a comparison with another topic or version (compare.js), and
// "Pin to logbook" for the version on screen (pin.js).

import { getJson, getJsonAndHeaders } from './api.js';
import { Compare } from './compare.js';
import { ago, bytes, downloadName, isoTime, localTime } from './format.js';
import { altText } from './grid.js';
import { dialogOpen } from './modal.js';
import { BY_USER, GONE, Scrubber, historyLimits } from './scrubber.js';
import { historyImageUrl, historyUrl, imageUrl, topicUrl } from './urls.js';
import { ACTUAL, FIT, Zoom } from './zoom.js';

// New images of the open topic reload the history list (which versions are still kept) at
// most this often, also while they never pause: a fast publisher costs one request a second.
// Between reloads the scrubber drops what each new image evicts by itself.
const HISTORY_REFRESH_MS = 1000;
// The kind of the notice that says the topic is not live (cleared once it is).
const NOT_LIVE = 'not-live';
// The + and - keys and buttons: one step, about a wheel notch.
const ZOOM_STEP = 1.25;
// Remembered in this browser: 'collapsed' when the details panel was hidden.
const DETAILS_KEY = 'elog-focus-details';

export class FocusView {
  #root;
  #el;
  #scrubber;
  #zoom; // side A's
  #compare;
  #onViewChange;
  #onPin;
  #mayPin = false;
  #token = 0; // bumped by open and close: answers for a previous topic are dropped
  #swapToken = 0; // bumped by every swap: only the latest image reaches the screen
  #wanted = null; // seq of the image being swapped in, or on screen
  // While following live, a newest image loading over HTTP is not given up for a newer one
  // (at 10 Hz a full image can take longer than 100 ms: nothing would ever be shown); the
  // newest announced meanwhile waits here and is loaded next.
  #liveLoading = false;
  #nextLive = null;
  #card = null; // the grid card of the topic, whose newest image the view shows when live
  #refreshTimer = 0;
  #lastRefresh = -Infinity; // performance.now() of the last history request
  #historyBusy = 0;
  #historyAgain = false;
  #pinned = null; // seq asked for by the link that opened the view, until the history is in
  topic = null;
  #header = null; // of the image on screen
  #noticeKind = '';

  /**
   * `root` is the focus <section>; `onClose()` is called by its back button; `cardFor(topic)`
   * is the grid's card of a topic, `topicsFor()` the topics it holds; `onViewChange()` is
   * called when what the URL says of the view changes: what is compared and how, and the
   * version shown (`pinnedSeq`); `onPin(shown)` by "Pin to logbook", with the version on
   * screen (see `shown`).
   */
  constructor(
    root,
    { onClose, cardFor = () => undefined, topicsFor = () => [], onViewChange, onPin },
  ) {
    this.#root = root;
    this.#onViewChange = onViewChange ?? (() => {});
    this.#onPin = onPin ?? (() => {});
    const $ = (selector) => root.querySelector(selector);
    this.#el = {
      title: $('[data-focus=topic]'),
      notice: $('[data-focus=notice]'),
      media: $('[data-focus=media]'),
      layout: $('[data-focus=layout]'),
      details: $('[data-focus=details]'),
      info: $('[data-focus=info]'),
      level: $('[data-zoom=level]'),
      fit: $('[data-zoom=fit]'),
      actual: $('[data-zoom=actual]'),
      fullscreen: $('[data-zoom=fullscreen]'),
      download: $('[data-focus=download]'),
      pin: $('[data-focus=pin]'),
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
    this.#zoom = new Zoom($('[data-pane=a] .zoom-stage'), {
      onChange: (view, byUser) => {
        if (byUser) this.#compare.follow(view);
        this.#showZoom();
      },
    });
    this.#compare = new Compare(root, {
      zoomA: this.#zoom,
      cardFor,
      topicsFor,
      versionsFor: () => this.#scrubber.entries,
      onChange: () => this.#onViewChange(),
    });
    $('[data-focus=back]').addEventListener('click', () => onClose());
    this.#el.fit.addEventListener('click', () => this.#zoom.fit());
    this.#el.actual.addEventListener('click', () => this.#zoom.actual());
    $('[data-zoom=in]').addEventListener('click', () => this.#zoom.zoomBy(ZOOM_STEP));
    $('[data-zoom=out]').addEventListener('click', () => this.#zoom.zoomBy(1 / ZOOM_STEP));
    this.#el.fullscreen.addEventListener('click', () => this.#toggleFullscreen());
    this.#el.pin.addEventListener('click', () => this.#pin());
    this.#el.fullscreen.hidden = !document.fullscreenEnabled;
    document.addEventListener('fullscreenchange', () => this.#showZoom());
    this.#el.details.addEventListener('click', () => {
      const collapse = this.#el.details.getAttribute('aria-expanded') === 'true';
      if (collapse) localStorage.setItem(DETAILS_KEY, 'collapsed');
      else localStorage.removeItem(DETAILS_KEY);
      this.#showDetails();
    });
    this.#showDetails();
    document.addEventListener('keydown', (event) => this.#key(event));
  }

  /** What is compared, as the URL says it: {compare, blink} ('' each when nothing). */
  get comparison() {
    return { compare: this.#compare.value, blink: this.#compare.blink ? '1' : '' };
  }

  /** Compare with `compare` (a `compare=` value), blinking or not: from the URL. */
  setComparison({ compare = '', blink = '' } = {}) {
    if (this.isOpen) this.#compare.change(compare, blink === '1');
  }

  get isOpen() {
    return this.topic !== null;
  }

  /** The version on screen, {topic, experiment, seq, digest, live}; null while none is. */
  get shown() {
    const header = this.#header;
    if (!this.isOpen || !header) return null;
    const { experiment, seq, digest } = header;
    return { topic: this.topic, experiment, seq, digest, live: this.#scrubber.following };
  }

  /** Offer "Pin to logbook" or not (whether the service lets this page pin). */
  allowPin(allowed) {
    this.#mayPin = allowed;
    this.#el.pin.hidden = !allowed;
    this.#root.dataset.pin = allowed ? 'allowed' : 'refused';
  }

  /** The version shown when it is not the newest (for the URL), else null. */
  get pinnedSeq() {
    if (this.#pinned !== null) return this.#pinned;
    return this.#scrubber.following ? null : (this.#wanted ?? null);
  }

  /**
   * Show `topic`: from its card when the grid has it, else (a shared link) over HTTP;
   * compared as `comparison` says ({compare, blink} as in the URL); `seq` (from a link) shows
   * that version, once the history says whether it is still kept.
   */
  open(topic, card, { comparison = {}, seq = null } = {}) {
    this.#reset();
    this.#pinned = Number.isSafeInteger(seq) && seq > 0 ? seq : null;
    this.topic = topic;
    this.#compare.open(topic, comparison.compare ?? '', comparison.blink === '1');
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
    this.#compare.close();
    this.topic = null;
    this.#root.hidden = true;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }

  #reset() {
    this.#notLive(false);
    this.#token += 1;
    this.#swapToken += 1;
    this.#wanted = null;
    this.#liveLoading = false;
    this.#nextLive = null;
    this.#header = null;
    this.#showPin();
    this.#card = null;
    this.#pinned = null;
    this.#historyAgain = false;
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = 0;
    this.#scrubber.reset();
    this.#zoom.clear();
    this.#showZoom();
  }

  /**
   * A card of the grid shows a new image: show it here too if it is of the open topic (unless
   * scrolled back), or of the compared one.
   */
  update(card) {
    if (!this.isOpen) return;
    this.#compare.update(card);
    if (card.topic !== this.topic || !card.header) return;
    this.#notLive(false);
    this.#card = card;
    this.announced(card.header);
  }

  /**
   * A new image of the open topic was announced (or its card shows it): follow it, in full,
   * unless scrolled back. The grid's card may show only a preview: then it comes over HTTP.
   */
  announced(header) {
    if (header.topic !== this.topic) return;
    if (this.#noticeKind !== GONE) this.#notice('');
    const following = this.#scrubber.add(header);
    this.#refreshSoon();
    // A link's version waits for the history: no flash of the newest image first.
    if (following && this.#pinned === null && header.seq !== this.#wanted) {
      if (this.#liveLoading) this.#nextLive = header;
      else this.#showVersion(header, true);
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
    this.#compare.expired(topic);
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
    if (!this.isOpen || event.defaultPrevented || dialogOpen()) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === 'Escape' && document.fullscreenElement) {
      // Esc leaves full screen first (browsers do it themselves; this covers the others).
      event.preventDefault();
      document.exitFullscreen().catch(() => {});
      return;
    }
    const target = event.target;
    // Text fields keep their keys; the slider moves itself (and tells the scrubber).
    const editing =
      target instanceof HTMLElement &&
      (target.isContentEditable || target.closest('input, textarea, select') !== null);
    if (editing) return;
    const zoom = this.#zoom;
    const actions = {
      f: () => this.#toggleFullscreen(),
      0: () => zoom.fit(),
      1: () => zoom.actual(),
      '+': () => zoom.zoomBy(ZOOM_STEP),
      '=': () => zoom.zoomBy(ZOOM_STEP),
      '-': () => zoom.zoomBy(1 / ZOOM_STEP),
      b: () => this.#compare.flip(),
      p: () => this.#pin(),
    };
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : ''];
    const delta = event.shiftKey ? 0 : ({ ArrowLeft: -1, ArrowRight: 1 }[event.key] ?? 0);
    if (action) {
      if (action() === false) return; // nothing to do: the key keeps its browser meaning
    } else if (delta) {
      this.#scrubber.step(delta);
    } else {
      return;
    }
    event.preventDefault();
  }

  /** Pin the version on screen (false when none is: the key keeps its meaning). */
  #pin() {
    const shown = this.shown;
    if (!shown || !this.#mayPin) return false;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    this.#onPin(shown);
    return true;
  }

  /**
   * "Pin to logbook" names the version it pins when it is not the newest (scrolled back). On a
   * phone " to logbook" is left out (style.css), so the focus view's bar keeps its height.
   */
  #showPin() {
    const shown = this.shown;
    const pin = this.#el.pin;
    pin.disabled = !shown;
    const label = shown && !shown.live ? `Pin #${shown.seq}` : 'Pin';
    if (pin.firstChild.textContent !== label) pin.firstChild.textContent = label;
    pin.title = shown
      ? `Keep update #${shown.seq}, as shown, in the logbook of ${shown.experiment} (P)`
      : '';
  }

  /** Full screen for the image area (toolbar and both sides); Esc or F leaves. */
  #toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else if (document.fullscreenEnabled) {
      this.#el.media.requestFullscreen().catch((error) => {
        this.#notice(`Full screen was refused (${error.message}).`);
      });
    }
  }

  #showZoom() {
    const el = this.#el;
    const zoom = this.#zoom;
    const shown = Boolean(zoom.image);
    el.level.textContent = shown ? `${Math.round(zoom.scale * 100)}%` : '';
    el.level.title = shown
      ? `Shown at ${Math.round(zoom.scale * 100)}% of its pixel size` +
        (zoom.mode === FIT ? ', fitted to the screen' : '')
      : '';
    el.fit.setAttribute('aria-pressed', String(zoom.mode === FIT));
    el.actual.setAttribute('aria-pressed', String(zoom.mode === ACTUAL));
    const full = document.fullscreenElement === el.media;
    el.fullscreen.setAttribute('aria-pressed', String(full));
    el.fullscreen.textContent = full ? 'Exit full screen' : 'Full screen';
  }

  /** The details panel, shown or collapsed as last chosen in this browser. */
  #showDetails() {
    const collapsed = localStorage.getItem(DETAILS_KEY) === 'collapsed';
    this.#el.info.hidden = collapsed;
    this.#el.layout.classList.toggle('details-collapsed', collapsed);
    this.#el.details.setAttribute('aria-expanded', String(!collapsed));
    this.#el.details.textContent = collapsed ? 'Show details' : 'Hide details';
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
    this.#onViewChange();
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
    const cardShows = card?.full && card.header?.seq === entry.seq;
    if (following && cardShows && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
      return;
    }
    const img = new Image();
    img.src = historyImageUrl(this.topic, entry.seq);
    this.#swap(img, entry, { kept: true, live: following });
  }

  /** Put `img` (showing the version `header`) on screen once decoded; never a half image. */
  async #swap(img, header, { kept = false, live = false } = {}) {
    const token = ++this.#swapToken;
    this.#wanted = header.seq;
    this.#liveLoading = live;
    if (!live) this.#nextLive = null;
    img.className = 'focus-img';
    img.alt = altText(header);
    img.dataset.seq = String(header.seq);
    try {
      await img.decode();
    } catch {
      if (token !== this.#swapToken) return;
      this.#wanted = this.#header?.seq ?? null;
      if (live && this.#nextLive) {
        this.#liveDone(); // dropped by the server while loading: the newest announced follows
        return;
      }
      this.#liveLoading = false;
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
    if (kept && this.#noticeKind !== GONE) this.#notice('');
    this.#zoom.show(img);
    this.#render(header);
    this.#scrubber.showing(header);
    this.#compare.showingA(header, this.#scrubber.following);
    this.#liveDone();
  }

  /** The live image that was loading is done: load the newest announced meanwhile, if any. */
  #liveDone() {
    if (!this.#liveLoading) return;
    this.#liveLoading = false;
    const next = this.#nextLive;
    this.#nextLive = null;
    if (next && this.#scrubber.following && next.seq !== this.#wanted) {
      this.#showVersion(next, true);
    }
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
    this.#showPin();
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
        this.#compare.versionsChanged();
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

  /**
   * A topic that is not live (a stale or mistyped link): say so plainly, with nothing of a
   * detail view (no empty metadata, no Download of an image that does not exist). Cleared when
   * the topic's card arrives (it went live) and when the view is closed or reused.
   */
  #notLive(missing) {
    this.#root.classList.toggle('focus-missing', missing);
    this.#el.download.hidden = missing;
    if (missing) {
      this.#notice(
        'Not live: no topic of this name is being published now. It may have expired, or ' +
          'the link is mistyped. Go back to see all live topics.',
        NOT_LIVE,
      );
    } else if (this.#noticeKind === NOT_LIVE) {
      this.#notice(''); // only its own notice: a GONE one stays until the user moves
    }
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
    const header = this.#card?.header;
    if (header) this.#showVersion(header, true);
    this.#onViewChange();
  }

  /** Show `text` (none: hide); a GONE notice stays until the user moves the scrubber. */
  #notice(text, kind = '') {
    this.#noticeKind = text ? kind : '';
    this.#el.notice.textContent = text;
    this.#el.notice.hidden = !text;
  }
}
