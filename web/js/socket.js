// The WebSocket to the service: reconnects with backoff, resumes without resending what the
// viewer holds, pairs image headers with their bytes, and notices a silently dead connection.
//
// Frames (docs/protocol.md): text JSON {"type": "sync" | "image" | "expired" | "logbook" |
// "heartbeat" | "error", ...}; an "image" header is immediately followed by one binary frame of `size` bytes,
// unless the viewer asked for announcements (`images=announce`): then it says "bytes": false.

export const LIVE = 'live';
export const CONNECTING = 'connecting';
export const RECONNECTING = 'reconnecting';
export const OFFLINE = 'offline';

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN_ORIGIN = 4403;

// Reconnecting, by construction:
// - After a failed attempt the next one waits a delay doubling from MIN_DELAY_MS up to
//   MAX_DELAY_MS, with "equal jitter" (between half the step and the step), so a service that
//   answers again is found within MAX_DELAY_MS (1.5 s) plus one handshake: recovery <= 2 s.
// - A dead service that refuses connections (stopped, or a proxy answering 502) therefore gets
//   at most one attempt per MAX_DELAY_MS / 2 (0.75 s) from each page, 1.125 s apart on average.
// - An attempt that is not answered at all (a network black hole) is abandoned after
//   CONNECT_TIMEOUT_MS and the next one starts at once: the attempt itself was the wait, so
//   such a service gets one attempt per 3 s, and an answer that comes meanwhile is found when
//   the kernel resends its SYN (1 s) or by the next attempt, within 2 s plus one handshake.
// - The tab becoming visible, the network coming back, or "Retry now" connect at once.
const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 1_500;
const CONNECT_TIMEOUT_MS = 3_000;
// The server sends a heartbeat after 15 s without other traffic; this long without any frame
// and the connection is taken for dead (a suspended laptop, a NAT that forgot it, ...).
const SILENCE_LIMIT_MS = 40_000;
// Not connected for this long and the service is called offline (still retried); a blip
// shorter than this (a replaced connection, a quick restart) shows only as "Reconnecting…".
const OFFLINE_AFTER_MS = 2_000;

/**
 * A self-healing WebSocket. Callbacks:
 *   onStatus(state, {retryInMs, reason, since})
 *                                         state is LIVE, CONNECTING, RECONNECTING or OFFLINE;
 *                                         retryInMs the wait before the next attempt (0 while
 *                                         one is under way); since the Date.now() at which the
 *                                         page lost (or never had) its connection
 *   onSync(topics, current)               current is false while an answer to a later
 *                                         subscribe is still to come (the list is outdated)
 *   onImage(header, blob)                 blob typed with header.content_type; null when
 *                                         announced without its bytes
 *   onExpired(topic)
 *   onLogbook(entry)                      optional: a logbook entry was pinned or retracted
 *   onUnauthorized()                      the service wants a login; nothing is retried
 * `url()` is called for every connection so a reconnect carries the current filter.
 * `resume()` gives the subscribe message a reconnect opens with: the filter plus `have`, the
 * seq of every topic the viewer holds, so the server sends only what changed meanwhile.
 * `images: 'announce'` asks for image headers without their bytes (fetched over HTTP).
 */
export class LiveSocket {
  #url;
  #resume;
  #on;
  #ws = null;
  #attempts = 0;
  #retryTimer = 0;
  #connectTimer = 0;
  #silenceTimer = 0;
  #header = null;
  #syncsDue = 0;
  #stopped = true;
  #connectedBefore = false;
  #lostAt = 0; // Date.now() when the connection was lost; 0 while connected
  #heardAt = 0;
  #images;

  constructor(url, resume, callbacks, { images = 'bytes' } = {}) {
    this.#images = images;
    this.#url = url;
    this.#resume = resume;
    this.#on = callbacks;
    window.addEventListener('online', () => this.#wake());
    window.addEventListener('offline', () => {
      if (!this.#ws) this.#status(OFFLINE);
    });
    // Timers of a hidden tab are throttled (to once a minute after a while): catch up at once.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.#wake();
    });
  }

  start() {
    this.#stopped = false;
    this.#lostAt = Date.now();
    this.#connect();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#ws?.close(1000);
  }

  get live() {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** Retry at once instead of waiting out the backoff (e.g. the user clicked "Retry now"). */
  reconnectNow() {
    if (this.#ws) return; // an attempt is under way (or connected)
    this.#stopped = false;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  /**
   * The tab became visible or the network came back: connect at once unless connected or
   * trying, and replace a connection that went silent while its timers were throttled.
   * A service that refused this page (stopped) is left alone; only a person retries it.
   */
  #wake() {
    if (this.#stopped) return;
    const ws = this.#ws;
    if (ws?.readyState === WebSocket.OPEN && Date.now() - this.#heardAt > SILENCE_LIMIT_MS) {
      this.#abandon(ws);
    } else if (!ws) {
      this.reconnectNow();
    }
  }

  /** Send a subscribe message; false if not connected (the next connection's URL carries it). */
  subscribe(message) {
    if (!this.live) return false;
    this.#ws.send(JSON.stringify(message));
    this.#syncsDue += 1;
    return true;
  }

  #connect() {
    this.#status(this.#attempts ? this.#retrying() : CONNECTING);
    const resuming = this.#connectedBefore;
    const url = new URL(this.#url());
    if (resuming) url.searchParams.set('resume', '1');
    if (this.#images !== 'bytes') url.searchParams.set('images', this.#images);
    const ws = new WebSocket(url.href);
    ws.binaryType = 'blob';
    this.#ws = ws;
    this.#header = null;
    this.#syncsDue = 1; // the server syncs on connect, or resuming, after the first subscribe
    this.#connectTimer = setTimeout(() => this.#abandon(ws), CONNECT_TIMEOUT_MS);
    ws.addEventListener('open', () => {
      if (ws !== this.#ws) return;
      clearTimeout(this.#connectTimer);
      this.#connectedBefore = true;
      this.#lostAt = 0;
      // A resumed connection stays silent until told what the viewer holds.
      if (resuming) ws.send(JSON.stringify(this.#resume()));
      this.#heard(ws);
      this.#status(LIVE);
    });
    ws.addEventListener('message', (event) => {
      if (ws !== this.#ws) return;
      this.#heard(ws);
      this.#receive(event.data);
    });
    ws.addEventListener('close', (event) => {
      if (ws !== this.#ws) return;
      this.#forget();
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.#stopped = true;
        this.#on.onUnauthorized();
      } else if (event.code === CLOSE_FORBIDDEN_ORIGIN) {
        // Retrying cannot help: the service refuses this page's origin (a proxy setting).
        this.#stopped = true;
        this.#status(OFFLINE, { reason: 'origin not allowed' });
      } else if (!this.#stopped) {
        this.#scheduleRetry();
      }
    });
  }

  /** Restart the silence countdown: any frame proves the connection is alive. */
  #heard(ws) {
    this.#heardAt = Date.now();
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => this.#abandon(ws), SILENCE_LIMIT_MS);
  }

  /**
   * Give up on `ws` without waiting for its close handshake, which a dead connection never
   * completes, and connect anew at once: the attempt (or the silence) was the wait.
   */
  #abandon(ws) {
    if (ws !== this.#ws) return;
    this.#forget();
    ws.close();
    if (!this.#stopped) this.#scheduleRetry({ now: true });
  }

  #forget() {
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#silenceTimer);
    this.#ws = null;
    this.#header = null;
    this.#lostAt ||= Date.now();
  }

  #scheduleRetry({ now = false } = {}) {
    this.#attempts += 1;
    const ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** (this.#attempts - 1));
    // "Equal jitter": never less than half the step, so a restarted service is not stormed
    // by every control-room screen at the same instant.
    const delay = now ? 0 : ceiling / 2 + Math.random() * (ceiling / 2);
    this.#status(this.#retrying(), { retryInMs: delay });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #receive(data) {
    if (typeof data !== 'string') {
      const header = this.#header;
      this.#header = null;
      if (!header) {
        console.warn('elog-stream: binary frame without an image header, ignored');
        return;
      }
      if (data.size !== header.size) {
        const { topic, size } = header;
        console.warn(`elog-stream: ${topic}: got ${data.size} bytes, header said ${size}`);
      }
      this.#on.onImage(header, data.slice(0, data.size, header.content_type || 'image/png'));
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn('elog-stream: text frame is not JSON, ignored');
      return;
    }
    if (this.#header) {
      console.warn(`elog-stream: image header for ${this.#header.topic} had no bytes, dropped`);
      this.#header = null;
    }
    switch (message?.type) {
      case 'image':
        if (typeof message.topic !== 'string') break;
        if (message.bytes === false) this.#on.onImage(message, null);
        else this.#header = message;
        break;
      case 'sync':
        this.#syncsDue = Math.max(0, this.#syncsDue - 1);
        // A server that answers at all is healthy: the next outage starts from the short delay.
        this.#attempts = 0;
        this.#on.onSync(Array.isArray(message.topics) ? message.topics : [], this.#syncsDue === 0);
        break;
      case 'expired':
        if (typeof message.topic === 'string') this.#on.onExpired(message.topic);
        break;
      case 'logbook':
        if (typeof message.entry?.id === 'string') this.#on.onLogbook?.(message.entry);
        break;
      case 'error':
        // Answers a subscribe we sent, which therefore gets no sync.
        this.#syncsDue = Math.max(0, this.#syncsDue - 1);
        console.warn('elog-stream: server says:', message.message);
        break;
      default:
        // "heartbeat" only resets the silence countdown; unknown types are ignored too (the
        // protocol may add some).
    }
  }

  /** The state while not connected: OFFLINE once that has lasted, else RECONNECTING. */
  #retrying() {
    const long = Date.now() - this.#lostAt >= OFFLINE_AFTER_MS;
    return navigator.onLine === false || long ? OFFLINE : RECONNECTING;
  }

  #status(state, detail = {}) {
    this.#on.onStatus(state, { since: this.#lostAt, ...detail });
  }
}
