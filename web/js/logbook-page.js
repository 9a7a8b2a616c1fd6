// The logbook page (logbook.html): without an experiment, the index of logbooks; with one, its
// entries newest first, searched by the service (`q`), older pages on request, new entries and
// retractions pushed over the WebSocket, each entry linkable (`entry`), retract, export.

import { getJson, goToLogin, postJson } from './api.js';
import { element } from './dom.js';
import { EntryDialog } from './entry-dialog.js';
import { Filter } from './filter.js';
import { localTime } from './format.js';
import { EntryList, entryId, entryName, parseEntry } from './logbook.js';
import { OutageBanner } from './outage.js';
import { session } from './session.js';
import { LiveSocket, OFFLINE } from './socket.js';
import { StatusPill } from './status.js';
import { themeButton } from './theme.js';
import {
  logbookEntryUrl,
  logbookExportUrl,
  logbookHref,
  logbooksUrl,
  logbookUrl,
  readLogbookView,
  serviceUrl,
  socketUrl,
  viewerHref,
} from './urls.js';

const $ = (id) => document.getElementById(id);
const root = $('logbook-view');
const part = (name) => root.querySelector(`[data-logbook=${name}]`);
const ui = {
  title: $('logbook-title'),
  all: part('all'),
  status: part('status'),
  index: part('index'),
  book: part('book'),
  find: part('find'),
  query: part('query'),
  exportHtml: part('export-html'),
  exportZip: part('export-zip'),
  linked: part('linked'),
  older: part('older'),
};

let view = readLogbookView();
const experiment = view.experiment; // another experiment is another page (and socket filter)
const retractDialog = new EntryDialog($('retract-dialog'));
const list = new EntryList(part('entries'), { onRetract: retract });
const linkedList = new EntryList(part('linked-list'), { onRetract: retract });
let token = 0; // bumped by each new search: answers to an older one are dropped
let next = null; // the URL of the page of older entries, null when there is none
let loaded = false; // the first page of the current search is in
let loading = false; // that page is being fetched
let behind = false; // the socket (re)connected meanwhile: fetch it again once it is in

// --- the page around it: header, theme, log out, connection ------------------------------

$('live-link').href = viewerHref({ experiment });
themeButton($('theme'));
session().then((answer) => {
  $('logout').hidden = answer?.credential !== 'session';
  root.dataset.pin = answer?.grants?.includes('pin') ? 'allowed' : 'refused';
});

const filter = new Filter(experiment);
const socket = new LiveSocket(() => socketUrl(filter), () => filter.subscribeMessage(), {
  onStatus: showStatus,
  onSync: caughtUp,
  onImage: () => {}, // the live figures are the other page's
  onExpired: () => {},
  onLogbook: received,
  onUnauthorized: goToLogin,
}, { images: 'announce' });
const pill = new StatusPill($('status'), $('status-text'), { onRetry: () => socket.reconnectNow() });
const outage = new OutageBanner($('outage'), { onRetry: () => socket.reconnectNow() });

function showStatus(state, detail = {}) {
  pill.show(state, detail);
  if (state === OFFLINE) {
    outage.show({ since: detail.since, retryAt: pill.retryAt, reason: pill.reason });
  } else {
    outage.hide();
  }
}

function say(text) {
  if (ui.status.textContent !== text) ui.status.textContent = text;
}

// --- the index of logbooks ------------------------------------------------------------------

let indexBusy = false;
let indexAgain = false;

/** (Re)load the list of experiments with a logbook; one request at a time. */
async function loadIndex() {
  if (indexBusy) {
    indexAgain = true;
    return;
  }
  indexBusy = true;
  try {
    const books = await getJson(logbooksUrl());
    showIndex(Array.isArray(books) ? books : []);
  } catch (error) {
    say(`Could not list the logbooks (${error.message}).`);
  } finally {
    indexBusy = false;
  }
  if (indexAgain) {
    indexAgain = false;
    loadIndex();
  }
}

function showIndex(books) {
  const valid = books.filter((book) => typeof book?.experiment === 'string' && book.experiment);
  valid.sort((a, b) => (b.latest_pinned_at ?? 0) - (a.latest_pinned_at ?? 0));
  ui.index.replaceChildren(
    ...valid.map((book) => {
      const item = element('li', 'logbook-book-item');
      const link = element('a', 'logbook-book-link', book.experiment);
      link.href = logbookHref(book.experiment);
      const count = Number.isSafeInteger(book.entries) ? book.entries : 0;
      const latest = Number.isFinite(book.latest_pinned_at) ? book.latest_pinned_at : null;
      const facts = `${count} ${count === 1 ? 'entry' : 'entries'}` +
        (latest === null ? '' : ` · latest pinned ${localTime(latest)}`);
      item.append(link, element('span', 'logbook-book-facts', facts));
      return item;
    }),
  );
  ui.index.hidden = valid.length === 0;
  say(
    valid.length
      ? ''
      : 'No logbook yet: open a topic and use “Pin to logbook” to keep an image in its ' +
          "experiment's logbook.",
  );
}

// --- one experiment's logbook ---------------------------------------------------------------

/** Entries of `body.entries` that are entries, checked. */
function entriesOf(body) {
  return (Array.isArray(body?.entries) ? body.entries : []).map(parseEntry).filter(Boolean);
}

function nextOf(body) {
  return typeof body?.next === 'string' && body.next ? serviceUrl(body.next) : null;
}

/** Load the newest entries of the current search, replacing what is shown. */
async function load() {
  const mine = ++token;
  loaded = false;
  next = null;
  list.clear();
  ui.older.hidden = true;
  say('Loading…');
  let body;
  loading = true;
  try {
    body = await getJson(logbookUrl(experiment, view.q));
  } catch (error) {
    if (mine !== token) return;
    loading = false;
    say(
      error.status === 404
        ? `No logbook for ${experiment}.`
        : `Could not load the logbook (${error.message}).`,
    );
    return;
  }
  if (mine !== token) return;
  loading = false;
  for (const entry of entriesOf(body)) list.upsert(entry);
  next = nextOf(body);
  loaded = true;
  showCount();
  showLinked({ scroll: true });
  if (behind) caughtUp(); // the page may have been read before the socket listened
}

/** The next page of older entries. */
async function older() {
  const mine = token;
  const url = next;
  if (!url) return;
  ui.older.disabled = true;
  try {
    const body = await getJson(url);
    if (mine !== token) return;
    for (const entry of entriesOf(body)) list.upsert(entry);
    next = nextOf(body);
    showCount();
    showLinked({ scroll: false });
  } catch (error) {
    if (mine === token) say(`Could not load older entries (${error.message}).`);
  } finally {
    ui.older.disabled = false;
  }
}

/**
 * The socket (re)connected: fetch the newest page again and merge it, so what was pinned or
 * retracted while it was away (or before it first listened) is shown.
 */
async function caughtUp() {
  if (!experiment) {
    loadIndex();
    return;
  }
  if (!loaded) {
    if (loading) behind = true;
    else load(); // the first attempt failed: the service answers again
    return;
  }
  behind = false;
  const mine = token;
  try {
    const body = await getJson(logbookUrl(experiment, view.q));
    if (mine !== token) return;
    for (const entry of entriesOf(body)) update(entry, { fresh: !list.has(entry.id) });
    showCount();
    showLinked({ scroll: false });
  } catch (error) {
    console.warn('elog-stream: could not reload the logbook:', error.message);
  }
}

/** An entry pinned or retracted, pushed by the service. */
function received(raw) {
  const entry = parseEntry(raw);
  if (!entry) return;
  if (!experiment) {
    loadIndex();
    return;
  }
  if (entry.experiment !== experiment) return;
  if (list.has(entry.id) || linkedList.has(entry.id)) {
    update(entry);
  } else if (!view.q.trim()) {
    update(entry, { fresh: true });
    say(`New entry: ${entryName(entry)}, by ${entry.author || 'unknown'}.`);
  } else if (loaded) {
    caughtUp(); // whether it matches the search is the service's to say
    return;
  }
  showLinked({ scroll: false });
}

/** Show `entry` wherever it is shown, or at its place in the list if that is loaded. */
function update(entry, { fresh = false } = {}) {
  if (linkedList.has(entry.id)) linkedList.upsert(entry);
  if (list.has(entry.id) || (loaded && (next === null || list.holds(entry.id)))) {
    list.upsert(entry, { fresh });
  }
}

function showCount() {
  ui.older.hidden = next === null;
  const n = list.size;
  const more = next ? ' (older ones below)' : '';
  const entries = `${n} ${n === 1 ? 'entry' : 'entries'}`;
  if (view.q.trim()) {
    say(n ? `${entries} match “${view.q.trim()}”${more}.` : `No entry matches “${view.q.trim()}”.`);
  } else {
    say(
      n
        ? `${entries}${more}.`
        : 'No entry yet: open a topic of this experiment and use “Pin to logbook”.',
    );
  }
}

// --- the entry the URL names ----------------------------------------------------------------

let revealWanted = false; // bring the entry into view and focus once it is shown
let fetching = ''; // the id of the linked entry being fetched

/**
 * Mark the entry the URL names in the list; when it is not among those loaded (older, or
 * outside the search), fetch it and show it above the list. `scroll`: bring it into view and
 * give it the keyboard focus once it is shown (a link was followed).
 */
async function showLinked({ scroll }) {
  if (scroll) revealWanted = true;
  const id = entryId(view.entry);
  const item = list.mark(id);
  linkedList.mark(id);
  if (!id || item) {
    linkedList.clear();
    ui.linked.hidden = true;
    if (item) reveal(item);
    revealWanted = false;
    if (view.entry && !id) say(`“${view.entry}” is not an entry of a logbook.`);
    return;
  }
  if (linkedList.has(id)) {
    ui.linked.hidden = false;
    reveal(linkedList.item(id));
    return;
  }
  if (fetching === id) return; // its answer shows it
  fetching = id;
  let entry;
  try {
    entry = parseEntry(await getJson(logbookEntryUrl(experiment, id)));
  } catch (error) {
    if (fetching !== id) return;
    fetching = '';
    say(
      error.status === 404
        ? `Entry ${id} is not in the logbook of ${experiment}.`
        : `Could not load entry ${id} (${error.message}).`,
    );
    return;
  }
  if (fetching !== id) return; // another entry was asked for since
  fetching = '';
  if (!entry || entry.id !== entryId(view.entry)) return;
  if (!list.has(id)) {
    linkedList.clear();
    linkedList.upsert(entry);
  }
  showLinked({ scroll: false }); // shows it where it is now
}

/** Scroll `item` into view and focus it, if a link asked for that. */
function reveal(item) {
  if (!revealWanted) return;
  revealWanted = false;
  item.scrollIntoView({ block: 'center' });
  item.focus({ preventScroll: true });
}

// --- actions --------------------------------------------------------------------------------

function retract(entry) {
  retractDialog.open({
    what: `${entryName(entry)}, pinned by ${entry.author || 'unknown'}. It stays in the ` +
      'logbook, marked as retracted, with your name and reason.',
    refused: 'Not retracted',
    send: (reason, author) => postJson(`${serviceUrl(entry.url)}/retract`, { reason, author }),
    done: (answer) => {
      const updated = parseEntry(answer);
      if (updated) update(updated);
      return null;
    },
    closed: () => (list.item(entry.id) ?? linkedList.item(entry.id))?.focus(),
  });
}

ui.find.addEventListener('submit', (event) => {
  event.preventDefault();
  const q = ui.query.value.trim();
  if (q === view.q && loaded) return;
  view = { ...view, q, entry: '' };
  history.pushState(null, '', logbookHref(experiment, { q }));
  load();
});

ui.older.addEventListener('click', older);

// A link to an entry of this page marks it without reloading the page.
root.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-entry]');
  const modified = event.ctrlKey || event.metaKey || event.shiftKey || event.altKey;
  if (!link || event.button !== 0 || modified) return;
  event.preventDefault();
  view = { ...view, entry: link.dataset.entry };
  history.pushState(null, '', link.href);
  showLinked({ scroll: true });
});

window.addEventListener('popstate', () => {
  const next = readLogbookView();
  if (next.experiment !== experiment) {
    location.reload(); // another page
    return;
  }
  const searchChanged = next.q !== view.q;
  view = next;
  ui.query.value = view.q;
  if (searchChanged) load();
  else showLinked({ scroll: true });
});

// --- start ----------------------------------------------------------------------------------

if (experiment) {
  ui.title.textContent = `Logbook of ${experiment}`;
  ui.all.hidden = false;
  ui.book.hidden = false;
  ui.query.value = view.q;
  ui.exportHtml.href = logbookExportUrl(experiment, 'html');
  ui.exportZip.href = logbookExportUrl(experiment, 'zip');
  document.title = `Logbook of ${experiment} — elog-stream`;
  load();
} else {
  document.title = 'Logbooks — elog-stream';
  loadIndex();
}
socket.start();

setInterval(() => {
  if (document.hidden) return;
  pill.tick();
  outage.tick();
}, 1000);
