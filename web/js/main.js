// Wires the viewer together: URL <-> filter, socket -> grid, focus view, pause, indicator.

import { getJson, goToLogin } from './api.js';
import { Arrangement } from './arrange.js';
import { Filter, fillExperiments } from './filter.js';
import { FocusView } from './focus.js';
import { Grid } from './grid.js';
import { OutageBanner } from './outage.js';
import { keyboardShortcuts } from './keys.js';
import { applyLayout, initialPins, saveLayout, savePins, storedLayout } from './layout.js';
import { PinDialog } from './pin.js';
import { session } from './session.js';
import { themeButton } from './theme.js';
import { LIVE, LiveSocket, OFFLINE } from './socket.js';
import { StatusPill } from './status.js';
import { logbookHref, readView, socketUrl, topicsUrl, viewHref, writeView } from './urls.js';

const EXPERIMENTS_EVERY_MS = 60_000;
const TYPING_DELAY_MS = 250;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: $('status-text'),
  experiment: $('experiment'),
  query: $('query'),
  pause: $('pause'),
  count: $('count'),
  bar: $('bar'),
  find: $('find'),
  main: $('grid-view'),
  list: $('grid'),
  empty: $('empty'),
  focus: $('focus'),
  newTopics: $('new-topics'),
  toolsToggle: $('tools-toggle'),
  cardSize: $('card-size'),
  compact: $('compact'),
  group: $('group'),
  logbook: $('logbook-link'),
};

themeButton($('theme'));
// Log out is offered to a browser login session (not to token or open access); pinning to the
// logbook to those the service lets pin.
session().then((answer) => {
  $('logout').hidden = answer?.credential !== 'session';
  focus.allowPin(Boolean(answer?.grants?.includes('pin')));
});

const initial = readView();
let filter = new Filter(initial.experiment, initial.q);
let connection = 'connecting';
let paused = false;
const held = new Map(); // topic -> {header, blob}: the newest image received while paused
let apiExperiments = [];
let apiTotal = 0; // live topics of every experiment, from the last GET api/topics
const seenExperiments = new Set(); // in images received, so a new one is listed at once

const arrangement = new Arrangement(ui.list, {
  cards: () => grid.cards(),
  onPin: togglePin,
  onSortIn: sortIn,
});
const grid = new Grid(ui.list, {
  onOpen: (topic) => openFocus(topic, { push: true }),
  onSwap: (card) => {
    focus.update(card);
    render();
  },
  hrefFor: (topic) => viewHref(viewOf(topic)),
  arrangement,
});
// Images are announced without their bytes: the grid fetches previews sized to its cards and
// the focus view the full image, so one large image never holds back the others.
const pinDialog = new PinDialog($('pin-dialog'));
const focus = new FocusView(ui.focus, {
  onClose: leaveFocus,
  cardFor: (topic) => grid.get(topic),
  topicsFor: () => grid.topics(),
  onViewChange: () => writeView(viewOf()),
  onPin: (shown) => pinDialog.open(shown),
});
const socket = new LiveSocket(() => socketUrl(filter), resumeMessage, {
  onStatus: showStatus,
  onSync: sync,
  onImage: receive,
  onExpired: drop,
  onUnauthorized: goToLogin,
}, { images: 'announce' });

function viewOf(topic = focus.topic) {
  const view = {
    experiment: filter.experiment,
    q: filter.query,
    topic: topic ?? '',
    pins: arrangement.pins,
  };
  if (!topic || topic !== focus.topic) return view;
  // What the focus view compares, and the version it shows when not the newest, belong to its
  // own topic's URL only.
  return { ...view, ...focus.comparison, seq: focus.pinnedSeq ?? '' };
}

/** The version a URL's view asks for (&seq=N), else null. */
function seqOf(view) {
  const seq = Number(view.seq);
  return view.seq && Number.isSafeInteger(seq) && seq > 0 ? seq : null;
}

// --- data from the socket -------------------------------------------------------------------

function receive(header, blob) {
  grid.heard(header); // the topic is alive even when paused: its card is not late
  if (paused) {
    held.set(header.topic, { header, blob });
    render();
    return;
  }
  show(header, blob);
  if (!seenExperiments.has(header.experiment)) {
    seenExperiments.add(header.experiment);
    refillExperiments();
  }
  render();
}

function show(header, blob) {
  grid.upsert(header, blob);
  if (!blob) focus.announced(header); // the card's preview will not do for the focus view
}

/** What a reconnect asks for: the filter, and the newest seq held of each topic. */
function resumeMessage() {
  const have = {};
  for (const topic of grid.topics()) {
    const seq = grid.get(topic).header?.seq;
    if (Number.isInteger(seq)) have[topic] = seq;
  }
  for (const [topic, { header }] of held) have[topic] = header.seq; // newer than the card's
  return { ...filter.subscribeMessage(), have };
}

/** Drop what the server no longer lists. Cards outside the filter are kept, hidden: they are
 *  not in the list only because we did not ask for them, and the next sync judges them. */
function sync(topics, current) {
  if (current) {
    const live = new Set(topics);
    for (const topic of grid.topics()) {
      const experiment = grid.get(topic).experimentName;
      if (!live.has(topic) && filter.requests(experiment)) drop(topic);
    }
    for (const [topic, { header }] of held) {
      if (!live.has(topic) && filter.requests(header.experiment)) held.delete(topic);
    }
    // What the user asked for is sorted into place; topics that appear on their own (also
    // those published during an outage) wait at the end.
    arrangement.expect(askedFor ? topics.filter((topic) => !grid.get(topic)) : []);
    askedFor = false;
  }
  loadExperiments();
  render();
}

function drop(topic) {
  held.delete(topic);
  grid.remove(topic);
  focus.expired(topic);
  render();
}

// --- the experiment selector: needs every experiment, not just the filtered ones --------------

let loading = null;
let loadAgain = false;

async function loadExperiments() {
  if (loading) {
    loadAgain = true;
    return;
  }
  loading = (async () => {
    try {
      const topics = await getJson(topicsUrl());
      apiExperiments = [...new Set(topics.map((topic) => topic.experiment))];
      apiTotal = topics.length;
      refillExperiments();
      render();
    } catch (error) {
      console.warn('elog-stream: could not list topics:', error.message);
    }
  })();
  await loading;
  loading = null;
  if (loadAgain) {
    loadAgain = false;
    loadExperiments();
  }
}

function refillExperiments() {
  fillExperiments(ui.experiment, [...apiExperiments, ...grid.experiments()], filter.experiment);
}

// --- filter ---------------------------------------------------------------------------------

function setFilter(next) {
  if (next.equals(filter)) return;
  const resubscribe = next.experiment !== filter.experiment; // words are matched here
  filter = next;
  grid.setFilter(filter);
  writeView(viewOf());
  if (resubscribe) {
    askedFor = true;
    // Not connected: the next connection's URL carries the filter.
    socket.subscribe(filter.subscribeMessage());
  }
  render();
}

let typing = 0;
ui.query.addEventListener('input', () => {
  clearTimeout(typing);
  const apply = () => setFilter(new Filter(filter.experiment, ui.query.value));
  typing = setTimeout(apply, TYPING_DELAY_MS);
});
ui.find.addEventListener('submit', (event) => {
  event.preventDefault(); // Enter applies the filter at once instead of reloading the page
  clearTimeout(typing);
  setFilter(new Filter(ui.experiment.value, ui.query.value));
});
ui.experiment.addEventListener('change', () => {
  clearTimeout(typing);
  setFilter(new Filter(ui.experiment.value, ui.query.value));
});

// --- focus view -----------------------------------------------------------------------------

function openFocus(topic, { push, comparison = {}, seq = null }) {
  focus.open(topic, grid.get(topic), { comparison, seq });
  ui.main.inert = true;
  ui.bar.inert = true;
  document.body.classList.add('focus-open');
  writeView(viewOf(), { push });
  render();
}

function closeFocus() {
  const topic = focus.topic;
  focus.close();
  ui.main.inert = false;
  ui.bar.inert = false;
  document.body.classList.remove('focus-open');
  grid.get(topic)?.link.focus({ preventScroll: false });
  render();
}

/** Back to the grid: through history when we came from it, so Back and Esc agree. */
function leaveFocus() {
  if (history.state?.fromGrid) {
    history.back();
  } else {
    closeFocus();
    writeView(viewOf(''));
  }
}

window.addEventListener('popstate', () => {
  const view = readView();
  if (view.pins) setPins(view.pins);
  const next = new Filter(view.experiment, view.q);
  if (!next.equals(filter)) {
    ui.experiment.value = next.experiment;
    ui.query.value = next.query;
    setFilter(next);
  }
  if (view.topic && view.topic !== focus.topic) {
    openFocus(view.topic, { push: false, comparison: view, seq: seqOf(view) });
  } else if (view.topic) {
    focus.setComparison(view);
  } else if (focus.isOpen) {
    closeFocus();
  }
});

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && focus.isOpen && !event.defaultPrevented) {
    event.preventDefault();
    leaveFocus();
  }
});

// --- layout: card size, compact cards, grouping, pins, new topics, phone header -------------

let layout = storedLayout();
let askedFor = true; // the next sync answers what the user asked for (the first one does)

function setLayout(change) {
  layout = { ...layout, ...change };
  saveLayout(layout);
  showLayout();
}

function showLayout() {
  applyLayout(ui.list, layout);
  ui.cardSize.value = layout.size;
  ui.compact.setAttribute('aria-pressed', String(layout.compact));
  ui.group.setAttribute('aria-pressed', String(layout.grouped));
  arrangement.setGrouped(layout.grouped);
}

ui.cardSize.addEventListener('change', () => setLayout({ size: ui.cardSize.value }));
ui.compact.addEventListener('click', () => setLayout({ compact: !layout.compact }));
ui.group.addEventListener('click', () => setLayout({ grouped: !layout.grouped }));

function setPins(pins) {
  arrangement.setPins(pins);
  savePins(arrangement.pins);
  grid.setFilter(filter); // card links carry the pins
  render();
}

function togglePin(topic) {
  const pins = new Set(arrangement.pins);
  if (!pins.delete(topic)) pins.add(topic);
  setPins(pins);
  writeView(viewOf());
}

function sortIn() {
  arrangement.sortIn();
  render();
}

ui.newTopics.addEventListener('click', sortIn);

function showTools(open) {
  ui.bar.classList.toggle('tools-open', open);
  ui.toolsToggle.setAttribute('aria-expanded', String(open));
}

ui.toolsToggle.addEventListener('click', () => showTools(!ui.bar.classList.contains('tools-open')));

const shortcuts = keyboardShortcuts({
  dialog: $('shortcuts'),
  search: () => {
    showTools(true);
    ui.query.focus();
    ui.query.select();
  },
  cards: () => [...ui.list.querySelectorAll('.card-item:not([hidden]) a.card')],
  blocked: () => focus.isOpen,
});
$('shortcuts-button').addEventListener('click', () => shortcuts.open());

// --- pause ----------------------------------------------------------------------------------

ui.pause.addEventListener('click', () => {
  paused = !paused;
  if (!paused) {
    for (const { header, blob } of held.values()) show(header, blob);
    held.clear();
    refillExperiments();
  }
  render();
});

// --- connection indicator and outage banner ------------------------------------------------

const pill = new StatusPill(ui.status, ui.statusText, { onRetry: () => socket.reconnectNow() });
const outage = new OutageBanner($('outage'), { onRetry: () => socket.reconnectNow() });

function showStatus(state, detail = {}) {
  connection = state;
  pill.show(state, detail);
  grid.setOffline(state === OFFLINE);
  if (state === OFFLINE) {
    outage.show({ since: detail.since, retryAt: pill.retryAt, reason: pill.reason });
  } else {
    outage.hide();
  }
  render();
}

// --- rendering of the header counts and empty state ------------------------------------------

function render() {
  const total = grid.size;
  const shown = grid.visibleCount;
  // The grid holds only what the filter asked the server for; the API counts everything.
  const all = Math.max(apiTotal, total);
  const topics = all === 1 ? 'topic' : 'topics';
  ui.count.textContent = shown === all ? `${shown} ${topics}` : `${shown} of ${all} ${topics}`;
  ui.pause.setAttribute('aria-pressed', String(paused));
  ui.pause.textContent = paused ? (held.size ? `Resume (${held.size} new)` : 'Resume') : 'Pause';
  document.body.classList.toggle('paused', paused);
  let empty = '';
  if (total === 0) {
    empty =
      connection === LIVE
        ? 'No live topics yet: they appear here as soon as one is published.'
        : 'Connecting to the service…';
  } else if (shown === 0) {
    empty = 'No topic matches this filter.';
  }
  ui.empty.textContent = empty;
  ui.empty.hidden = !empty;
  arrangement.refresh();
  const fresh = arrangement.freshCount;
  ui.newTopics.hidden = fresh === 0;
  ui.newTopics.textContent = `${fresh} new ${fresh === 1 ? 'topic' : 'topics'} — sort in`;
  const logbook = logbookHref(filter.experiment);
  if (ui.logbook.getAttribute('href') !== logbook) ui.logbook.href = logbook;
  const title = focus.topic ?? filter.experiment;
  document.title = title ? `${title} — elog-stream` : 'elog-stream';
}

// --- start ----------------------------------------------------------------------------------

ui.query.value = filter.query;
refillExperiments();
showLayout();
setPins(initialPins(initial.pins)); // the URL's when it names any, else this browser's
writeView(viewOf(initial.topic)); // so the address shows the pins, to share or bookmark
grid.setFilter(filter);
if (initial.topic) {
  openFocus(initial.topic, { push: false, comparison: initial, seq: seqOf(initial) });
}
render();
socket.start();

setInterval(() => {
  if (document.hidden) return;
  grid.tick();
  focus.tick();
  pill.tick();
  outage.tick();
}, 1000);

setInterval(() => {
  if (socket.live) loadExperiments();
}, EXPERIMENTS_EVERY_MS);
