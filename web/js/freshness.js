// How fresh each topic is: every topic learns its usual update interval in the page, and a card
// is called late or stale by how long it has been silent compared with that interval.
//
// The usual interval is the median of the last SAMPLES intervals between updates, each taken
// from the publish times and seqs (server clock only): (updated_at - previous updated_at) /
// (seq - previous seq), so updates this viewer skipped (latest-wins on a slow link, an outage
// resumed) count at their true rate. The median, not a mean, so one long pause or one burst
// does not move it. Silence is measured on this page's own clock, from when the newest update
// arrived here, so a clock difference between the service and this machine cannot make a
// card late. A topic seen for fewer than MIN_SAMPLES intervals has no usual interval and
// keeps the fixed rule: stale when its image is older than FIXED_STALE_MS.

export const LIVE = 'live';
export const LATE = 'late';
export const STALE = 'stale';
export const OFFLINE = 'offline';

/** Every threshold in one place. Times in milliseconds. */
export const RULES = Object.freeze({
  SAMPLES: 8, // intervals remembered per topic; the usual interval is their median
  MIN_SAMPLES: 3, // fewer and the topic has no usual interval yet (the fixed rule applies)
  LATE_FACTOR: 3, // late: silent for more than 3 usual intervals ...
  LATE_FLOOR_MS: 1_500, // ... and for more than 1.5 s (a 10 Hz plot may hiccup)
  STALE_FACTOR: 10, // stale: silent for more than 10 usual intervals ...
  STALE_FLOOR_MS: 5_000, // ... and for more than 5 s
  FIXED_STALE_MS: 300_000, // without a usual interval: stale when the image is 5 min old
});

/** When a topic with this usual interval turns late and stale, in ms of silence. */
export function thresholds(usualMs) {
  return {
    lateMs: Math.max(RULES.LATE_FACTOR * usualMs, RULES.LATE_FLOOR_MS),
    staleMs: Math.max(RULES.STALE_FACTOR * usualMs, RULES.STALE_FLOOR_MS),
  };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The rhythm of one topic: the last intervals seen and when its newest update arrived. */
class Cadence {
  seq = -1;
  updatedAt = 0; // publish time of the newest update, Unix seconds
  arrivedAt = 0; // this page's Date.now() when it arrived
  intervals = []; // ms, newest last

  note(header, nowMs) {
    const { seq, updated_at: at } = header;
    if (!Number.isInteger(seq) || !Number.isFinite(at)) return;
    if (seq <= this.seq) {
      if (seq < this.seq) this.#restart(header, nowMs); // the topic was published anew
      return; // the same update again (a resubscribe): nothing new arrived
    }
    if (this.seq >= 0 && at > this.updatedAt) {
      const interval = ((at - this.updatedAt) * 1000) / (seq - this.seq);
      // One value per update in between, at most a window's worth.
      const count = Math.min(seq - this.seq, RULES.SAMPLES);
      for (let i = 0; i < count; i += 1) this.intervals.push(interval);
      this.intervals.splice(0, Math.max(0, this.intervals.length - RULES.SAMPLES));
    }
    this.seq = seq;
    this.updatedAt = at;
    this.arrivedAt = nowMs;
  }

  #restart(header, nowMs) {
    this.seq = -1;
    this.intervals = [];
    this.note(header, nowMs);
  }

  /** The usual interval in ms, or null while too few updates were seen. */
  get usualMs() {
    return this.intervals.length >= RULES.MIN_SAMPLES ? median(this.intervals) : null;
  }
}

/** The cadences of every topic the page hears of, shown or not (e.g. while paused). */
export class Freshness {
  #cadences = new Map();

  /** Record an update of `header.topic` arriving now. Repeats of a seq are ignored. */
  note(header, nowMs = Date.now()) {
    let cadence = this.#cadences.get(header.topic);
    if (!cadence) {
      cadence = new Cadence();
      this.#cadences.set(header.topic, cadence);
    }
    cadence.note(header, nowMs);
  }

  forget(topic) {
    this.#cadences.delete(topic);
  }

  /**
   * {state, usualMs} of `topic`, whose shown image was published at `updatedAt` (Unix s):
   * LIVE, LATE or STALE by the learned rule, or by the fixed rule (usualMs null).
   */
  judge(topic, updatedAt, nowMs) {
    const cadence = this.#cadences.get(topic);
    const usualMs = cadence?.usualMs ?? null;
    if (usualMs === null) {
      const stale = nowMs - updatedAt * 1000 > RULES.FIXED_STALE_MS;
      return { state: stale ? STALE : LIVE, usualMs };
    }
    const silentMs = nowMs - cadence.arrivedAt;
    const { lateMs, staleMs } = thresholds(usualMs);
    const state = silentMs > staleMs ? STALE : silentMs > lateMs ? LATE : LIVE;
    return { state, usualMs };
  }
}
