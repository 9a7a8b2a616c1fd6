// The live grid: one card per topic, images swapped in only once decoded.

import { element } from './dom.js';
import { ago, interval, isoTime, localTime, shortTime } from './format.js';
import { Freshness, LATE, LIVE, OFFLINE, STALE } from './freshness.js';
import { PreviewLoader } from './previews.js';

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

export function altText(header) {
  return `Figure ${header.topic} of experiment ${header.experiment}, update ${header.seq}`;
}

/**
 * One topic. `header` and `url` are those of the image on screen; both change together.
 * The card owns `url` (an object URL) and revokes it when it is replaced or removed.
 * `width` is the preview width asked for the image on screen, Infinity when it is the full
 * image (`full`): a preview no narrower than the image is the image itself.
 */
class Card {
  #token = 0;
  #judge;

  /** `judge(card, now)` says how fresh the card is: {state, usualMs} (see freshness.js). */
  constructor(topic, href, judge) {
    this.#judge = judge;
    this.topic = topic;
    this.header = null;
    this.url = null;
    this.width = 0;
    this.full = false;
    this.removed = false;
    this.experimentName = null; // of the newest image received, shown yet or not
    this.latestDescription = ''; // likewise, for the search
    this.item = element('li', 'card-item');
    this.item.dataset.topic = topic;
    this.link = element('a', 'card');
    this.link.href = href;
    this.link.dataset.topic = topic;
    this.media = element('div', 'card-media');
    this.img = element('div', 'card-placeholder', 'loading…');
    this.media.append(this.img);
    const body = element('div', 'card-body');
    this.title = element('h3', 'card-topic', topic);
    this.title.title = topic; // the full name where it is ellipsised
    const meta = element('p', 'card-meta');
    this.experiment = element('span', 'card-experiment');
    this.seq = element('span', 'card-seq');
    meta.append(this.experiment, this.seq);
    this.description = element('p', 'card-description');
    // When: the exact time, how long ago, and a badge when late, stale or offline.
    const when = element('p', 'card-when');
    this.clock = element('time', 'card-clock');
    this.updated = element('time', 'card-updated');
    this.badge = element('span', 'card-badge');
    this.badge.hidden = true;
    when.append(this.clock, this.updated, this.badge);
    body.append(this.title, meta, this.description, when);
    this.link.append(this.media, body);
    // Beside the link, not in it: a button inside a link is neither valid nor reachable.
    this.pin = element('button', 'card-pin');
    this.pin.type = 'button';
    this.pin.dataset.topic = topic;
    this.pin.setAttribute('aria-label', `Pin ${topic}`);
    this.pin.setAttribute('aria-pressed', 'false');
    this.pin.title = 'Pinned topics come first';
    this.item.append(this.link, this.pin);
  }

  /**
   * Show `blob` (a preview `width` pixels wide, or the full image) once it is decoded;
   * resolves true if it reached the screen, false if a newer image arrived meanwhile (the
   * newest wins) or it could not be decoded. Without `blob`, the same picture's metadata.
   */
  async show(header, blob, width = Infinity) {
    const token = ++this.#token;
    const same = this.header && header.digest && header.digest === this.header.digest;
    if (same && (!blob || width <= this.width)) {
      this.#render(header); // same picture (e.g. re-sent after a resubscribe): metadata only
      return true;
    }
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.src = url;
    try {
      await img.decode();
    } catch {
      URL.revokeObjectURL(url);
      if (token === this.#token && !this.removed) {
        console.warn(`elog-stream: ${header.topic}: image ${header.seq} could not be decoded`);
        this.item.classList.add('card-broken');
      }
      return false;
    }
    if (token !== this.#token || this.removed) {
      URL.revokeObjectURL(url);
      return false;
    }
    img.className = 'card-img';
    img.alt = altText(header);
    img.draggable = false;
    this.img.replaceWith(img);
    this.img = img;
    this.item.classList.remove('card-broken');
    this.full = width === Infinity || img.naturalWidth < width;
    this.width = this.full ? Infinity : width;
    const old = this.url;
    this.url = url;
    this.#render(header);
    if (old) URL.revokeObjectURL(old);
    this.#flash();
    return true;
  }

  /**
   * Before its first image is on screen (its preview still loading, e.g. off screen), show
   * what the announcement says: the card has its final size, and its numbers, at once.
   */
  describe(header) {
    if (this.header) return;
    this.#fill(header);
    this.clock.textContent = shortTime(header.updated_at, Date.now());
    this.updated.textContent = `updated ${ago(header.updated_at, Date.now())}`;
  }

  #render(header) {
    this.header = header;
    this.#fill(header);
    this.tick(Date.now());
  }

  #fill(header) {
    this.experiment.textContent = header.experiment;
    this.experiment.title = header.experiment;
    this.seq.textContent = `#${header.seq}`;
    this.seq.title = `update ${header.seq}`;
    this.description.textContent = header.description;
    this.updated.dateTime = isoTime(header.updated_at);
    this.updated.title = localTime(header.updated_at);
    this.clock.dateTime = this.updated.dateTime;
    this.clock.title = this.updated.title;
  }

  #flash() {
    if (reducedMotion.matches || !this.seq.animate) return;
    // Only the number lights up: at one update a second a whole-card flash never settles.
    this.seq.animate([{ color: 'var(--accent)' }, { color: 'inherit' }], {
      duration: 1500,
      easing: 'ease-out',
    });
  }

  /** Redraw the times and the freshness state. */
  tick(now) {
    if (!this.header) return;
    const { state, usualMs } = this.#judge(this, now);
    // Compared first: a wall screen of many cards should not re-lay out text every second.
    const set = (node, text) => {
      if (node.textContent !== text) node.textContent = text;
    };
    set(this.clock, shortTime(this.header.updated_at, now));
    set(this.updated, `updated ${ago(this.header.updated_at, now)}`);
    if (this.item.dataset.state !== state) this.item.dataset.state = state;
    const usual = usualMs === null ? '' : ` · usual every ${interval(usualMs)}`;
    const badge = { [LATE]: `late${usual}`, [STALE]: `stale${usual}`, [OFFLINE]: 'offline' };
    set(this.badge, badge[state] ?? '');
    this.badge.hidden = state === LIVE;
  }

  destroy() {
    this.removed = true;
    this.#token += 1;
    this.item.remove();
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }
}

export class Grid {
  #cards = new Map();
  #filter = null;
  #freshness = new Freshness();
  #offline = false;
  #hrefFor;
  #onSwap;
  #previews;
  #arrangement;

  /**
   * `list` holds the cards, placed by `arrangement` (arrange.js); `onOpen(topic)` is called for
   * a plain click or Enter on a card, `onSwap(card)` after a card shows a new image,
   * `hrefFor(topic)` gives a card's link.
   */
  constructor(list, { onOpen, onSwap, hrefFor, arrangement }) {
    this.#onSwap = onSwap;
    this.#hrefFor = hrefFor;
    this.#previews = new PreviewLoader((card, header, blob, width) =>
      this.#show(card, header, blob, width));
    this.#arrangement = arrangement;
    list.addEventListener('click', (event) => {
      const link = event.target.closest('a.card');
      // Modified clicks keep their browser meaning (new tab, copy link, ...).
      const modified = event.ctrlKey || event.metaKey || event.shiftKey || event.altKey;
      if (!link || event.button !== 0 || modified) return;
      event.preventDefault();
      onOpen(link.dataset.topic);
    });
  }

  get(topic) {
    return this.#cards.get(topic);
  }

  topics() {
    return [...this.#cards.keys()];
  }

  /** Every card, in the order they were created. */
  cards() {
    return [...this.#cards.values()];
  }

  get size() {
    return this.#cards.size;
  }

  get visibleCount() {
    let count = 0;
    for (const card of this.#cards.values()) if (!card.item.hidden) count += 1;
    return count;
  }

  /**
   * Show a new image of `header.topic`, adding its card if it is new. Without `blob` (the
   * service announced it without its bytes), its preview is fetched when the card is in view.
   */
  async upsert(header, blob) {
    let card = this.#cards.get(header.topic);
    if (!card) {
      card = new Card(header.topic, this.#hrefFor(header.topic), (c, now) => this.#judge(c, now));
      this.#cards.set(header.topic, card);
      this.#arrangement.place(card);
    }
    card.experimentName = header.experiment;
    this.heard(header);
    card.latestDescription = header.description;
    this.#applyFilter(card);
    if (blob || (card.header && header.digest === card.header.digest)) {
      await this.#show(card, header, blob);
    } else {
      card.describe(header);
      this.#previews.request(card, header);
    }
  }

  async #show(card, header, blob, width) {
    if (await card.show(header, blob, width)) this.#onSwap(card);
  }

  /** Preview fetches running and waiting (for tests). */
  get previewState() {
    return this.#previews.state;
  }

  remove(topic) {
    this.#freshness.forget(topic); // heard of while paused, its card may not exist yet
    const card = this.#cards.get(topic);
    if (!card) return false;
    this.#previews.forget(card);
    card.destroy();
    this.#cards.delete(topic);
    this.#arrangement.forget(topic);
    return true;
  }

  /** Hide the cards `filter` excludes and point every card link at the new view. */
  setFilter(filter) {
    this.#filter = filter;
    for (const card of this.#cards.values()) {
      this.#applyFilter(card);
      card.link.href = this.#hrefFor(card.topic);
    }
  }

  #applyFilter(card) {
    const filter = this.#filter;
    card.item.hidden =
      Boolean(filter) && !filter.matches(card.topic, card.experimentName, card.latestDescription);
  }

  /** Experiments of the cards held, shown or not. */
  experiments() {
    const names = new Set();
    for (const card of this.#cards.values()) names.add(card.experimentName);
    return names;
  }

  /**
   * An update of `header.topic` arrived, shown or not (a paused page holds it back): it
   * proves the topic alive and teaches its usual interval. Repeats of a seq are ignored.
   */
  heard(header) {
    this.#freshness.note(header);
  }

  /** While the service is unreachable every card says offline, whatever its rhythm. */
  setOffline(offline) {
    if (offline === this.#offline) return;
    this.#offline = offline;
    const now = Date.now();
    for (const card of this.#cards.values()) card.tick(now);
  }

  #judge(card, now) {
    if (this.#offline) return { state: OFFLINE, usualMs: null };
    return this.#freshness.judge(card.topic, card.header.updated_at, now);
  }

  tick() {
    const now = Date.now();
    for (const card of this.#cards.values()) if (!card.item.hidden) card.tick(now);
  }
}
