// Every URL the viewer builds, all relative to the page so a reverse-proxy prefix (/elog/) works.

// `seq`: the version the focus view shows when it is not the newest (absent: live).
const VIEW_KEYS = ['experiment', 'q', 'topic', 'seq'];

/** The view named by the page URL: {experiment, q, topic, seq}, each '' when absent. */
export function readView(href = location.href) {
  const params = new URL(href).searchParams;
  return Object.fromEntries(VIEW_KEYS.map((key) => [key, params.get(key) ?? '']));
}

/** The page URL (relative, query only) that reopens `view`. */
export function viewHref(view) {
  const parts = [];
  for (const key of VIEW_KEYS) {
    // Slashes stay readable (?topic=cxif7214/detector/sum): they are legal in a query.
    if (view[key]) parts.push(`${key}=${encodeURIComponent(view[key]).replaceAll('%2F', '/')}`);
  }
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

/** The WebSocket URL beside the page (ws: or wss:), carrying the initial filter. */
export function socketUrl(filter) {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const experiment of filter.experiments) url.searchParams.append('experiment', experiment);
  for (const topic of filter.topics) url.searchParams.append('topic', topic);
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

/** The login page: relative to the document, so it stays under a reverse-proxy prefix. */
export function loginUrl() {
  return new URL('login', document.baseURI).href;
}
