// The catalog map: every ready song as a point of an SVG scatter (a PCA of the embeddings, computed by the server),
// coloured by album or by top sound tag. Each point is a link: hover or focus names the song, a click opens it; on
// touch screens the first tap names it and a second tap opens it. Titles are written with textContent only, and the
// colours come from classes in map.css, so the page needs no inline script or style.

import { api, el, readConfig, songUrl } from "./common.js";

const SVG_NS = "http://www.w3.org/2000/svg";
// Colours in map.css: map-c0 … map-c8, then map-c-other (groups beyond the palette) and map-c-unknown (hollow).
const PALETTE_SIZE = 9;
// Below this width (CSS px) the map is drawn square, so points stay large enough to touch.
const NARROW_PX = 560;
const LAYOUTS = {
  wide: { width: 800, height: 480, pad: 18, radius: 6.5 },
  narrow: { width: 400, height: 400, pad: 14, radius: 9 },
};
const MODES = {
  album: { label: "Album", plural: "albums", heading: "Albums" },
  tag: { label: "Sound tag", plural: "sound tags", heading: "Top sound tag" },
};
const UNKNOWN = "Unknown";

const config = readConfig("map-config");
const canvas = document.getElementById("map-canvas");
const svg = document.getElementById("map-svg");
const figure = document.getElementById("map-figure");
const loading = document.getElementById("map-loading");
const errorBox = document.getElementById("map-error");
const errorText = document.getElementById("map-error-text");
const emptyBox = document.getElementById("map-empty");
const emptyText = document.getElementById("map-empty-text");
const summary = document.getElementById("map-summary");
const axes = document.getElementById("map-axes");
const legend = document.getElementById("map-legend");
const legendHeading = document.getElementById("map-legend-heading");
const tooltip = document.getElementById("map-tooltip");
const tooltipTitle = document.getElementById("map-tooltip-title");
const tooltipGroup = document.getElementById("map-tooltip-group");
const tooltipHint = document.getElementById("map-tooltip-hint");
const radios = Array.from(document.querySelectorAll('input[name="colour_by"]'));

let layout = null;
let nodes = []; // {point, link, legendKey}
let nodeByLink = new WeakMap();
let ring = null;
let active = null; // the node whose tooltip shows
let highlighted = ""; // the legend key whose points stand out, or ""
let mode = config.colourBy === "tag" ? "tag" : "album";
let inFlight = null;
let lastPointer = "";
let activeAtPointerDown = null;

function svgEl(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

function percent(share) {
  return `${Math.round(share * 100)}%`;
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
  svg.setAttribute("aria-busy", state === "loading" ? "true" : "false");
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

// ---- Drawing ---------------------------------------------------------------------------------------------------

/** Which groups get a colour of their own: all when they fit the palette, else the largest ones. */
function colourGroups(points, groups, labels) {
  const counts = new Map();
  for (const point of points) counts.set(point.group, (counts.get(point.group) || 0) + 1);
  const named = groups.filter((group) => group !== UNKNOWN);
  let coloured = named;
  if (named.length > PALETTE_SIZE) {
    const largest = [...named]
      .sort((a, b) => counts.get(b) - counts.get(a) || a.localeCompare(b))
      .slice(0, PALETTE_SIZE - 1);
    coloured = named.filter((group) => largest.includes(group)); // keep the API's (sorted) order
  }
  const classes = new Map(coloured.map((group, index) => [group, `map-c${index}`]));
  const keyOf = (group) => (classes.has(group) ? group : group === UNKNOWN ? "unknown:" : "other:");
  const classOf = (key) => classes.get(key) || (key === "unknown:" ? "map-c-unknown" : "map-c-other");
  const entries = coloured.map((group) => ({ key: group, name: group, count: counts.get(group) }));
  const others = named.filter((group) => !classes.has(group));
  if (others.length) {
    const count = others.reduce((sum, group) => sum + counts.get(group), 0);
    entries.push({ key: "other:", name: `Other ${labels.plural}`, count });
  }
  if (counts.has(UNKNOWN)) entries.push({ key: "unknown:", name: UNKNOWN, count: counts.get(UNKNOWN) });
  return { entries, keyOf, classOf };
}

function render(data) {
  const points = data.points || [];
  hideTooltip();
  if (points.length < 2) {
    nodes = [];
    svg.replaceChildren();
    setState(
      "empty",
      points.length
        ? "The map needs at least two ready songs; there is one so far."
        : "No song is ready to be mapped yet.",
    );
    return;
  }
  const labels = MODES[data.colour_by] || MODES[mode];
  const { entries, keyOf, classOf } = colourGroups(points, data.groups || [], labels);
  highlighted = "";

  // Tab order follows the picture: left to right, then top to bottom.
  const ordered = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  nodes = ordered.map((point) => {
    const legendKey = keyOf(point.group);
    const link = svgEl("a", { class: `map__point ${classOf(legendKey)}` });
    link.setAttribute("href", songUrl(config.urls.songPage, config.songIdPlaceholder, point.id));
    link.setAttribute("aria-label", `${describe(point)}. ${labels.label}: ${point.group}`);
    link.dataset.songId = point.id;
    link.append(svgEl("circle", { class: "map__hit" }), svgEl("circle", { class: "map__dot" }));
    return { point, link, legendKey };
  });
  nodeByLink = new WeakMap(nodes.map((node) => [node.link, node]));
  ring = svgEl("circle", { class: "map__ring", "aria-hidden": "true" });
  const axesGroup = svgEl("g", { class: "map__axes-lines", "aria-hidden": "true" });
  axesGroup.append(svgEl("line", { class: "map__axis map__axis--x" }), svgEl("line", { class: "map__axis map__axis--y" }));
  svg.replaceChildren(axesGroup, ...nodes.map((node) => node.link), ring);
  svg.classList.remove("is-filtered");
  setState("ready");
  layout = null;
  place();

  legendHeading.textContent = labels.heading;
  legend.replaceChildren(...entries.map((entry) => legendItem(entry, classOf(entry.key))));
  const named = (data.groups || []).filter((group) => group !== UNKNOWN).length;
  const unknown = points.filter((point) => point.group === UNKNOWN).length;
  summary.textContent =
    `${plural(points.length, "song", "songs")} by the ${data.model} model, coloured by ${labels.label.toLowerCase()}: ` +
    `${plural(named, labels.plural.replace(/s$/, ""), labels.plural)}` +
    `${unknown ? `, ${plural(unknown, "song", "songs")} without one` : ""}.`;
  const [first, second] = data.explained_variance || [0, 0];
  axes.textContent =
    `Across: the direction in which these songs differ most (${percent(first)} of their variation). ` +
    `Up: the next one (${percent(second)}).`;
}

function describe(point) {
  return `${point.title} — ${point.artist || "Unknown artist"}`;
}

function legendItem(entry, colourClass) {
  const item = el("li", "map__legend-entry");
  const button = el("button", "map__legend-item");
  button.type = "button";
  button.setAttribute("aria-pressed", "false");
  button.dataset.key = entry.key;
  const swatch = el("span", `map__swatch ${colourClass}`);
  swatch.setAttribute("aria-hidden", "true");
  const count = el("span", "map__legend-count", String(entry.count));
  count.append(el("span", "visually-hidden", entry.count === 1 ? " song" : " songs"));
  button.append(swatch, el("span", "map__legend-name", entry.name), count);
  button.title = `Show where the ${plural(entry.count, "song", "songs")} of “${entry.name}” are`;
  item.append(button);
  return item;
}

/** Position every point for the current width: wide and short, or square on narrow screens. */
function place() {
  const next = canvas.clientWidth && canvas.clientWidth < NARROW_PX ? LAYOUTS.narrow : LAYOUTS.wide;
  if (next === layout || !nodes.length) return;
  layout = next;
  const { width, height, pad, radius } = layout;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const inner = { x: pad + radius, y: pad + radius };
  const toX = (x) => inner.x + ((x + 1) / 2) * (width - 2 * inner.x);
  const toY = (y) => inner.y + ((1 - y) / 2) * (height - 2 * inner.y);
  for (const node of nodes) {
    const cx = toX(node.point.x).toFixed(2);
    const cy = toY(node.point.y).toFixed(2);
    const [hit, dot] = node.link.children;
    hit.setAttribute("cx", cx);
    hit.setAttribute("cy", cy);
    hit.setAttribute("r", radius + 6);
    dot.setAttribute("cx", cx);
    dot.setAttribute("cy", cy);
    dot.setAttribute("r", radius);
  }
  const [xAxis, yAxis] = svg.querySelectorAll(".map__axis");
  for (const [line, attributes] of [
    [xAxis, { x1: pad, x2: width - pad, y1: toY(0), y2: toY(0) }],
    [yAxis, { x1: toX(0), x2: toX(0), y1: pad, y2: height - pad }],
  ]) {
    for (const [name, value] of Object.entries(attributes)) line.setAttribute(name, String(value));
  }
  ring.setAttribute("r", radius + 4);
  if (active) showTooltip(active, { touch: !tooltipHint.hidden });
}

// ---- Tooltip ---------------------------------------------------------------------------------------------------

function nodeOf(target) {
  const link = target instanceof Element ? target.closest(".map__point") : null;
  return (link && nodeByLink.get(link)) || null;
}

function showTooltip(node, { touch = false } = {}) {
  active = node;
  const labels = MODES[mode];
  tooltipTitle.textContent = describe(node.point);
  tooltipGroup.textContent = `${labels.label}: ${node.point.group}`;
  tooltipHint.hidden = !touch;
  const dot = node.link.children[1];
  ring.setAttribute("cx", dot.getAttribute("cx"));
  ring.setAttribute("cy", dot.getAttribute("cy"));
  ring.classList.add("is-visible");
  tooltip.hidden = false;
  // Above the point, kept inside the map; below it when there is no room above.
  const box = canvas.getBoundingClientRect();
  const mark = dot.getBoundingClientRect();
  const gap = 10;
  const centre = mark.left + mark.width / 2 - box.left;
  const left = Math.min(Math.max(centre - tooltip.offsetWidth / 2, 4), box.width - tooltip.offsetWidth - 4);
  let top = mark.top - box.top - tooltip.offsetHeight - gap;
  if (top < 0) top = mark.bottom - box.top + gap;
  tooltip.style.left = `${Math.max(left, 0)}px`;
  tooltip.style.top = `${top}px`;
  svg.setAttribute("aria-describedby", "map-tooltip");
}

function hideTooltip() {
  active = null;
  tooltip.hidden = true;
  ring?.classList.remove("is-visible");
  svg.setAttribute("aria-describedby", "map-summary");
}

svg.addEventListener("pointerover", (event) => {
  if (event.pointerType === "touch") return; // a tap names the song in the click handler
  const node = nodeOf(event.target);
  if (node && node !== active) showTooltip(node);
});
svg.addEventListener("pointerleave", (event) => {
  if (event.pointerType === "touch") return;
  const focused = nodeOf(document.activeElement);
  if (focused) showTooltip(focused);
  else hideTooltip();
});
// Focus listeners sit on the wrapper: Chromium makes an <svg> with focus listeners a tab stop of its own.
canvas.addEventListener("focusin", (event) => {
  const node = nodeOf(event.target);
  if (node && lastPointer !== "touch") showTooltip(node);
});
canvas.addEventListener("focusout", (event) => {
  if (!svg.contains(event.relatedTarget)) hideTooltip();
});
svg.addEventListener("pointerdown", (event) => {
  lastPointer = event.pointerType;
  activeAtPointerDown = active;
});
svg.addEventListener("click", (event) => {
  const node = nodeOf(event.target);
  if (!node) {
    if (lastPointer === "touch") hideTooltip();
    return;
  }
  // A first tap on a touch screen names the song; tapping the same song again opens it.
  if (event.detail !== 0 && lastPointer === "touch" && activeAtPointerDown !== node) {
    event.preventDefault();
    showTooltip(node, { touch: true });
  }
});
document.addEventListener("keydown", (event) => {
  lastPointer = "";
  if (event.key === "Escape" && active) hideTooltip();
});

// ---- Legend and colour toggle ----------------------------------------------------------------------------------

legend.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest(".map__legend-item") : null;
  if (!button) return;
  highlighted = highlighted === button.dataset.key ? "" : button.dataset.key;
  for (const other of legend.querySelectorAll(".map__legend-item")) {
    other.setAttribute("aria-pressed", String(other.dataset.key === highlighted));
  }
  svg.classList.toggle("is-filtered", Boolean(highlighted));
  for (const node of nodes) node.link.classList.toggle("is-match", node.legendKey === highlighted);
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
new ResizeObserver(() => place()).observe(canvas);

for (const radio of radios) radio.checked = radio.value === mode;
load();
