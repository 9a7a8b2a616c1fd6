// Zoom and pan of one image inside a box (the "stage"): fit, 1:1, wheel and pinch zoom about
// the pointer, drag to pan, double-click between fit and 1:1. No scroll bars: the image is
// placed with a CSS transform, clamped so it never leaves a gap it could fill.
//
// A view ({mode, k, u, v}) describes the zoom independently of the image's size, so two stages
// can follow each other (compare): `mode` is 'fit', 'actual' (1:1) or 'free'; `k` the scale
// relative to fit; `u`, `v` the point of the image (0..1) at the centre of the stage.

const MAX_SCALE = 32; // image pixel -> CSS pixels; fit may exceed it for tiny images
const WHEEL_RATE = 0.002; // zoom factor per wheel pixel: e^(0.002 * 100) ≈ 1.22 per notch
const LINE_PIXELS = 16; // a wheel "line" (Firefox) in pixels
// Each image pixel covers this many device pixels or more: drawn as crisp squares. Below it,
// nearest-neighbour makes uneven pixels (some 1, some 2 device pixels) and smoothing is kinder.
const PIXELATED_FROM = 2;

export const FIT = 'fit';
export const ACTUAL = 'actual';
export const FREE = 'free';

export class Zoom {
  #stage;
  #onChange;
  #img = null;
  #width = 0; // natural size of the image
  #height = 0;
  #mode = FIT;
  #scale = 1;
  #x = 0; // stage coordinates of the image's top-left corner
  #y = 0;
  #pointers = new Map(); // pointerId -> {x, y}: the pointers down on the stage
  #observer;

  /**
   * `stage` is the box the image is shown in (overflow hidden); `onChange(view, byUser)` is
   * called after every change, `byUser` false when it came from `setView` or a resize.
   */
  constructor(stage, { onChange = () => {} } = {}) {
    this.#stage = stage;
    this.#onChange = onChange;
    stage.classList.add('zoom-stage');
    stage.addEventListener('wheel', (event) => this.#wheel(event), { passive: false });
    stage.addEventListener('pointerdown', (event) => this.#down(event));
    stage.addEventListener('pointermove', (event) => this.#move(event));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      stage.addEventListener(type, (event) => this.#up(event));
    }
    stage.addEventListener('dblclick', (event) => this.toggle(event.clientX, event.clientY));
    this.#observer = new ResizeObserver(() => this.#resized());
    this.#observer.observe(stage);
  }

  get mode() {
    return this.#mode;
  }

  /** Image pixels to CSS pixels: 1 at 1:1, 2 when each image pixel is two CSS pixels wide. */
  get scale() {
    return this.#scale;
  }

  get image() {
    return this.#img;
  }

  /** The view to give another stage so it shows the same part at the same relative zoom. */
  get view() {
    const { width, height } = this.#box();
    const w = this.#width * this.#scale || 1;
    const h = this.#height * this.#scale || 1;
    return {
      mode: this.#mode,
      k: this.#scale / (this.#fitScale() || 1),
      u: (width / 2 - this.#x) / w,
      v: (height / 2 - this.#y) / h,
    };
  }

  /**
   * Show `img` (decoded) in the stage, replacing the previous image. The zoom stays: fit stays
   * fit, 1:1 stays 1:1, a free zoom keeps its relative scale and centre (so live updates of the
   * same figure never move it).
   */
  show(img) {
    const view = this.#img ? this.view : null;
    img.classList.add('zoom-img');
    img.draggable = false;
    this.#img = img;
    this.#width = img.naturalWidth;
    this.#height = img.naturalHeight;
    this.#stage.replaceChildren(img);
    if (view) this.#apply(view);
    else this.#fitNow();
    this.#render(false);
  }

  /** Empty the stage; the next image starts fitted. */
  clear() {
    this.#img = null;
    this.#width = this.#height = 0;
    this.#mode = FIT;
    this.#pointers.clear();
    this.#stage.replaceChildren();
  }

  fit() {
    this.#fitNow();
    this.#render(true);
  }

  /** 1:1, keeping the image point at (clientX, clientY) (default: the stage's centre) still. */
  actual(clientX, clientY) {
    this.#zoomTo(1, clientX, clientY);
    this.#mode = ACTUAL;
    this.#render(true);
  }

  /** Double-click: 1:1 about the pointer from fit, else back to fit. */
  toggle(clientX, clientY) {
    if (this.#mode === FIT && Math.abs(this.#scale - 1) > 1e-6) this.actual(clientX, clientY);
    else this.fit();
  }

  /** Multiply the scale by `factor` about (clientX, clientY), default the stage's centre. */
  zoomBy(factor, clientX, clientY) {
    this.#zoomTo(this.#scale * factor, clientX, clientY);
    this.#mode = FREE;
    this.#render(true);
  }

  /** Move the image by (dx, dy) CSS pixels, within bounds. */
  panBy(dx, dy) {
    this.#x += dx;
    this.#y += dy;
    this.#clamp();
    this.#render(true);
  }

  /** Take another stage's `view`; does not call onChange as a user change. */
  setView(view) {
    if (!this.#img) return;
    this.#apply(view);
    this.#render(false);
  }

  // --- geometry ----------------------------------------------------------------------------

  #box() {
    return { width: this.#stage.clientWidth, height: this.#stage.clientHeight };
  }

  /** The scale at which the whole image fills the stage (enlarging small images too). */
  #fitScale() {
    const { width, height } = this.#box();
    if (!this.#width || !this.#height || !width || !height) return 1;
    return Math.min(width / this.#width, height / this.#height);
  }

  #limits() {
    const fit = this.#fitScale();
    return { min: Math.min(fit, 1), max: Math.max(fit, MAX_SCALE) };
  }

  #fitNow() {
    this.#mode = FIT;
    this.#scale = this.#fitScale();
    this.#clamp();
  }

  #apply({ mode, k, u, v }) {
    if (mode === FIT) {
      this.#fitNow();
      return;
    }
    const { min, max } = this.#limits();
    this.#mode = mode;
    this.#scale = mode === ACTUAL ? 1 : Math.min(max, Math.max(min, k * this.#fitScale()));
    const { width, height } = this.#box();
    this.#x = width / 2 - u * this.#width * this.#scale;
    this.#y = height / 2 - v * this.#height * this.#scale;
    this.#clamp();
  }

  #zoomTo(scale, clientX, clientY) {
    if (!this.#img) return;
    const { min, max } = this.#limits();
    const next = Math.min(max, Math.max(min, scale));
    const rect = this.#stage.getBoundingClientRect();
    const px = (clientX ?? rect.left + rect.width / 2) - rect.left - this.#stage.clientLeft;
    const py = (clientY ?? rect.top + rect.height / 2) - rect.top - this.#stage.clientTop;
    // The image point under (px, py) stays there.
    this.#x = px - ((px - this.#x) * next) / this.#scale;
    this.#y = py - ((py - this.#y) * next) / this.#scale;
    this.#scale = next;
    this.#clamp();
  }

  /** Centre an image smaller than the stage; never leave a gap beside a larger one. */
  #clamp() {
    const { width, height } = this.#box();
    const w = this.#width * this.#scale;
    const h = this.#height * this.#scale;
    this.#x = w <= width ? (width - w) / 2 : Math.min(0, Math.max(width - w, this.#x));
    this.#y = h <= height ? (height - h) / 2 : Math.min(0, Math.max(height - h, this.#y));
  }

  #resized() {
    if (!this.#img) return;
    if (this.#mode === FIT) this.#fitNow();
    else this.#clamp();
    this.#render(false);
  }

  #render(byUser) {
    const img = this.#img;
    if (!img) return;
    // Laid out at natural size from the top-left corner, then moved and scaled.
    img.style.width = `${this.#width}px`;
    img.style.height = `${this.#height}px`;
    img.style.transform = `translate(${this.#x}px, ${this.#y}px) scale(${this.#scale})`;
    img.classList.toggle('pixelated', this.#scale * window.devicePixelRatio >= PIXELATED_FROM);
    this.#stage.dataset.mode = this.#mode;
    this.#stage.dataset.scale = this.#scale.toFixed(4);
    this.#stage.classList.toggle('zoom-pannable', this.#pannable());
    this.#onChange(this.view, byUser);
  }

  #pannable() {
    const { width, height } = this.#box();
    return this.#width * this.#scale > width + 0.5 || this.#height * this.#scale > height + 0.5;
  }

  // --- input -------------------------------------------------------------------------------

  #wheel(event) {
    if (!this.#img) return;
    event.preventDefault();
    const pixels = event.deltaMode === 1 ? event.deltaY * LINE_PIXELS : event.deltaY;
    this.zoomBy(Math.exp(-pixels * WHEEL_RATE), event.clientX, event.clientY);
  }

  #down(event) {
    if (!this.#img || (event.pointerType === 'mouse' && event.button !== 0)) return;
    this.#stage.setPointerCapture(event.pointerId);
    this.#pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    this.#stage.classList.add('zoom-dragging');
  }

  #move(event) {
    const last = this.#pointers.get(event.pointerId);
    if (!last) return;
    event.preventDefault();
    const before = this.#gesture();
    this.#pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const after = this.#gesture();
    if (before.spread && after.spread) {
      // Two fingers: the pinch scales about their midpoint, which also pans as they move.
      this.#zoomTo(this.#scale * (after.spread / before.spread), before.x, before.y);
      this.#mode = FREE;
    }
    this.#x += after.x - before.x;
    this.#y += after.y - before.y;
    this.#clamp();
    this.#render(true);
  }

  #up(event) {
    if (!this.#pointers.delete(event.pointerId)) return;
    if (!this.#pointers.size) this.#stage.classList.remove('zoom-dragging');
  }

  /** Midpoint of the (first two) pointers down, and their distance (0 for one pointer). */
  #gesture() {
    const [a, b] = this.#pointers.values();
    if (!b) return { x: a.x, y: a.y, spread: 0 };
    return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2, spread: Math.hypot(a.x - b.x, a.y - b.y) };
  }
}
