// Home page: drag-and-drop uploads straight to storage, ingest status polling, and the catalog list.
// Everything user-provided is written with textContent; nothing here needs inline script or style.

const config = JSON.parse(document.getElementById("resonance-config").textContent);

const MAX_BYTES = config.maxUploadMb * 1024 * 1024;
const ACCEPTED = new Set(config.acceptedContentTypes);
const PARALLEL = config.parallelUploads || 3;
const POLL_MS = 1000;
const POLL_ERROR_MS = 3000;
const SEARCH_DEBOUNCE_MS = 250;

// Browsers often report no type (or an odd one) for audio; the extension decides then.
const EXTENSION_TYPES = {
  mp3: "audio/mpeg",
  wav: "audio/wav",
  wave: "audio/wav",
  flac: "audio/flac",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/opus",
  aac: "audio/aac",
  m4a: "audio/mp4",
  mp4: "audio/mp4",
  webm: "audio/webm",
  aif: "audio/aiff",
  aiff: "audio/aiff",
};

const SONG_STATUS_TEXT = {
  pending_upload: "Waiting for upload",
  uploaded: "Queued for analysis…",
  processing: "Analysing audio…",
  ready: "Ready",
  failed: "Failed",
};

const CATALOG_STATUS_TEXT = {
  pending_upload: "Waiting for upload",
  uploaded: "Processing",
  processing: "Processing",
  ready: "Ready",
  failed: "Failed",
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function songUrl(template, songId) {
  return template.replace(config.songIdPlaceholder, songId);
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function describeError(data, status) {
  if (data && typeof data.detail === "string") return data.detail;
  if (data && typeof data === "object") {
    const parts = [];
    for (const [field, messages] of Object.entries(data)) {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    if (parts.length) return parts.join(" ");
  }
  return `The server answered ${status}.`;
}

async function api(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError("Could not reach the server; check your connection.", 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(describeError(data, response.status), response.status);
  return data;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot === -1 ? "" : name.slice(dot + 1).toLowerCase();
}

/** The content type to declare for a file, or an error message saying why it cannot be uploaded. */
function checkFile(file) {
  const reported = (file.type || "").split(";")[0].trim().toLowerCase();
  const fromExtension = EXTENSION_TYPES[extensionOf(file.name)];
  const contentType = ACCEPTED.has(reported) ? reported : fromExtension;
  if (!contentType) {
    const what = reported ? `a ${reported} file` : "not a recognised audio file";
    return { error: `Not accepted: this is ${what}. Choose MP3, WAV, FLAC, OGG, Opus, AAC, M4A, WebM or AIFF.` };
  }
  if (file.size === 0) return { error: "Not accepted: the file is empty." };
  if (file.size > MAX_BYTES) {
    return { error: `Too large: ${formatBytes(file.size)}; the limit is ${config.maxUploadMb} MB.` };
  }
  return { contentType };
}

// ---------------------------------------------------------------------------------------------
// Upload rows

const uploadList = document.getElementById("upload-list");
const clearButton = document.getElementById("clear-finished");
const TERMINAL = new Set(["ready", "failed", "rejected", "error"]);

function createRow(file) {
  const row = el("li", "upload");
  const head = el("div", "upload__head");
  const name = el("span", "upload__name", file.name);
  name.title = file.name;
  head.append(name, el("span", "upload__size", formatBytes(file.size)));

  const progress = el("progress", "upload__progress");
  progress.max = 100;
  progress.value = 0;
  progress.setAttribute("aria-label", `Progress of ${file.name}`);

  const foot = el("div", "upload__foot");
  const status = el("span", "upload__status");
  const actions = el("span", "upload__actions");
  foot.append(status, actions);

  row.append(head, progress, foot);
  uploadList.prepend(row);
  return { row, progress, status, actions };
}

function setState(item, state, text) {
  item.state = state;
  item.ui.row.dataset.status = state;
  item.ui.status.textContent = text;
  item.ui.actions.replaceChildren();
  if (state === "ready" && item.songId) {
    const link = el("a", "upload__link", "Open song →");
    link.href = songUrl(config.urls.songPage, item.songId);
    item.ui.actions.append(link);
  }
  if (state === "failed" || state === "error") {
    const retry = el("button", "button button--small", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => retryItem(item));
    item.ui.actions.append(retry);
  }
  const progress = item.ui.progress;
  if (state === "queued" || state === "rejected") progress.value = 0;
  else if (state === "confirming" || state === "ready" || state === "failed") progress.value = 100;
  else if (state === "uploaded" || state === "processing" || state === "pending_upload") {
    progress.removeAttribute("value"); // indeterminate while the worker analyses the audio
  }
  clearButton.hidden = !uploads.some((each) => TERMINAL.has(each.state));
}

function setProgress(item, fraction) {
  const percent = Math.round(fraction * 100);
  item.ui.progress.value = percent;
  item.ui.status.textContent = `Uploading… ${percent}%`;
}

const uploads = [];
const waiting = [];
let active = 0;

function addFiles(fileList) {
  for (const file of Array.from(fileList)) {
    const item = { file, ui: createRow(file), songId: null, sent: false, state: "new" };
    uploads.push(item);
    const checked = checkFile(file);
    if (checked.error) {
      setState(item, "rejected", checked.error);
      continue;
    }
    item.contentType = checked.contentType;
    enqueue(item);
  }
}

function enqueue(item) {
  setState(item, "queued", "Waiting to upload…");
  waiting.push(item);
  pump();
}

function pump() {
  while (active < PARALLEL && waiting.length) {
    const item = waiting.shift();
    active += 1;
    upload(item).finally(() => {
      active -= 1;
      pump();
    });
  }
}

/** Send one file to its presigned URL, reporting real progress; resolves when storage accepts it. */
function sendFile(ticket, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method, ticket.url);
    let body = file;
    if (ticket.method === "POST") {
      body = new FormData();
      for (const [key, value] of Object.entries(ticket.fields || {})) body.append(key, value);
      body.append("file", file);
    }
    for (const [key, value] of Object.entries(ticket.headers || {})) xhr.setRequestHeader(key, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
        return;
      }
      let message = `storage answered ${xhr.status}`;
      try {
        const data = JSON.parse(xhr.responseText);
        if (data && data.detail) message = data.detail;
      } catch {
        const match = /<Message>([^<]*)<\/Message>/.exec(xhr.responseText || "");
        if (match) message = match[1];
      }
      reject(new Error(`Upload failed: ${message}`));
    });
    xhr.addEventListener("error", () => reject(new Error("Upload failed: the connection to storage broke.")));
    xhr.addEventListener("abort", () => reject(new Error("Upload cancelled.")));
    xhr.addEventListener("timeout", () => reject(new Error("Upload failed: storage took too long to answer.")));
    xhr.send(body);
  });
}

async function upload(item) {
  try {
    if (!item.sent) {
      setState(item, "uploading", "Starting upload…");
      const created = await api(config.urls.uploads, {
        method: "POST",
        body: { file_name: item.file.name, content_type: item.contentType, size: item.file.size },
      });
      item.songId = created.song_id;
      await sendFile(created.upload, item.file, (fraction) => setProgress(item, fraction));
      item.sent = true;
    }
    setState(item, "confirming", "Confirming upload…");
    const song = await api(songUrl(config.urls.songUploaded, item.songId), { method: "POST" });
    scheduleCatalogRefresh();
    applySong(item, song);
  } catch (error) {
    setState(item, "error", error.message);
  }
}

function applySong(item, song) {
  if (song.status === "ready") {
    setState(item, "ready", "Ready");
    scheduleCatalogRefresh();
  } else if (song.status === "failed") {
    setState(item, "failed", `Failed: ${song.failure_reason || "no reason was given."}`);
    scheduleCatalogRefresh();
  } else {
    setState(item, song.status, SONG_STATUS_TEXT[song.status] || song.status);
    window.setTimeout(() => poll(item), POLL_MS);
  }
}

async function poll(item) {
  try {
    applySong(item, await api(songUrl(config.urls.songDetail, item.songId)));
  } catch (error) {
    item.ui.status.textContent = `Checking status failed (${error.message}); trying again…`;
    window.setTimeout(() => poll(item), POLL_ERROR_MS);
  }
}

async function retryItem(item) {
  if (item.state === "failed") {
    // The file is in storage; ask for the ingest again.
    setState(item, "uploaded", "Retrying…");
    try {
      applySong(item, await api(songUrl(config.urls.songRetry, item.songId), { method: "POST" }));
    } catch (error) {
      setState(item, "failed", `Retry failed: ${error.message}`);
    }
    return;
  }
  // The upload or its confirmation did not get through: start again where it stopped.
  if (!item.sent) item.ui.progress.value = 0;
  enqueue(item);
}

clearButton.addEventListener("click", () => {
  for (let index = uploads.length - 1; index >= 0; index -= 1) {
    if (TERMINAL.has(uploads[index].state)) {
      uploads[index].ui.row.remove();
      uploads.splice(index, 1);
    }
  }
  clearButton.hidden = true;
});

// ---------------------------------------------------------------------------------------------
// Drop zone, picker and keyboard

const dropzone = document.getElementById("dropzone");
const fileInput = document.getElementById("file-input");

function openPicker() {
  fileInput.click();
}

dropzone.addEventListener("click", openPicker);
dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    openPicker();
  }
});
document.getElementById("pick-files").addEventListener("click", openPicker);

fileInput.addEventListener("change", () => {
  if (fileInput.files && fileInput.files.length) addFiles(fileInput.files);
  fileInput.value = ""; // so choosing the same file again still fires change
});

function carriesFiles(event) {
  return Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes("Files");
}

let dragDepth = 0;
dropzone.addEventListener("dragenter", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  dropzone.classList.add("is-dragging");
});
dropzone.addEventListener("dragover", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
dropzone.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropzone.classList.remove("is-dragging");
});
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropzone.classList.remove("is-dragging");
  if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
});
// A file dropped beside the zone must not make the browser navigate away to it.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => {
    if (carriesFiles(event) && !dropzone.contains(event.target)) {
      event.preventDefault();
      if (type === "dragover") event.dataTransfer.dropEffect = "none";
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Catalog list

const catalogList = document.getElementById("catalog-list");
const catalogCount = document.getElementById("catalog-count");
const catalogError = document.getElementById("catalog-error");
const pager = document.getElementById("catalog-pager");
const pageInfo = document.getElementById("page-info");
const prevButton = document.getElementById("page-prev");
const nextButton = document.getElementById("page-next");
const searchForm = document.getElementById("catalog-search");
const searchInput = document.getElementById("search-input");
const sortSelect = document.getElementById("sort-select");
const tagSelect = document.getElementById("tag-select");

const initial = new URLSearchParams(window.location.search);
const catalog = {
  search: initial.get("search") || "",
  sort: initial.get("sort") || "newest",
  tag: initial.get("tag") || "",
  page: Math.max(1, Number.parseInt(initial.get("page") || "1", 10) || 1),
};
searchInput.value = catalog.search;
if ([...sortSelect.options].some((option) => option.value === catalog.sort)) sortSelect.value = catalog.sort;

let catalogRequest = 0;

function songRow(song) {
  const item = el("li", "song-item");
  item.dataset.songId = song.id;
  const link = el("a", "song-item__link");
  link.href = songUrl(config.urls.songPage, song.id);
  link.append(el("span", "song-item__title", song.title || song.original_file_name));
  const meta = [song.artist || "Unknown artist"];
  if (song.album) meta.push(song.album);
  if (song.duration_seconds !== null && song.duration_seconds !== undefined) {
    meta.push(formatDuration(song.duration_seconds));
  }
  link.append(el("span", "song-item__meta", meta.join(" · ")));
  const badge = el("span", `status status--${song.status}`, CATALOG_STATUS_TEXT[song.status] || song.status);
  item.append(link, badge);
  return item;
}

function syncAddress() {
  const params = new URLSearchParams();
  if (catalog.search) params.set("search", catalog.search);
  if (catalog.sort !== "newest") params.set("sort", catalog.sort);
  if (catalog.tag) params.set("tag", catalog.tag);
  if (catalog.page > 1) params.set("page", String(catalog.page));
  const query = params.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}

async function loadCatalog() {
  const request = ++catalogRequest;
  const params = new URLSearchParams({ sort: catalog.sort, page: String(catalog.page) });
  if (catalog.search) params.set("search", catalog.search);
  if (catalog.tag) params.set("tag", catalog.tag);
  catalogList.setAttribute("aria-busy", "true");
  try {
    const data = await api(`${config.urls.songs}?${params}`);
    if (request !== catalogRequest) return;
    catalogError.hidden = true;
    renderCatalog(data);
  } catch (error) {
    if (request !== catalogRequest) return;
    if (error.status === 404 && catalog.page > 1) {
      catalog.page = 1; // the page went away (fewer results now); start over
      loadCatalog();
      return;
    }
    catalogError.textContent = `Could not load the catalog: ${error.message}`;
    catalogError.hidden = false;
  } finally {
    if (request === catalogRequest) catalogList.removeAttribute("aria-busy");
  }
}

function renderCatalog(data) {
  const results = data.results || [];
  catalogList.replaceChildren(...results.map(songRow));
  if (!results.length) {
    const empty = el(
      "li",
      "song-list__empty",
      catalog.search ? `No songs match “${catalog.search}”.` : "No songs yet — drop some audio above to start the catalog.",
    );
    catalogList.append(empty);
  }
  const noun = data.count === 1 ? "song" : "songs";
  catalogCount.textContent = catalog.search ? `${data.count} ${noun} matching “${catalog.search}”` : `${data.count} ${noun}`;
  // A page with a next one is full, so its length is the page size; without a next one this is the last.
  const pages = data.next ? Math.ceil(data.count / results.length) : catalog.page;
  pager.hidden = !data.next && !data.previous;
  prevButton.disabled = !data.previous;
  nextButton.disabled = !data.next;
  pageInfo.textContent = `Page ${catalog.page} of ${pages}`;
  syncAddress();
}

let refreshTimer = null;
function scheduleCatalogRefresh() {
  window.clearTimeout(refreshTimer);
  refreshTimer = window.setTimeout(loadCatalog, 150);
}

let searchTimer = null;
searchInput.addEventListener("input", () => {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(() => {
    catalog.search = searchInput.value.trim();
    catalog.page = 1;
    loadCatalog();
  }, SEARCH_DEBOUNCE_MS);
});
searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  window.clearTimeout(searchTimer);
  catalog.search = searchInput.value.trim();
  catalog.page = 1;
  loadCatalog();
});
async function loadTags() {
  try {
    const data = await api(config.urls.tags);
    const labels = (data.results || []).map((tag) => tag.label);
    if (catalog.tag && !labels.includes(catalog.tag)) labels.unshift(catalog.tag);
    for (const label of labels) {
      const option = el("option", "", label);
      option.value = label;
      tagSelect.append(option);
    }
    tagSelect.value = catalog.tag;
    tagSelect.hidden = labels.length === 0;
  } catch {
    tagSelect.hidden = true; // filtering by tag is optional; the catalog still works without it
  }
}
tagSelect.addEventListener("change", () => {
  catalog.tag = tagSelect.value;
  catalog.page = 1;
  loadCatalog();
});
loadTags();

sortSelect.addEventListener("change", () => {
  catalog.sort = sortSelect.value;
  catalog.page = 1;
  loadCatalog();
});
prevButton.addEventListener("click", () => {
  catalog.page = Math.max(1, catalog.page - 1);
  loadCatalog();
});
nextButton.addEventListener("click", () => {
  catalog.page += 1;
  loadCatalog();
});

loadCatalog();
