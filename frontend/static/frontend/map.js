// The catalog map: every ready song as a point on a canvas (a PCA of the embeddings, computed ahead of time by the
// server), coloured by album or by top sound tag. Hover or keyboard focus names a song, a click opens it; on touch
// screens the first tap names it and a second tap opens it. Drag to pan, wheel or +/- to zoom, 0 to reset; arrow keys
// move to the nearest song in that direction and Enter opens it. One canvas draws 100k points (one path per colour),
// a grid finds the point under the pointer, and a pan moves the last drawing until the pointer rests. Titles are
// written with textContent only, and colours come from classes in map.css, so the page needs no inline script or
// style.

import { api, el, readConfig, songUrl } from "./common.js";

// Colours in map.css: map-c0 … map-c8, then map-c-other (groups beyond the palette) and map-c-unknown.
const PALETTE_SIZE = 9;
// Below this width (CSS px) the map is drawn square, so points stay large enough to touch.
const NARROW_PX = 560;
const LAYOUTS = {
  wide: { ratio: 480 / 800, pad: 18 },
  narrow: { ratio: 1, pad: 14 },
};
const MODES = {
  album: { label: "Album", plural: "albums", heading: "Albums" },
  tag: { label: "Sound tag", plural: "sound tags", heading: "Top sound tag" },
};
const UNKNOWN = "Unknown";
const MAX_ZOOM = 64;
const CELL_PX = 12; // grid cell of the hit test, in unzoomed CSS px

const config = readConfig("map-config");
const wrap = document.getElementById("map-canvas");
const canvas = document.getElementById("map-points");
const overlay = document.getElementById("map-overlay");
const figure = document.getElementById("map-figure");
const loading = document.getElementById("map-loading");
const errorBox = document.getElementById("map-error");
const errorText = document.getElementById("map-error-text");
const emptyBox = document.getElementById("map-empty");
const emptyText = document.getElementById("map-empty-text");
const summary = document.getElementById("map-summary");
const axes = document.getElementById("map-axes");
const freshness = document.getElementById("map-freshness");
const pathLine = document.getElementById("map-path");
const legend = document.getElementById("map-legend");
const legendHeading = document.getElementById("map-legend-heading");
const tooltip = document.getElementById("map-tooltip");
const tooltipTitle = document.getElementById("map-tooltip-title");
const tooltipGroup = document.getElementById("map-tooltip-group");
const tooltipHint = document.getElementById("map-tooltip-hint");
const announcer = document.getElementById("map-announcer");
const radios = Array.from(document.querySelectorAll('input[name="colour_by"]'));
const ctx = canvas.getContext("2d", { alpha: true });
const octx = overlay.getContext("2d");
const cache = document.createElement("canvas"); // the last full drawing, moved during a pan
const cctx = cache.getContext("2d");

const NO_POINTS = { length: 0, x: new Float32Array(0), y: new Float32Array(0), group: new Uint32Array(0), ids: new Uint8Array(0), groups: [], titles: [], artists: [] };
let points = NO_POINTS; // the API's columns, decoded
let xs = new Float32Array(0); // unzoomed CSS px
let ys = new Float32Array(0);
let colourOf = new Uint8Array(0); // index into `entries`
let byColour = { order: new Int32Array(0), start: new Int32Array(1) }; // point indices grouped by entry
let entries = []; // legend entries: {key, name, count, colour}
let grid = null; // {cols, rows, start: Int32Array, items: Int32Array}
let size = { width: 0, height: 0, pad: 18, dpr: 1 };
let view = { k: 1, tx: 0, ty: 0 };
let drawn = { k: 1, tx: 0, ty: 0 }; // the view `cache` holds
let radius = 6;
let active = -1; // the point whose tooltip shows
let highlighted = -1; // the legend entry whose points stand out
let mode = config.colourBy === "tag" ? "tag" : "album";
let inFlight = null;
let drag = null;
let lastPointer = "";
let activeAtPointerDown = -1;
let settleTimer = 0;
let frame = 0;
let strokes = { axis: "#888", ring: "#000" }; // from map.css, read once per drawing of the data
let pathSongs = null; // ?from=&to=&steps=: the path's songs from the API, fetched once
let route = new Int32Array(0); // their point indices, in order (-1: not on the map)

function plural(count, one, many) {
  return `${count.toLocaleString("en")} ${count === 1 ? one : many}`;
}

function percent(share) {
  return `${Math.round(share * 100)}%`;
}

function ago(seconds) {
  if (seconds < 90) return "just now";
  if (seconds < 5400) return `${Math.round(seconds / 60)} minutes ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} hours ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// ---- Loading ---------------------------------------------------------------------------------------------------

function setState(state, message = "") {
  loading.hidden = state !== "loading";
  errorBox.hidden = state !== "error";
  emptyBox.hidden = state !== "empty";
  if (state === "error") errorText.textContent = message;
  if (state === "empty") emptyText.textContent = message;
  if (state === "error" || state === "empty") figure.hidden = true;
  if (state === "ready") figure.hidden = false;
  wrap.setAttribute("aria-busy", state === "loading" ? "true" : "false");
}

async function load() {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  setState("loading");
  const url = `${config.urls.map}?colour_by=${encodeURIComponent(mode)}`;
  try {
    const data = await api(url, { signal: controller.signal });
    if (inFlight !== controller) return;
    render(data);
  } catch (error) {
    if (inFlight !== controller || error.name === "AbortError") return;
    setState("error", `The map could not be drawn. ${error.message}`);
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

/** Bytes of a base64 string (the API's arrays are base64 of little-endian values). */
function bytesOf(text) {
  const raw = atob(text || "");
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function decode(data) {
  const n = data.count || 0;
  return {
    length: n,
    x: new Float32Array(bytesOf(data.x).buffer, 0, n),
    y: new Float32Array(bytesOf(data.y).buffer, 0, n),
    group: new Uint32Array(bytesOf(data.group).buffer, 0, n),
    ids: bytesOf(data.ids),
    groups: data.groups || [],
    titles: data.titles || [],
    artists: data.artists || [],
  };
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

function pointId(i) {
  const b = points.ids.subarray(16 * i, 16 * i + 16);
  const hex = Array.from(b, (byte) => HEX[byte]).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function groupOf(i) {
  return points.groups[points.group[i]];
}

// ---- Colours and legend ----------------------------------------------------------------------------------------

function cssColour(className) {
  const probe = el("span", className);
  probe.hidden = true;
  document.body.append(probe);
  const colour = getComputedStyle(probe).getPropertyValue("--c").trim() || "#888";
  probe.remove();
  return colour;
}

const probeCanvas = document.createElement("canvas");
probeCanvas.width = 1;
probeCanvas.height = 1;
const probe = probeCanvas.getContext("2d", { willReadFrequently: true });

/** A CSS colour as [r, g, b] (painted on one pixel and read back, whatever its syntax). */
function rgbOf(colour) {
  probe.clearRect(0, 0, 1, 1);
  probe.fillStyle = colour;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
  return [r, g, b];
}

/** Legend entries and each point's entry: every group when they fit the palette, else the largest ones. */
function colourGroups(groups, labels) {
  const perGroup = new Int32Array(points.groups.length);
  for (let i = 0; i < points.length; i++) perGroup[points.group[i]]++;
  const counts = new Map();
  points.groups.forEach((group, g) => {
    if (perGroup[g]) counts.set(group, perGroup[g]);
  });
  const named = groups.filter((group) => group !== UNKNOWN);
  let coloured = named;
  if (named.length > PALETTE_SIZE) {
    const largest = new Set(
      [...named].sort((a, b) => counts.get(b) - counts.get(a) || a.localeCompare(b)).slice(0, PALETTE_SIZE - 1),
    );
    coloured = named.filter((group) => largest.has(group)); // keep the API's (sorted) order
  }
  const list = coloured.map((group, index) => ({
    key: group,
    name: group,
    count: counts.get(group),
    className: `map-c${index}`,
  }));
  const index = new Map(list.map((entry, i) => [entry.key, i]));
  const others = named.filter((group) => !index.has(group));
  if (others.length) {
    const count = others.reduce((sum, group) => sum + counts.get(group), 0);
    list.push({ key: "other:", name: `Other ${labels.plural}`, count, className: "map-c-other" });
  }
  if (counts.has(UNKNOWN)) {
    list.push({ key: "unknown:", name: UNKNOWN, count: counts.get(UNKNOWN), className: "map-c-unknown" });
  }
  for (const entry of list) {
    entry.colour = cssColour(entry.className);
    entry.rgb = rgbOf(entry.colour);
  }
  const other = list.findIndex((entry) => entry.key === "other:");
  const unknown = list.findIndex((entry) => entry.key === "unknown:");
  const entryOf = points.groups.map((group) =>
    index.has(group) ? index.get(group) : group === UNKNOWN ? unknown : other,
  );
  const of = new Uint8Array(points.length);
  for (let i = 0; i < points.length; i++) of[i] = entryOf[points.group[i]];
  return { list, of };
}

function legendItem(entry, number) {
  const item = el("li", "map__legend-entry");
  const button = el("button", "map__legend-item");
  button.type = "button";
  button.setAttribute("aria-pressed", "false");
  button.dataset.entry = String(number);
  const swatch = el("span", `map__swatch ${entry.className}`);
  swatch.setAttribute("aria-hidden", "true");
  const count = el("span", "map__legend-count", entry.count.toLocaleString("en"));
  count.append(el("span", "visually-hidden", entry.count === 1 ? " song" : " songs"));
  button.append(swatch, el("span", "map__legend-name", entry.name), count);
  button.title = `Show where the ${plural(entry.count, "song", "songs")} of “${entry.name}” are`;
  item.append(button);
  return item;
}

// ---- Layout, drawing and hit testing ---------------------------------------------------------------------------

function render(data) {
  points = decode(data);
  hideTooltip();
  if (points.length < 2) {
    const one = points.length;
    points = NO_POINTS;
    const waiting = data.pending || 0;
    setState(
      "empty",
      waiting > 1
        ? `The map of ${plural(waiting, "song", "songs")} is being computed; try again in a minute.`
        : one || waiting
          ? "The map needs at least two ready songs; there is one so far."
          : "No song is ready to be mapped yet.",
    );
    return;
  }
  const labels = MODES[data.colour_by] || MODES[mode];
  const groups = colourGroups(data.groups || [], labels);
  entries = groups.list;
  colourOf = groups.of;
  byColour = groupByColour(colourOf, entries.length);
  strokes = { axis: cssColour("map-axis-colour"), ring: cssColour("map-ring-colour") };
  highlighted = -1;
  radius = points.length <= 2000 ? 6.5 : points.length <= 20000 ? 3 : 1.6;
  setState("ready");
  view = { k: 1, tx: 0, ty: 0 };
  size.width = 0; // force a layout
  layout();

  legendHeading.textContent = labels.heading;
  legend.replaceChildren(...entries.map((entry, i) => legendItem(entry, i)));
  const named = (data.groups || []).filter((group) => group !== UNKNOWN).length;
  const unknown = entries.find((entry) => entry.key === "unknown:")?.count || 0;
  summary.textContent =
    `${plural(points.length, "song", "songs")} by the ${data.model} model, coloured by ${labels.label.toLowerCase()}: ` +
    `${plural(named, labels.plural.replace(/s$/, ""), labels.plural)}` +
    `${unknown ? `, ${plural(unknown, "song", "songs")} without one` : ""}.`;
  const [first, second] = data.explained_variance || [0, 0];
  axes.textContent =
    `Across: the direction in which these songs differ most (${percent(first)} of their variation). ` +
    `Up: the next one (${percent(second)}).`;
  const parts = [];
  if (data.age_seconds != null) parts.push(`Map computed ${ago(data.age_seconds)}`);
  if (data.placed_since) parts.push(`${plural(data.placed_since, "song", "songs")} added since placed on it`);
  if (data.pending) parts.push(`${plural(data.pending, "song", "songs")} still to be placed`);
  freshness.textContent = parts.length ? `${parts.join("; ")}.` : "";
  showPath();
}

// ---- A path between two songs, drawn as a line (?from=<id>&to=<id>&steps=N) -----------------------------------

async function showPath() {
  if (!config.path) return;
  if (!pathSongs) {
    const params = new URLSearchParams({ from: config.path.from, to: config.path.to, steps: String(config.path.steps) });
    try {
      const data = await api(`${config.urls.path}?${params}`);
      pathSongs = [data.start, ...data.results.map((pick) => pick.song), data.end];
    } catch (error) {
      pathLine.hidden = false;
      pathLine.textContent = `The path could not be drawn. ${error.message}`;
      return;
    }
  }
  route = Int32Array.from(pathSongs, (song) => indexOfId(song.id));
  const onMap = route.filter((i) => i >= 0).length;
  wrap.dataset.pathSongs = String(onMap);
  pathLine.hidden = false;
  const first = pathSongs[0];
  const last = pathSongs[pathSongs.length - 1];
  const missing = pathSongs.length - onMap;
  pathLine.replaceChildren(
    `The line is the path from “${first.title || first.original_file_name}” to “${last.title || last.original_file_name}”: ` +
      `${plural(pathSongs.length, "song", "songs")}${missing ? `, ${missing} not on the map yet` : ""}. `,
  );
  const back = el("a", "", "Listen to it");
  back.href = `${config.urls.pathPage}?${new URLSearchParams({ from: config.path.from, to: config.path.to, steps: String(config.path.steps) })}`;
  pathLine.append(back);
  drawOverlay();
}

/** The point of a song id, or -1: compares the ids' 16 bytes as four 32-bit words, without building a map of all. */
function indexOfId(id) {
  const hex = id.replaceAll("-", "");
  const want = new Uint8Array(16);
  for (let b = 0; b < 16; b++) want[b] = parseInt(hex.slice(2 * b, 2 * b + 2), 16);
  const words = new Uint32Array(want.buffer);
  const all = new Uint32Array(points.ids.buffer, points.ids.byteOffset, points.length * 4);
  for (let i = 0, w = 0; i < points.length; i++, w += 4) {
    if (all[w] === words[0] && all[w + 1] === words[1] && all[w + 2] === words[2] && all[w + 3] === words[3]) return i;
  }
  return -1;
}

function drawRoute() {
  const stops = Array.from(route).filter((i) => i >= 0 && i < xs.length);
  if (stops.length < 2) return;
  octx.beginPath();
  stops.forEach((i, n) => (n ? octx.lineTo(screenX(i), screenY(i)) : octx.moveTo(screenX(i), screenY(i))));
  octx.lineWidth = 2;
  octx.strokeStyle = strokes.ring;
  octx.stroke();
  for (const [n, i] of stops.entries()) {
    octx.beginPath();
    octx.arc(screenX(i), screenY(i), n === 0 || n === stops.length - 1 ? 6 : 3.5, 0, 2 * Math.PI);
    octx.fillStyle = n === 0 || n === stops.length - 1 ? strokes.ring : entries[colourOf[i]].colour;
    octx.fill();
    octx.stroke();
  }
}

/** Size the canvases to the figure (square on narrow screens) and place every point in unzoomed CSS px. */
function layout() {
  const width = wrap.clientWidth;
  if (!width || !points.length) return;
  const shape = width < NARROW_PX ? LAYOUTS.narrow : LAYOUTS.wide;
  const height = Math.round(width * shape.ratio);
  const dpr = window.devicePixelRatio || 1;
  if (width === size.width && height === size.height && dpr === size.dpr) return;
  const touchRadius = width < NARROW_PX && points.length <= 2000 ? 9 : radius;
  size = { width, height, pad: shape.pad + touchRadius, dpr };
  radius = touchRadius;
  for (const target of [canvas, overlay, cache]) {
    target.width = Math.round(width * dpr);
    target.height = Math.round(height * dpr);
  }
  canvas.style.height = `${height}px`;
  overlay.style.height = `${height}px`;
  wrap.dataset.pad = String(size.pad);
  const n = points.length;
  xs = new Float32Array(n);
  ys = new Float32Array(n);
  const spanX = width - 2 * size.pad;
  const spanY = height - 2 * size.pad;
  for (let i = 0; i < n; i++) {
    xs[i] = size.pad + ((points.x[i] + 1) / 2) * spanX;
    ys[i] = size.pad + ((1 - points.y[i]) / 2) * spanY;
  }
  buildGrid();
  draw();
}

/** Point indices grouped by legend entry (a counting sort), so that a drawing visits each point once. */
function groupByColour(of, count) {
  const start = new Int32Array(count + 1);
  for (let i = 0; i < of.length; i++) start[of[i] + 1]++;
  for (let e = 0; e < count; e++) start[e + 1] += start[e];
  const fill = start.slice(0, count);
  const order = new Int32Array(of.length);
  for (let i = 0; i < of.length; i++) order[fill[of[i]]++] = i;
  return { order, start };
}

function buildGrid() {
  const cols = Math.max(1, Math.ceil(size.width / CELL_PX));
  const rows = Math.max(1, Math.ceil(size.height / CELL_PX));
  const n = xs.length;
  const cellOf = new Int32Array(n);
  const start = new Int32Array(cols * rows + 1);
  for (let i = 0; i < n; i++) {
    const c = Math.min(cols - 1, Math.max(0, Math.floor(xs[i] / CELL_PX)));
    const r = Math.min(rows - 1, Math.max(0, Math.floor(ys[i] / CELL_PX)));
    cellOf[i] = r * cols + c;
    start[cellOf[i] + 1]++;
  }
  for (let cell = 0; cell < cols * rows; cell++) start[cell + 1] += start[cell];
  const fill = start.slice(0, cols * rows);
  const items = new Int32Array(n);
  for (let i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
  grid = { cols, rows, start, items };
}

function dotRadius() {
  return radius * Math.min(Math.sqrt(view.k), 4);
}

function screenX(i) {
  return xs[i] * view.k + view.tx;
}

function screenY(i) {
  return ys[i] * view.k + view.ty;
}

/** Run `paint` as a named entry of the page's performance timeline (bench/map_browser.py reads them). */
function timed(name, paint) {
  const start = performance.now();
  paint();
  performance.measure(name, { start, end: performance.now() });
}

function draw() {
  timed("map-draw", drawAll);
}

/** Every point, one path per colour: squares when there are many (fast), circles when few. */
function drawAll() {
  const { width, height, dpr } = size;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  drawAxes(ctx);
  const r = dotRadius();
  const round = points.length <= 5000;
  if (!round) {
    drawPixels(r);
  } else {
    drawPaths(r);
  }
  cctx.setTransform(1, 0, 0, 1, 0, 0);
  cctx.clearRect(0, 0, cache.width, cache.height);
  cctx.drawImage(canvas, 0, 0);
  drawn = { ...view };
  wrap.dataset.view = `${view.k},${view.tx},${view.ty}`;
  drawOverlay();
}

/** Many points: squares written straight into the pixels (one pass, no path to rasterise), then the axes. */
function drawPixels(r) {
  const width = canvas.width;
  const height = canvas.height;
  const image = ctx.createImageData(width, height);
  const pixels = new Uint32Array(image.data.buffer);
  const side = Math.max(2, Math.round(2 * r * size.dpr));
  const half = side / 2;
  const { k, tx, ty } = view;
  const scale = size.dpr;
  const { order, start } = byColour;
  const background = new Uint8Array(4);
  for (let e = 0; e < entries.length; e++) {
    const [red, green, blue] = entries[e].rgb;
    const alpha = highlighted < 0 || highlighted === e ? 235 : 31;
    // Little-endian RGBA; a dimmed point is pre-blended with nothing behind it (transparent canvas).
    background[0] = red;
    background[1] = green;
    background[2] = blue;
    background[3] = alpha;
    const colour = new Uint32Array(background.buffer)[0];
    for (let j = start[e]; j < start[e + 1]; j++) {
      const i = order[j];
      const x0 = Math.round((xs[i] * k + tx) * scale - half);
      const y0 = Math.round((ys[i] * k + ty) * scale - half);
      if (x0 >= width || y0 >= height || x0 + side <= 0 || y0 + side <= 0) continue;
      const xa = Math.max(0, x0);
      const xb = Math.min(width, x0 + side);
      const yb = Math.min(height, y0 + side);
      for (let y = Math.max(0, y0); y < yb; y++) pixels.fill(colour, y * width + xa, y * width + xb);
    }
  }
  ctx.putImageData(image, 0, 0);
  ctx.setTransform(size.dpr, 0, 0, size.dpr, 0, 0);
  drawAxes(ctx);
}

/** Few points: one path of circles per colour. */
function drawPaths(r) {
  const { k, tx, ty } = view;
  const { width, height } = size;
  const { order, start } = byColour;
  for (let e = 0; e < entries.length; e++) {
    ctx.beginPath();
    for (let j = start[e]; j < start[e + 1]; j++) {
      const i = order[j];
      const x = xs[i] * k + tx;
      const y = ys[i] * k + ty;
      if (x < -r || y < -r || x > width + r || y > height + r) continue;
      ctx.moveTo(x + r, y);
      ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
    ctx.globalAlpha = highlighted < 0 || highlighted === e ? 0.92 : 0.12;
    ctx.fillStyle = entries[e].colour;
    ctx.fill();
  }
  ctx.globalAlpha = 1;
}

function drawAxes(target) {
  const { width, height, pad } = size;
  const midX = (pad + (width - pad)) / 2;
  const midY = (pad + (height - pad)) / 2;
  target.save();
  target.strokeStyle = strokes.axis;
  target.setLineDash([5, 5]);
  target.lineWidth = 1.5;
  target.beginPath();
  target.moveTo(0, midY * view.k + view.ty);
  target.lineTo(width, midY * view.k + view.ty);
  target.moveTo(midX * view.k + view.tx, 0);
  target.lineTo(midX * view.k + view.tx, height);
  target.stroke();
  target.restore();
}

function drawMoved() {
  timed("map-pan-frame", drawShifted);
}

/** A pan frame: move the last full drawing; the full drawing follows once the pointer rests. */
function drawShifted() {
  const { width, height, dpr } = size;
  const dx = view.tx - drawn.tx;
  const dy = view.ty - drawn.ty;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, width * dpr, height * dpr);
  ctx.drawImage(cache, Math.round(dx * dpr), Math.round(dy * dpr));
  wrap.dataset.view = `${view.k},${view.tx},${view.ty}`;
  drawOverlay();
}

function drawOverlay() {
  const { width, height, dpr } = size;
  octx.setTransform(dpr, 0, 0, dpr, 0, 0);
  octx.clearRect(0, 0, width, height);
  drawRoute();
  if (active < 0) return;
  const x = screenX(active);
  const y = screenY(active);
  const r = Math.max(dotRadius(), 3);
  octx.beginPath();
  octx.arc(x, y, r + 4, 0, 2 * Math.PI);
  octx.lineWidth = 2.5;
  octx.strokeStyle = strokes.ring;
  octx.stroke();
  octx.beginPath();
  octx.arc(x, y, r, 0, 2 * Math.PI);
  octx.fillStyle = entries[colourOf[active]].colour;
  octx.fill();
}

function schedule(full) {
  if (full) {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
      if (active >= 0) placeTooltip();
    });
    return;
  }
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    drawMoved();
    if (active >= 0) placeTooltip();
  });
}

/** The point nearest to a spot on screen within reach of a pointer, or -1. */
function pointAt(clientX, clientY, touch) {
  if (!grid) return -1;
  const box = overlay.getBoundingClientRect();
  const sx = clientX - box.left;
  const sy = clientY - box.top;
  const reach = Math.max(dotRadius() + (touch ? 10 : 4), 6);
  const bx = (sx - view.tx) / view.k;
  const by = (sy - view.ty) / view.k;
  const breach = reach / view.k;
  const c0 = Math.max(0, Math.floor((bx - breach) / CELL_PX));
  const c1 = Math.min(grid.cols - 1, Math.floor((bx + breach) / CELL_PX));
  const r0 = Math.max(0, Math.floor((by - breach) / CELL_PX));
  const r1 = Math.min(grid.rows - 1, Math.floor((by + breach) / CELL_PX));
  let best = -1;
  let bestDistance = breach * breach;
  for (let r = r0; r <= r1; r++) {
    for (let c = c0; c <= c1; c++) {
      const cell = r * grid.cols + c;
      for (let j = grid.start[cell]; j < grid.start[cell + 1]; j++) {
        const i = grid.items[j];
        if (highlighted >= 0 && colourOf[i] !== highlighted) continue;
        const distance = (xs[i] - bx) ** 2 + (ys[i] - by) ** 2;
        if (distance <= bestDistance) {
          best = i;
          bestDistance = distance;
        }
      }
    }
  }
  return best;
}

/** The nearest point from `from` whose direction is within 60° of (dx, dy) on screen, or -1. */
function neighbour(from, dx, dy) {
  let best = -1;
  let bestScore = Infinity;
  const x0 = xs[from];
  const y0 = ys[from];
  for (let i = 0; i < xs.length; i++) {
    if (i === from || (highlighted >= 0 && colourOf[i] !== highlighted)) continue;
    const ex = xs[i] - x0;
    const ey = ys[i] - y0;
    const along = ex * dx + ey * dy;
    if (along <= 0) continue;
    const distance = Math.hypot(ex, ey);
    if (along < distance * 0.5) continue; // outside the 60° cone
    const score = distance * (2 - along / distance); // nearer and straighter first
    if (score < bestScore) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

/** The point nearest to the middle of the view (where keyboard focus starts). */
function central() {
  const bx = (size.width / 2 - view.tx) / view.k;
  const by = (size.height / 2 - view.ty) / view.k;
  let best = -1;
  let bestDistance = Infinity;
  for (let i = 0; i < xs.length; i++) {
    if (highlighted >= 0 && colourOf[i] !== highlighted) continue;
    const distance = (xs[i] - bx) ** 2 + (ys[i] - by) ** 2;
    if (distance < bestDistance) {
      best = i;
      bestDistance = distance;
    }
  }
  return best;
}

// ---- Zoom and pan ----------------------------------------------------------------------------------------------

function zoomAt(factor, sx, sy) {
  const k = Math.min(MAX_ZOOM, Math.max(1, view.k * factor));
  const scale = k / view.k;
  view = { k, tx: sx - (sx - view.tx) * scale, ty: sy - (sy - view.ty) * scale };
  if (k === 1) view = { k: 1, tx: 0, ty: 0 };
  schedule(true);
}

function panBy(dx, dy, { settle = true } = {}) {
  view = { ...view, tx: view.tx + dx, ty: view.ty + dy };
  schedule(false);
  clearTimeout(settleTimer);
  if (settle) settleTimer = setTimeout(() => schedule(true), 120);
}

function keepInView(i) {
  const margin = 24;
  const x = screenX(i);
  const y = screenY(i);
  const dx = x < margin ? margin - x : x > size.width - margin ? size.width - margin - x : 0;
  const dy = y < margin ? margin - y : y > size.height - margin ? size.height - margin - y : 0;
  if (dx || dy) {
    view = { ...view, tx: view.tx + dx, ty: view.ty + dy };
    schedule(true);
  }
}

// ---- Tooltip ---------------------------------------------------------------------------------------------------

function describe(i) {
  return `${points.titles[i]} — ${points.artists[i] || "Unknown artist"}`;
}

function showTooltip(i, { touch = false, announce = false } = {}) {
  active = i;
  const labels = MODES[mode];
  tooltipTitle.textContent = describe(i);
  tooltipGroup.textContent = `${labels.label}: ${groupOf(i)}`;
  tooltipHint.hidden = !touch;
  tooltip.hidden = false;
  wrap.dataset.activeSong = pointId(i);
  if (announce) announcer.textContent = `${describe(i)}. ${labels.label}: ${groupOf(i)}. Enter opens it.`;
  placeTooltip();
  drawOverlay();
}

function placeTooltip() {
  // Above the point, kept inside the map; below it when there is no room above.
  const x = screenX(active);
  const y = screenY(active);
  const r = dotRadius();
  const gap = 10;
  const left = Math.min(Math.max(x - tooltip.offsetWidth / 2, 4), size.width - tooltip.offsetWidth - 4);
  let top = y - r - tooltip.offsetHeight - gap;
  if (top < 0) top = y + r + gap;
  tooltip.style.left = `${Math.max(left, 0)}px`;
  tooltip.style.top = `${top}px`;
}

function hideTooltip() {
  active = -1;
  tooltip.hidden = true;
  delete wrap.dataset.activeSong;
  if (size.width) drawOverlay();
}

function open(i) {
  window.location.assign(songUrl(config.urls.songPage, config.songIdPlaceholder, pointId(i)));
}

overlay.addEventListener("pointerdown", (event) => {
  lastPointer = event.pointerType;
  activeAtPointerDown = active;
  drag = { x: event.clientX, y: event.clientY, moved: false, id: event.pointerId };
  overlay.setPointerCapture(event.pointerId);
});
overlay.addEventListener("pointermove", (event) => {
  if (drag && drag.id === event.pointerId) {
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (drag.moved || Math.hypot(dx, dy) > 4) {
      drag.moved = true;
      drag.x = event.clientX;
      drag.y = event.clientY;
      overlay.classList.add("is-panning");
      panBy(dx, dy);
      return;
    }
  }
  if (event.pointerType === "touch" || drag?.moved) return; // a tap names the song in the click handler
  const i = pointAt(event.clientX, event.clientY, false);
  if (i !== active) {
    if (i >= 0) showTooltip(i);
    else hideTooltip();
  }
  overlay.classList.toggle("is-pointing", i >= 0);
});
overlay.addEventListener("pointerup", (event) => {
  const moved = drag?.moved;
  drag = null;
  overlay.classList.remove("is-panning");
  if (moved) return;
  const touch = event.pointerType === "touch";
  const i = pointAt(event.clientX, event.clientY, touch);
  if (i < 0) {
    if (touch) hideTooltip();
    return;
  }
  // A first tap on a touch screen names the song; tapping the same song again opens it.
  if (touch && activeAtPointerDown !== i) {
    showTooltip(i, { touch: true });
    return;
  }
  open(i);
});
overlay.addEventListener("pointerleave", (event) => {
  if (event.pointerType === "touch" || drag) return;
  overlay.classList.remove("is-pointing");
  if (document.activeElement !== overlay) hideTooltip();
});
overlay.addEventListener(
  "wheel",
  (event) => {
    event.preventDefault();
    const box = overlay.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  },
  { passive: false },
);
overlay.addEventListener("focus", () => {
  if (active < 0 && lastPointer !== "touch") {
    const i = central();
    if (i >= 0) showTooltip(i, { announce: true });
  }
});
overlay.addEventListener("blur", () => hideTooltip());
overlay.addEventListener("keydown", (event) => {
  const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (event.key in steps) {
    event.preventDefault();
    const from = active >= 0 ? active : central();
    const next = from >= 0 && active >= 0 ? neighbour(from, ...steps[event.key]) : from;
    if (next >= 0) {
      showTooltip(next, { announce: true });
      keepInView(next);
    }
  } else if (event.key === "Enter" && active >= 0) {
    event.preventDefault();
    open(active);
  } else if (event.key === "+" || event.key === "=") {
    zoomAt(1.5, active >= 0 ? screenX(active) : size.width / 2, active >= 0 ? screenY(active) : size.height / 2);
  } else if (event.key === "-") {
    zoomAt(1 / 1.5, size.width / 2, size.height / 2);
  } else if (event.key === "0") {
    view = { k: 1, tx: 0, ty: 0 };
    schedule(true);
  }
});
document.addEventListener("keydown", (event) => {
  lastPointer = "";
  if (event.key === "Escape" && active >= 0) hideTooltip();
});

document.getElementById("map-zoom-in").addEventListener("click", () => zoomAt(1.5, size.width / 2, size.height / 2));
document.getElementById("map-zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, size.width / 2, size.height / 2));
document.getElementById("map-zoom-reset").addEventListener("click", () => {
  view = { k: 1, tx: 0, ty: 0 };
  schedule(true);
});

// ---- Legend and colour toggle ----------------------------------------------------------------------------------

legend.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest(".map__legend-item") : null;
  if (!button) return;
  const number = Number(button.dataset.entry);
  highlighted = highlighted === number ? -1 : number;
  for (const other of legend.querySelectorAll(".map__legend-item")) {
    other.setAttribute("aria-pressed", String(Number(other.dataset.entry) === highlighted));
  }
  wrap.dataset.highlighted = highlighted < 0 ? "" : entries[highlighted].name;
  if (active >= 0 && highlighted >= 0 && colourOf[active] !== highlighted) hideTooltip();
  draw();
});

for (const radio of radios) {
  radio.addEventListener("change", () => {
    if (!radio.checked) return;
    mode = radio.value === "tag" ? "tag" : "album";
    const url = new URL(window.location.href);
    if (mode === "album") url.searchParams.delete("colour_by");
    else url.searchParams.set("colour_by", mode);
    window.history.replaceState(null, "", url);
    load();
  });
}
document.getElementById("map-retry").addEventListener("click", load);
new ResizeObserver(() => layout()).observe(wrap);

for (const radio of radios) radio.checked = radio.value === mode;
load();
