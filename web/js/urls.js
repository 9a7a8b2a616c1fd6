// Every URL the viewer builds, all relative to the page so a reverse-proxy prefix (/elog/) works.

// `seq`: the version the focus view shows when it is not the newest (absent: live).
const VIEW_KEYS = ['experiment', 'q', 'topic', 'compare', 'blink', 'seq'];
// The logbook page (logbook.html): the logbook of `experiment` (none: the index of logbooks),
// searched for the words `q`, showing the entry `entry`.
const LOGBOOK_KEYS = ['experiment', 'q', 'entry'];

/**
 * The view named by the page URL: {experiment, q, topic, compare, blink, seq}, each '' when
 * absent, and `pins`: the pinned topics (`pin`, repeated), or null when the URL names none.
 */
export function readView(href = location.href) {
  const params = new URL(href).searchParams;
  const view = Object.fromEntries(VIEW_KEYS.map((key) => [key, params.get(key) ?? '']));
  view.pins = params.has('pin') ? params.getAll('pin').filter(Boolean) : null;
  return view;
}

function encodeParam(value) {
  // Slashes and @ stay readable (?topic=cxif7214/detector/sum&compare=@12): legal in a query.
  return encodeURIComponent(value).replaceAll('%2F', '/').replaceAll('%40', '@');
}

/** `key=value` of each of the `keys` of `view` that is not empty, encoded. */
function params(view, keys) {
  return keys.filter((key) => view[key]).map((key) => `${key}=${encodeParam(view[key])}`);
}

/** The viewer's page showing `view`, from another page beside it (the logbook's). */
export function viewerHref(view) {
  const href = viewHref(view);
  return href.startsWith('?') ? `./${href}` : href;
}

/** The page URL (relative, query only) that reopens `view`. */
export function viewHref(view) {
  const parts = params(view, VIEW_KEYS);
  for (const pin of view.pins ?? []) parts.push(`pin=${encodeParam(pin)}`);
  // './' rather than '' so an emptied query really clears it when used as a link target.
  return parts.length ? `?${parts.join('&')}` : './';
}

/**
 * Put `view` in the address bar. `push` adds a history entry marked `fromGrid`, so leaving
 * the focus view can go Back to the grid instead of stacking entries.
 */
export function writeView(view, { push = false } = {}) {
  const href = viewHref(view);
  if (push) history.pushState({ fromGrid: true }, '', href);
  else if (new URL(href, location.href).href !== location.href) {
    history.replaceState(history.state, '', href);
  }
}

/**
 * What the focus view compares its topic with, from `compare=`: `{seq}` for `@123` (a kept
 * version of the same topic), else `{topic}`; null for ''. A topic whose name starts with '@'
 * is written with one more '@' in front (`@@name`), so no name is mistaken for a version.
 */
export function parseCompare(value) {
  if (!value) return null;
  if (/^@\d{1,15}$/.test(value)) return { seq: Number(value.slice(1)) };
  return { topic: value.startsWith('@@') ? value.slice(1) : value };
}

/** The `compare=` value of `target` ({topic} or {seq}); '' for none. */
export function compareValue(target) {
  if (!target) return '';
  if (target.seq !== undefined) return `@${target.seq}`;
  return target.topic.startsWith('@') ? `@${target.topic}` : target.topic;
}

/** The WebSocket URL beside the page (ws: or wss:), carrying the initial filter. */
export function socketUrl(filter) {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const experiment of filter.experiments) url.searchParams.append('experiment', experiment);
  return url.href;
}

/** The path of a topic under api/topics/: each segment encoded, the slashes kept. */
export function topicPath(topic) {
  return topic.split('/').map(encodeURIComponent).join('/');
}

export function topicsUrl() {
  return new URL('api/topics', location.href).href;
}

export function topicUrl(topic) {
  return new URL(`api/topics/${topicPath(topic)}`, location.href).href;
}

export function imageUrl(topic) {
  return new URL(`api/topics/${topicPath(topic)}/image`, location.href).href;
}

/** The kept images of a topic, newest first (metadata only). */
export function historyUrl(topic) {
  return new URL(`api/topics/${topicPath(topic)}/history`, location.href).href;
}

/** One kept image of a topic, by sequence number: the shown version, whatever came since. */
export function historyImageUrl(topic, seq) {
  return new URL(`api/topics/${topicPath(topic)}/history/${seq}/image`, location.href).href;
}

/** A preview of one kept image, at most `width` pixels wide (never larger than the image). */
export function previewUrl(topic, seq, width) {
  return `${historyImageUrl(topic, seq)}?max_width=${width}`;
}

/** What the logbook page's URL names: {experiment, q, entry}, each '' when absent. */
export function readLogbookView(href = location.href) {
  const search = new URL(href).searchParams;
  return Object.fromEntries(LOGBOOK_KEYS.map((key) => [key, search.get(key) ?? '']));
}

/** The logbook page of `experiment` ('' for the index of logbooks), at `entry` if given. */
export function logbookHref(experiment = '', { q = '', entry = '' } = {}) {
  const parts = params({ experiment, q, entry }, LOGBOOK_KEYS);
  return parts.length ? `logbook.html?${parts.join('&')}` : 'logbook.html';
}

/** The path of an experiment's logbook under the service root: one segment, '/' encoded. */
function logbookPath(experiment) {
  return `api/logbook/${encodeURIComponent(experiment)}`;
}

/** The experiments that have a logbook. */
export function logbooksUrl() {
  return new URL('api/logbook', location.href).href;
}

/** The newest entries of `experiment`'s logbook matching the words `q` (all when blank). */
export function logbookUrl(experiment, q = '') {
  const url = new URL(logbookPath(experiment), location.href);
  if (q.trim()) url.searchParams.set('q', q.trim());
  return url.href;
}

export function logbookEntryUrl(experiment, id) {
  return new URL(`${logbookPath(experiment)}/entries/${encodeURIComponent(id)}`, location.href)
    .href;
}

/** The whole logbook as one HTML file ('html') or a ZIP of images and JSON ('zip'). */
export function logbookExportUrl(experiment, format) {
  return new URL(`${logbookPath(experiment)}/export.${format}`, location.href).href;
}

/** A URL the service gave (entry.url, entry.image_url, next: relative to its root). */
export function serviceUrl(relative) {
  return new URL(relative, location.href).href;
}

/** The login page: relative to the document, so it stays under a reverse-proxy prefix. */
export function loginUrl() {
  return new URL('login', document.baseURI).href;
}
