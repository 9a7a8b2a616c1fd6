// Where each card sits. Sections in this order: the pinned topics, then all other topics in one
// list (or one list per experiment when grouped), then the topics that appeared while the page
// was open. Within a section cards are sorted by name, except the new ones: they are appended
// in the order they came, at the very end, until the user sorts them in. So no card on screen
// ever moves by itself: only pinning, grouping or "sort in" rearrange the grid.

import { element } from './dom.js';
import { logbookHref } from './urls.js';

const PINNED = 'pinned';
const ALL = 'all';
const NEW = 'new';
const GROUP = 'group:';

/** Sections' order: pinned, the topics (by experiment name), new. */
function rank(key) {
  return key === PINNED ? 0 : key === NEW ? 2 : 1;
}

function compareKeys(a, b) {
  return rank(a) - rank(b) || a.localeCompare(b);
}

function byTopic(a, b) {
  return a.dataset.topic.localeCompare(b.dataset.topic);
}

export class Arrangement {
  #root;
  #cards;
  #sections = new Map(); // key -> {section, heading, count, list}
  #pins = new Set();
  #grouped = false;
  #fresh = new Set(); // topics that appeared while the page was open, in the "new" section
  #expected = new Set(); // topics the user asked for: sorted into place when they arrive
  #ids = 0;

  /**
   * `root` holds the sections; `cards()` lists the grid's cards ({topic, item, pin,
   * experimentName}); `onPin(topic)` is called by a card's pin button, `onSortIn()` by the
   * new section's button.
   */
  constructor(root, { cards, onPin, onSortIn }) {
    this.#root = root;
    this.#cards = cards;
    root.addEventListener('click', (event) => {
      const pin = event.target.closest('button.card-pin');
      if (pin) onPin(pin.dataset.topic);
      else if (event.target.closest('button[data-sort-in]')) onSortIn();
    });
  }

  get pins() {
    return [...this.#pins];
  }

  /** How many topics wait in the "new" section. */
  get freshCount() {
    return this.#fresh.size;
  }

  isPinned(topic) {
    return this.#pins.has(topic);
  }

  /**
   * `topics` answer what the user asked for (the first connection, a new filter): each is sorted
   * into place when it arrives. Any other topic arriving is new and goes to the end.
   */
  expect(topics) {
    this.#expected = new Set(topics);
  }

  /** Put a new card in its place: sorted when expected, else at the very end. */
  place(card) {
    if (!this.#expected.delete(card.topic)) this.#fresh.add(card.topic);
    this.#mark(card);
    const key = this.#key(card);
    const { list } = this.#section(key);
    const after = key === NEW ? null : [...list.children].find((i) => byTopic(i, card.item) > 0);
    if (after) after.before(card.item);
    else list.append(card.item);
  }

  /** A card was removed (its item is gone already). */
  forget(topic) {
    this.#fresh.delete(topic);
    this.#expected.delete(topic);
  }

  /** Pin exactly `pins`; a card pinned or unpinned leaves the new section (the user placed it). */
  setPins(pins) {
    const next = new Set(pins);
    for (const topic of new Set([...next, ...this.#pins])) {
      if (next.has(topic) !== this.#pins.has(topic)) this.#fresh.delete(topic);
    }
    this.#pins = next;
    this.#rebuild();
  }

  setGrouped(grouped) {
    this.#grouped = grouped;
    this.#rebuild();
  }

  /** Sort the new topics into their places. */
  sortIn() {
    this.#fresh.clear();
    this.#rebuild();
  }

  /** Hide sections with no card shown, count the shown ones, drop empty sections. */
  refresh() {
    let shownSections = 0;
    for (const [key, parts] of this.#sections) {
      const items = [...parts.list.children];
      if (items.length === 0) {
        parts.section.remove();
        this.#sections.delete(key);
        continue;
      }
      const shown = items.filter((item) => !item.hidden).length;
      parts.section.hidden = shown === 0;
      if (shown) shownSections += 1;
      const count = String(shown);
      if (parts.count.textContent !== count) parts.count.textContent = count;
    }
    // One plain list needs no heading.
    const plain = shownSections === 1 && !this.#sections.get(ALL)?.section.hidden;
    for (const [key, parts] of this.#sections) parts.heading.hidden = plain && key === ALL;
  }

  #key(card) {
    if (this.#fresh.has(card.topic)) return NEW;
    if (this.#pins.has(card.topic)) return PINNED;
    return this.#grouped ? `${GROUP}${card.experimentName ?? ''}` : ALL;
  }

  #mark(card) {
    const pinned = this.#pins.has(card.topic);
    card.pin.setAttribute('aria-pressed', String(pinned));
    card.item.classList.toggle('card-pinned', pinned);
  }

  /** Every card to its section and place (asked for by the user); keeps the keyboard focus. */
  #rebuild() {
    const active = document.activeElement;
    const keyed = new Map();
    for (const card of this.#cards()) {
      this.#mark(card);
      const key = this.#key(card);
      if (!keyed.has(key)) keyed.set(key, []);
      keyed.get(key).push(card.item);
    }
    for (const [key, parts] of this.#sections) {
      if (!keyed.has(key)) {
        parts.section.remove();
        this.#sections.delete(key);
      }
    }
    for (const key of [...keyed.keys()].sort(compareKeys)) {
      const items = keyed.get(key);
      const { list } = this.#section(key);
      if (key !== NEW) items.sort(byTopic); // new ones stay in the order they came (cards())
      list.append(...items);
    }
    this.refresh();
    if (active instanceof HTMLElement && active !== document.activeElement) {
      active.focus({ preventScroll: true });
    }
  }

  #label(key) {
    if (key === PINNED) return 'Pinned';
    if (key === NEW) return 'New since you opened the page';
    if (key === ALL) return 'Topics';
    return key.slice(GROUP.length) || '(no experiment)';
  }

  #section(key) {
    const existing = this.#sections.get(key);
    if (existing) return existing;
    const section = element('section', 'group');
    section.dataset.group = key;
    const head = element('div', 'group-head');
    const heading = element('h2', 'group-title');
    heading.id = `group-${++this.#ids}`;
    const name = element('span', 'group-name', this.#label(key));
    name.title = name.textContent;
    const count = element('span', 'group-count');
    heading.append(name, count);
    head.append(heading);
    if (key.startsWith(GROUP)) {
      const experiment = key.slice(GROUP.length);
      const logbook = element('a', 'group-logbook', 'Logbook');
      logbook.href = logbookHref(experiment);
      logbook.setAttribute('aria-label', `Logbook of ${this.#label(key)}`);
      head.append(logbook);
    }
    if (key === NEW) {
      const button = element('button', 'button', 'Sort into place');
      button.type = 'button';
      button.dataset.sortIn = '';
      head.append(button);
    }
    const list = element('ul', 'grid');
    list.setAttribute('aria-labelledby', heading.id);
    section.append(head, list);
    const next = [...this.#sections.keys()].sort(compareKeys).find((k) => compareKeys(k, key) > 0);
    if (next) this.#sections.get(next).section.before(section);
    else this.#root.append(section);
    const parts = { section, heading: head, count, list };
    this.#sections.set(key, parts);
    return parts;
  }
}
