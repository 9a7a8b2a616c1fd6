// Human-readable times and sizes.

/** "just now", "3 s ago", "5 min ago", "2 h ago", "3 d ago" for a Unix time in seconds. */
export function ago(unixSeconds, nowMs = Date.now()) {
  // Clamped at zero: the server's clock may run slightly ahead of this machine's.
  const seconds = Math.max(0, Math.floor(nowMs / 1000 - unixSeconds));
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** Local date and time of a Unix time in seconds, e.g. "2025-11-25 14:01:08". */
export function localTime(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** Local time of day of a Unix time in seconds, e.g. "14:01:08". */
export function clockTime(unixSeconds) {
  return localTime(unixSeconds).slice(11);
}

/** A duration in ms for "usual every …": "0.2 s", "1 s", "12 s", "5 min", "1.5 h". */
export function interval(ms) {
  const short = (n) => String(Number(n.toFixed(1)));
  const seconds = ms / 1000;
  if (seconds < 10) return `${short(Math.max(seconds, 0.1))} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${short(seconds / 60)} min`;
  return `${short(seconds / 3600)} h`;
}

/** "14:01:08" for a time today, else "2025-11-25 14:01:08" (local time). */
export function shortTime(unixSeconds, nowMs = Date.now()) {
  const full = localTime(unixSeconds);
  return full.slice(0, 10) === localTime(nowMs / 1000).slice(0, 10) ? full.slice(11) : full;
}

export function isoTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toISOString();
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The file name a downloaded image is saved under: the topic's last segment, the update's
 * seq when known (versions of one topic must not overwrite each other), the extension.
 */
export function downloadName(topic, contentType, seq) {
  const base = topic.split('/').pop() || 'image';
  const version = seq ? `-${seq}` : '';
  return `${base}${version}${contentType === 'image/jpeg' ? '.jpg' : '.png'}`;
}
