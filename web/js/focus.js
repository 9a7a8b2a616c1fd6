// The focus view: one topic large, with its full description, metadata and a download link.

import { ago, bytes, downloadName, isoTime, localTime } from './format.js';
import { altText } from './grid.js';
import { imageUrl, topicUrl } from './urls.js';

export class FocusView {
  #root;
  #el;
  #token = 0;
  topic = null;
  #header = null;

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
    $('[data-focus=back]').addEventListener('click', () => onClose());
    window.addEventListener('resize', () => this.#fit());
  }

  get isOpen() {
    return this.topic !== null;
  }

  /** Show `topic`: from its card when the grid has it, else (a shared link) over HTTP. */
  open(topic, card) {
    this.topic = topic;
    this.#header = null;
    this.#token += 1;
    this.#root.hidden = false;
    this.#el.title.textContent = topic;
    this.#el.media.replaceChildren();
    this.#notice('');
    for (const key of ['description', 'experiment', 'seq', 'updated', 'type', 'size', 'digest']) {
      this.#el[key].textContent = '';
    }
    this.#el.download.href = imageUrl(topic);
    this.#el.download.download = downloadName(topic, 'image/png');
    if (card?.header) this.update(card);
    else this.#fetch(topic);
    this.#el.title.focus();
  }

  close() {
    this.topic = null;
    this.#header = null;
    this.#token += 1;
    this.#root.hidden = true;
    this.#el.media.replaceChildren();
  }

  /** The card of the open topic shows a new image: show it here too. */
  update(card) {
    if (card.topic !== this.topic || !card.header) return;
    this.#notice('');
    this.#render(card.header);
    if (card.img instanceof HTMLImageElement) this.#swap(card.img.cloneNode());
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
    el.download.download = downloadName(header.topic, header.content_type);
    this.tick();
  }

  async #swap(img) {
    const token = ++this.#token;
    img.className = 'focus-img';
    img.alt = this.#header ? altText(this.#header) : `Figure ${this.topic}`;
    try {
      await img.decode();
    } catch {
      return; // a newer image revoked this one's URL first; that newer one follows
    }
    if (token !== this.#token) return;
    this.#el.media.replaceChildren(img);
    this.#fit();
  }

  async #fetch(topic) {
    const token = this.#token;
    this.#notice('Loading…');
    let header;
    try {
      const response = await fetch(topicUrl(topic), { headers: { Accept: 'application/json' } });
      if (token !== this.#token) return;
      if (response.status === 404) {
        this.#notice('No live topic has this name: it may have expired, or the link is mistyped.');
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      header = await response.json();
    } catch (error) {
      if (token === this.#token) this.#notice(`Could not load this topic (${error.message}).`);
      return;
    }
    if (token !== this.#token) return;
    this.#notice('');
    this.#render(header);
    const img = new Image();
    img.src = imageUrl(topic);
    this.#swap(img);
  }

  /** Draw the image with crisp pixels when shown at twice its size or more (HiDPI screens). */
  #fit() {
    const img = this.#el.media.querySelector('img');
    if (!img?.naturalWidth) return;
    const scale = (img.clientWidth * window.devicePixelRatio) / img.naturalWidth;
    img.classList.toggle('pixelated', scale >= 2);
  }

  #notice(text) {
    this.#el.notice.textContent = text;
    this.#el.notice.hidden = !text;
  }
}
