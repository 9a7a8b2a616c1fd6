// What the user asked to see: an experiment, asked of the server, and search words, matched here.
//
// The experiment is the server's subscribe filter, so a viewer of one experiment downloads
// nothing else. The search words are matched in the page against each topic's name, experiment
// and description (text the server's topic patterns cannot reach): case-insensitive, every word
// somewhere, in any order, so "detector sum" finds "cxif7214/detector/sum".

const MAX_QUERY = 100;

/** The search words of `query`, lower-cased; none for a blank query. */
export function searchWords(query) {
  return query.toLowerCase().split(/\s+/u).filter(Boolean);
}

export class Filter {
  constructor(experiment = '', query = '') {
    this.experiment = experiment;
    this.query = query.slice(0, MAX_QUERY);
    this.words = searchWords(this.query);
  }

  /** True when the server is asked for the topics of `experiment` (whatever the words). */
  requests(experiment) {
    return !this.experiment || experiment === this.experiment;
  }

  /** True when a topic named `topic`, of `experiment`, described by `description` is shown. */
  matches(topic, experiment, description = '') {
    if (!this.requests(experiment)) return false;
    if (this.words.length === 0) return true;
    const text = `${topic}\n${experiment}\n${description ?? ''}`.toLowerCase();
    return this.words.every((word) => text.includes(word));
  }

  /** The experiments of a subscribe message or the socket URL; [] means all. */
  get experiments() {
    return this.experiment ? [this.experiment] : [];
  }

  subscribeMessage() {
    return { type: 'subscribe', topics: [], experiments: this.experiments };
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
