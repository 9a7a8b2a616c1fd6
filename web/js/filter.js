// What the user asked to see, as the server's subscribe filter and as a local predicate.
//
// The text filter is a case-insensitive substring of the topic name. The server matches
// shell-style patterns case-sensitively, so each letter becomes a class ([dD]) and the
// pattern characters (* ? [) are bracketed; the local predicate compiles the same atoms
// to a RegExp so both sides always agree on what matches.

const MAX_QUERY = 100;

/** The atoms of a query: each a list of the characters it may match. */
function atoms(query) {
  return Array.from(query.slice(0, MAX_QUERY), (ch) => {
    const lower = ch.toLowerCase();
    const upper = ch.toUpperCase();
    // Only single-character case pairs (not 'ß' -> 'SS'), so one atom is one character.
    const paired = lower !== upper && [...lower].length === 1 && [...upper].length === 1;
    return paired ? [lower, upper] : [ch];
  });
}

function globAtom(chars) {
  if (chars.length > 1) return `[${chars.join('')}]`;
  const ch = chars[0];
  return '*?['.includes(ch) ? `[${ch}]` : ch;
}

function regexAtom(chars) {
  return `[${chars.map((ch) => ch.replace(/[\\\]^-]/g, '\\$&')).join('')}]`;
}

/** The shell-style pattern of topics containing `query`, e.g. '*[dD][eE]*'. */
export function topicPattern(query) {
  return `*${atoms(query).map(globAtom).join('')}*`;
}

export class Filter {
  constructor(experiment = '', query = '') {
    this.experiment = experiment;
    this.query = query.slice(0, MAX_QUERY);
    this.regex = new RegExp(atoms(this.query).map(regexAtom).join(''), 'u');
  }

  /** True when a topic of `experiment` named `topic` is in the view. */
  matches(topic, experiment) {
    return (!this.experiment || experiment === this.experiment) && this.regex.test(topic);
  }

  /** The filter as the lists of a subscribe message or the socket URL; [] means all. */
  get topics() {
    return this.query ? [topicPattern(this.query)] : [];
  }

  get experiments() {
    return this.experiment ? [this.experiment] : [];
  }

  subscribeMessage() {
    return { type: 'subscribe', topics: this.topics, experiments: this.experiments };
  }

  equals(other) {
    return other.experiment === this.experiment && other.query === this.query;
  }
}

/**
 * Refill the experiment <select> with `experiments` (sorted), keeping the first "all" option
 * and the current choice even if it has no live topic now (a shared link must keep its view).
 */
export function fillExperiments(select, experiments, current) {
  const names = new Set(experiments);
  if (current) names.add(current);
  const sorted = [...names].sort((a, b) => a.localeCompare(b));
  const existing = [...select.options].slice(1).map((option) => option.value);
  if (sorted.length === existing.length && sorted.every((name, i) => name === existing[i])) {
    select.value = current;
    return;
  }
  while (select.options.length > 1) select.remove(1);
  for (const name of sorted) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  select.value = current;
}
