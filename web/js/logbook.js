// A logbook's entries on the page (docs/protocol.md, "Logbook"): parsed at the border, drawn as
// text (a comment is never HTML), kept in order, newest first, one element per entry id.

import { element } from './dom.js';
import { ago, isoTime, localTime } from './format.js';
import { logbookHref, serviceUrl, viewerHref } from './urls.js';

// Thumbnails are previews this wide (the service's preview widths, previews.js), sharp on a
// high-density screen at the width style.css gives them.
const THUMB_WIDTH = 640;
const ENTRY_ID = /^\d{1,20}-\d{1,20}$/; // a Redis stream id

let titles = 0; // numbers the entries' headings: an entry may be on the page twice

const text = (value) => (typeof value === 'string' ? value : '');
const time = (value) => (Number.isFinite(value) && value > 0 ? value : null);

/** `id` if it is an entry id (a Redis stream id, "1764079268125-0"), else ''. */
export function entryId(id) {
  return typeof id === 'string' && ENTRY_ID.test(id) ? id : '';
}

/**
 * An entry as the service sent it, checked: the fields the page uses with their types, or null
 * when it is not an entry (no valid id, experiment, topic or URLs).
 */
export function parseEntry(raw) {
  if (!raw || typeof raw !== 'object') return null;
  const id = entryId(raw.id);
  const { experiment, topic, url } = raw;
  const imageUrl = raw.image_url;
  const strings = [experiment, topic, url, imageUrl];
  if (!id || !strings.every((value) => typeof value === 'string' && value)) return null;
  const retracted = raw.retracted && typeof raw.retracted === 'object' ? raw.retracted : null;
  return {
    id,
    experiment,
    topic,
    url,
    imageUrl,
    seq: Number.isSafeInteger(raw.seq) ? raw.seq : null,
    description: text(raw.description),
    digest: text(raw.digest),
    author: text(raw.author),
    comment: text(raw.comment),
    publishedAt: time(raw.published_at),
    pinnedAt: time(raw.pinned_at),
    retracted: retracted && {
      by: text(retracted.by),
      reason: text(retracted.reason),
      at: time(retracted.at),
    },
  };
}

/** Stream ids in order, newest first ("ms-n": by time, then by n). */
export function newerFirst(a, b) {
  const [msA, nA] = a.split('-').map(BigInt);
  const [msB, nB] = b.split('-').map(BigInt);
  if (msA !== msB) return msA > msB ? -1 : 1;
  return nA === nB ? 0 : nA > nB ? -1 : 1;
}

/** "Update #12 of topic", or "topic" when the update is unknown. */
export function entryName(entry) {
  return entry.seq === null ? entry.topic : `Update #${entry.seq} of ${entry.topic}`;
}

function when(label, unixSeconds) {
  const node = element('span', 'entry-when', `${label} `);
  const stamp = element('time', '', unixSeconds === null ? 'unknown' : localTime(unixSeconds));
  if (unixSeconds !== null) {
    stamp.dateTime = isoTime(unixSeconds);
    stamp.title = ago(unixSeconds);
  }
  node.append(stamp);
  return node;
}

/** The element of one entry; `onRetract(entry)` is its Retract button's action. */
function entryElement(entry, onRetract) {
  const item = element('li', 'entry');
  item.dataset.id = entry.id;
  item.tabIndex = -1; // a link to the entry moves the keyboard focus here
  const titleId = `entry-title-${++titles}`;
  const article = element('article', 'entry-card');
  article.setAttribute('aria-labelledby', titleId);

  const image = serviceUrl(entry.imageUrl);
  const thumb = element('a', 'entry-thumb');
  thumb.href = image;
  const img = element('img', 'entry-img');
  img.src = `${image}?max_width=${THUMB_WIDTH}`;
  img.alt = `${entryName(entry)}, as pinned`;
  img.loading = 'lazy';
  img.decoding = 'async';
  thumb.append(img);

  const body = element('div', 'entry-body');
  const title = element('h3', 'entry-title');
  title.id = titleId;
  const topic = element('a', 'entry-topic', entry.topic);
  topic.href = viewerHref({ experiment: entry.experiment, topic: entry.topic });
  topic.title = 'The live topic (it may have expired since)';
  title.append(topic);
  if (entry.seq !== null) title.append(' ', element('span', 'entry-seq', `#${entry.seq}`));

  const comment = element('p', 'entry-comment', entry.comment || '(no comment)');
  comment.classList.toggle('entry-empty', !entry.comment);
  const meta = element('p', 'entry-meta');
  meta.append(
    element('span', 'entry-author', entry.author || 'unknown'),
    when('pinned', entry.pinnedAt),
    when('published', entry.publishedAt),
  );
  body.append(title, comment);
  if (entry.retracted) {
    const { by, reason, at } = entry.retracted;
    const note = element('p', 'entry-retraction');
    note.append(
      element('strong', '', 'Retracted'),
      ` by ${by || 'unknown'}`,
      when(' on', at),
      `: ${reason || '(no reason given)'}`,
    );
    body.append(note);
  }
  body.append(meta);
  if (entry.description) body.append(element('p', 'entry-description', entry.description));
  const digest = element('p', 'entry-digest', `SHA-256 ${entry.digest}`);
  digest.dataset.digest = entry.digest;
  body.append(digest);

  const actions = element('p', 'entry-actions');
  const link = element('a', 'entry-link', 'Link to this entry');
  link.href = logbookHref(entry.experiment, { entry: entry.id });
  link.dataset.entry = entry.id;
  const full = element('a', 'entry-full', 'Full image');
  full.href = image;
  actions.append(link, full);
  if (!entry.retracted) {
    const retract = element('button', 'button button-small entry-retract', 'Retract…');
    retract.type = 'button';
    retract.setAttribute('aria-label', `Retract ${entryName(entry)}`);
    retract.addEventListener('click', () => onRetract(entry));
    actions.append(retract);
  }
  body.append(actions);

  article.append(thumb, body);
  item.append(article);
  item.classList.toggle('entry-retracted', Boolean(entry.retracted));
  return item;
}

/** The entries of one list (<ol>), newest first; an entry sent again replaces its element. */
export class EntryList {
  #list;
  #onRetract;
  #items = new Map(); // id -> {entry, item}
  #current = ''; // the id the URL names

  /** `list` is the <ol>; `onRetract(entry)` is each entry's Retract action. */
  constructor(list, { onRetract }) {
    this.#list = list;
    this.#onRetract = onRetract;
  }

  get size() {
    return this.#items.size;
  }

  has(id) {
    return this.#items.has(id);
  }

  /** Whether entry `id` would be among those shown: not older than the oldest here. */
  holds(id) {
    const oldest = this.#list.lastElementChild?.dataset.id;
    return oldest !== undefined && newerFirst(id, oldest) <= 0;
  }

  /** The element of entry `id`, or undefined. */
  item(id) {
    return this.#items.get(id)?.item;
  }

  /**
   * Add `entry`, or redraw it when its id is here and it changed (a retraction); returns its
   * element. A redrawn entry keeps the keyboard focus if it had it.
   */
  upsert(entry, { fresh = false } = {}) {
    const old = this.#items.get(entry.id);
    if (old && JSON.stringify(old.entry) === JSON.stringify(entry)) return old.item;
    const item = entryElement(entry, this.#onRetract);
    this.#items.set(entry.id, { entry, item });
    if (old) {
      const focused = old.item.contains(document.activeElement);
      old.item.replaceWith(item);
      if (focused) item.focus({ preventScroll: true });
    } else {
      // After the last newer one: from the end, as older pages append and live entries are
      // few.
      let after = this.#list.lastElementChild;
      while (after && newerFirst(after.dataset.id, entry.id) > 0) {
        after = after.previousElementSibling;
      }
      if (after) after.after(item);
      else this.#list.prepend(item);
      item.classList.toggle('entry-fresh', fresh);
    }
    this.#show(entry.id, item);
    return item;
  }

  clear() {
    this.#items.clear();
    this.#list.replaceChildren();
  }

  /** Mark entry `id` as the one the URL names ('': none); returns its element if here. */
  mark(id) {
    this.#current = id;
    for (const [key, { item }] of this.#items) this.#show(key, item);
    return this.#items.get(id)?.item;
  }

  #show(id, item) {
    const current = id === this.#current;
    item.classList.toggle('entry-current', current);
    if (current) item.setAttribute('aria-current', 'true');
    else item.removeAttribute('aria-current');
  }
}
