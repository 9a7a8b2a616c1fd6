// What this browser remembers about the grid's layout: card size, compact cards, grouping by
// experiment (localStorage only), and the pinned topics (localStorage and the page URL; the URL
// wins when it names any, so a shared link shows its pins).

const LAYOUT_KEY = 'elog-layout';
const PINS_KEY = 'elog-pins';
const MAX_PINS = 200;
const MAX_TOPIC = 1024;

export const SIZES = ['s', 'm', 'l'];
const DEFAULT = { size: 'm', compact: false, grouped: false };

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null');
  } catch {
    return null; // written by something else: ignored, overwritten at the next change
  }
}

/** {size: 's' | 'm' | 'l', compact, grouped} as last chosen here. */
export function storedLayout() {
  const stored = readJson(LAYOUT_KEY);
  if (!stored || typeof stored !== 'object') return { ...DEFAULT };
  return {
    size: SIZES.includes(stored.size) ? stored.size : DEFAULT.size,
    compact: stored.compact === true,
    grouped: stored.grouped === true,
  };
}

export function saveLayout(layout) {
  localStorage.setItem(LAYOUT_KEY, JSON.stringify(layout));
}

/** Only names a topic could have: strings, bounded in length and number. */
function cleanPins(pins) {
  if (!Array.isArray(pins)) return [];
  const valid = pins.filter((pin) => typeof pin === 'string' && pin && pin.length <= MAX_TOPIC);
  return [...new Set(valid)].slice(0, MAX_PINS);
}

/** The pins to start with: the URL's when it names any (`urlPins` not null), else stored. */
export function initialPins(urlPins) {
  return cleanPins(urlPins ?? readJson(PINS_KEY));
}

export function savePins(pins) {
  localStorage.setItem(PINS_KEY, JSON.stringify(cleanPins([...pins])));
}

/** Show `layout` on the grid element: card size and compact cards are CSS (style.css). */
export function applyLayout(root, layout) {
  root.dataset.size = layout.size;
  root.classList.toggle('compact', layout.compact);
}
