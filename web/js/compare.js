// The second side of the focus view: another live topic, or a kept version of the focused one,
// shown beside it (split) or in its place every half second (blink), zoomed and panned in step.
//
// Side A (the focused topic) is FocusView's; this module owns side B, the "Compare with…"
// picker and the split/blink controls. What is compared is a `compare=` value (urls.js):
// a topic name, or '@123' for version 123 of the focused topic.

import { getJson } from './api.js';
import { clockTime } from './format.js';
import { altText } from './grid.js';
import { compareValue, historyImageUrl, parseCompare, topicUrl } from './urls.js';
import { Zoom } from './zoom.js';

// Blink: each side shown this long (the eye compares best at a few times a second).
export const BLINK_MS = 500;

function option(value, text) {
  const node = document.createElement('option');
  node.value = value;
  node.textContent = text;
  return node;
}

export class Compare {
  #panes; // the element holding both panes: data-layout single|split|blink, data-shown a|b
  #labels;
  #pick;
  #blinkButton;
  #zoomA;
  #zoomB;
  #cardFor;
  #topicsFor;
  #versionsFor;
  #onChange;
  #focused = null; // the focused topic (side A)
  #target = null; // {topic} or {seq}: side B
  #token = 0; // bumped when the target changes: answers for an earlier one are dropped
  #swapToken = 0;
  #headerB = null;
  #blink = false;
  #held = false; // blinking stopped on one side by the B key
  #blinkTimer = 0;

  /**
   * `root` is the focus view; `zoomA` side A's Zoom; `cardFor(topic)` the grid's card of a
   * topic (or undefined); `topicsFor()` the topics to offer; `versionsFor()` the versions of
   * the focused topic (the scrubber's, newest first); `onChange()` is called when what is
   * compared, or how, changes (for the URL).
   */
  constructor(root, { zoomA, cardFor, topicsFor, versionsFor, onChange }) {
    const $ = (selector) => root.querySelector(selector);
    this.#panes = $('[data-focus=panes]');
    this.#labels = { a: $('[data-pane=a] .pane-label'), b: $('[data-pane=b] .pane-label') };
    this.#pick = $('[data-compare=pick]');
    this.#blinkButton = $('[data-compare=blink]');
    this.#zoomA = zoomA;
    this.#cardFor = cardFor;
    this.#topicsFor = topicsFor;
    this.#versionsFor = versionsFor;
    this.#onChange = onChange;
    this.#zoomB = new Zoom($('[data-pane=b] .zoom-stage'), {
      onChange: (view, byUser) => {
        if (byUser) this.#zoomA.setView(view);
      },
    });
    // Filled as it is opened, so it lists the topics and versions of that moment.
    for (const type of ['pointerdown', 'focus']) {
      this.#pick.addEventListener(type, () => this.#fillPicker());
    }
    this.#pick.addEventListener('change', () => {
      this.#set(this.#pick.value);
      this.#onChange();
    });
    this.#blinkButton.addEventListener('click', () => {
      // Split -> blink; blink held on one side (B) -> blinking again; blinking -> split.
      if (this.#blink && this.#held) this.#hold(false);
      else this.setBlink(!this.#blink);
      this.#onChange();
    });
    this.#render();
  }

  /** The `compare=` value of what is compared ('' for nothing). */
  get value() {
    return compareValue(this.#target);
  }

  get blink() {
    return this.#blink;
  }

  get active() {
    return this.#target !== null;
  }

  /** Side A's view changed by the user: side B follows. */
  follow(view) {
    if (this.active) this.#zoomB.setView(view);
  }

  /** The focus view shows `topic` now; compare it with `value`, blinking or not. */
  open(topic, value, blink) {
    this.#focused = topic;
    this.#set(value);
    this.setBlink(blink && this.active);
  }

  close() {
    this.#focused = null;
    this.#set('');
    this.setBlink(false);
  }

  /** Another `compare=` value for the same focused topic (the browser's Back, a link). */
  change(value, blink) {
    if (value !== this.value) this.#set(value);
    this.setBlink(blink && this.active);
  }

  #set(value) {
    const target = parseCompare(value);
    this.#token += 1;
    this.#swapToken += 1;
    this.#target = target;
    this.#headerB = null;
    this.#zoomB.clear();
    this.#caption('b', target ? 'Loading…' : '');
    if (!target) this.setBlink(false);
    else if (target.seq !== undefined) this.#showVersion(target.seq);
    else this.#showTopic(target.topic);
    this.#render();
    this.#refillPicker();
  }

  setBlink(on) {
    this.#blink = Boolean(on) && this.active;
    this.#hold(false);
  }

  /** The B key: show the other side and stay there (from split, start blinking held). */
  flip() {
    if (!this.active) return false;
    if (!this.#blink) this.#blink = true;
    this.#panes.dataset.shown = this.#panes.dataset.shown === 'a' ? 'b' : 'a';
    this.#hold(true);
    this.#onChange();
    return true;
  }

  #hold(held) {
    this.#held = held && this.#blink;
    clearInterval(this.#blinkTimer);
    this.#blinkTimer = 0;
    if (this.#blink && !this.#held) {
      this.#blinkTimer = setInterval(() => {
        this.#panes.dataset.shown = this.#panes.dataset.shown === 'a' ? 'b' : 'a';
      }, BLINK_MS);
    }
    if (!this.#blink) this.#panes.dataset.shown = 'a';
    this.#render();
  }

  /**
   * A card of the grid shows a new image: side B follows it if it is the compared topic, in
   * full (the card may show only a preview).
   */
  update(card) {
    if (this.#target?.topic !== card.topic || !card.header) return;
    this.#showCard(card);
  }

  expired(topic) {
    if (this.#target?.topic === topic && this.#headerB) {
      this.#caption('b', `${this.#describe(this.#headerB)} · expired`);
    }
  }

  /** The versions of the focused topic changed: the pinned one may have its metadata now. */
  versionsChanged() {
    if (this.#headerB && !this.#headerB.updated_at) {
      this.#headerB = this.#version(this.#headerB.seq) ?? this.#headerB;
    }
    this.#render();
    this.#refillPicker();
  }

  #version(seq) {
    return this.#versionsFor().find((entry) => entry.seq === seq && entry.updated_at);
  }

  /** Side A shows `header`, following the newest (`live`) or not. */
  showingA(header, live) {
    this.#caption('a', `${this.#describe(header)} · ${live ? 'live' : 'kept version'}`);
  }

  // --- side B ----------------------------------------------------------------------------------

  async #showTopic(topic) {
    const card = this.#cardFor(topic);
    if (card?.header) {
      this.#showCard(card);
      return;
    }
    // Not in the grid (a link opened before the socket delivered it, or outside the filter).
    const token = this.#token;
    try {
      const header = await getJson(topicUrl(topic));
      // The card may have come over the socket meanwhile: update() showed it.
      if (token !== this.#token || this.#headerB || this.#cardFor(topic)?.header) return;
      this.#showFull(header);
    } catch (error) {
      if (token !== this.#token) return;
      this.#caption(
        'b',
        error.status === 404 ? `${topic}: no live topic has this name` : `${topic}: ${error.message}`,
      );
    }
  }

  #showCard(card) {
    if (card.full && card.img instanceof HTMLImageElement) {
      this.#swap(card.img.cloneNode(), card.header);
    } else {
      this.#showFull(card.header);
    }
  }

  /** The full image of `header` (a topic's update, by its seq: exactly that version). */
  #showFull(header) {
    const img = new Image();
    img.src = historyImageUrl(header.topic, header.seq);
    this.#swap(img, header, true);
  }

  #showVersion(seq) {
    const img = new Image();
    img.src = historyImageUrl(this.#focused, seq);
    this.#swap(img, this.#version(seq) ?? { topic: this.#focused, seq }, true);
  }

  async #swap(img, header, fetched = false) {
    const token = ++this.#swapToken;
    img.className = 'compare-img';
    img.alt = header.experiment ? altText(header) : `Figure ${header.topic}, update ${header.seq}`;
    img.dataset.seq = String(header.seq);
    try {
      await img.decode();
    } catch {
      if (token !== this.#swapToken || !fetched) return; // a newer card image follows
      this.#caption('b', `Update #${header.seq} of ${header.topic} is no longer kept`);
      return;
    }
    if (token !== this.#swapToken) return;
    // A version's metadata may have come with the history list while its image loaded.
    this.#headerB = header.updated_at ? header : (this.#version(header.seq) ?? header);
    const first = !this.#zoomB.image;
    this.#zoomB.show(img);
    if (first) this.#zoomB.setView(this.#zoomA.view); // start where side A is
    this.#render();
  }

  // --- rendering -------------------------------------------------------------------------------

  #describe(header) {
    const time = header.updated_at ? ` · ${clockTime(header.updated_at)}` : '';
    return `${header.topic} · #${header.seq}${time}`;
  }

  #caption(side, text) {
    this.#labels[side].textContent = text;
  }

  #render() {
    const target = this.#target;
    this.#panes.dataset.layout = !target ? 'single' : this.#blink ? 'blink' : 'split';
    this.#panes.dataset.blinking = String(this.#blinkTimer !== 0);
    const header = this.#headerB;
    if (header) {
      const pinned = target?.seq !== undefined;
      this.#caption('b', `${this.#describe(header)} · ${pinned ? 'pinned version' : 'live'}`);
    }
    this.#blinkButton.hidden = !target;
    this.#blinkButton.setAttribute('aria-pressed', String(this.#blink));
    this.#blinkButton.textContent = this.#blink && this.#held ? 'Blink (held)' : 'Blink';
    this.#blinkButton.title = !this.#blink
      ? 'Show the two in turn, every half second (B: one step)'
      : this.#held
        ? 'Blink again (B: one step)'
        : 'Side by side again (B: one step)';
  }

  /** The picker lists what can be compared now, unless it is in use (its list may be open). */
  #refillPicker() {
    if (document.activeElement !== this.#pick) this.#fillPicker();
  }

  /** The picker's options: nothing, the other topics, the kept versions of this topic. */
  #fillPicker() {
    const pick = this.#pick;
    const value = this.value;
    const topics = document.createElement('optgroup');
    topics.label = 'Other topics';
    const names = [...this.#topicsFor()].filter((name) => name !== this.#focused).sort();
    if (this.#target?.topic && !names.includes(this.#target.topic)) names.push(this.#target.topic);
    for (const name of names) topics.append(option(compareValue({ topic: name }), name));
    const versions = document.createElement('optgroup');
    versions.label = 'Kept versions of this topic';
    const entries = this.#versionsFor();
    if (this.#target?.seq !== undefined && !entries.some((e) => e.seq === this.#target.seq)) {
      entries.push({ seq: this.#target.seq });
    }
    for (const entry of entries) {
      const time = entry.updated_at ? ` · ${clockTime(entry.updated_at)}` : '';
      versions.append(option(`@${entry.seq}`, `#${entry.seq}${time}`));
    }
    const none = option('', value ? 'No comparison' : 'Compare with…');
    pick.replaceChildren(none, ...[topics, versions].filter((group) => group.children.length));
    pick.value = value;
  }
}
