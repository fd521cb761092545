// Helpers shared by every page: JSON API calls with CSRF, DOM building, formatting and audio file checks.
// Everything user-provided is written with textContent; nothing here needs inline script or style.

export function readConfig(elementId) {
  const node = document.getElementById(elementId);
  return node ? JSON.parse(node.textContent) : {};
}

// Controls that do nothing without their script are rendered disabled; a page enables them once wired.
export function enableScriptedControls(root = document) {
  for (const control of root.querySelectorAll("[data-needs-script]")) control.disabled = false;
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function describeError(data, status) {
  if (data && typeof data.detail === "string") return data.detail;
  if (data && typeof data === "object") {
    const parts = [];
    for (const [field, messages] of Object.entries(data)) {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    if (parts.length) return parts.join(" ");
  }
  if (status === 413) return "The file is too large for the server.";
  if (status >= 500) return `The server had a problem (${status}); try again in a moment.`;
  return `The server answered ${status}.`;
}

/**
 * Call the JSON API. `body` is sent as JSON, `form` (a FormData) as multipart; non-GET requests carry the CSRF token.
 * Resolves with the parsed answer; rejects with an ApiError whose message a person can act on.
 */
export async function api(url, { method = "GET", body, form, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: form !== undefined ? form : body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
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

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  play: "M8 5.5v13a1 1 0 0 0 1.5.86l11-6.5a1 1 0 0 0 0-1.72l-11-6.5A1 1 0 0 0 8 5.5Z",
  pause: "M7 5h3.5v14H7zM13.5 5H17v14h-3.5z",
};

/** A small inline SVG icon (decorative: hidden from assistive technology). */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon icon--${name}`);
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

/** "Title" or the file name, and "Artist · Album · 3:05" for a song as the API describes it. */
export function songTitle(song) {
  return song.title || song.original_file_name;
}

export function songMeta(song) {
  const meta = [song.artist || "Unknown artist"];
  if (song.album) meta.push(song.album);
  const duration = formatDuration(song.duration_seconds);
  if (duration) meta.push(duration);
  return meta.join(" · ");
}

/** Swap the placeholder id in a URL template for a real song id. */
export function songUrl(template, placeholder, songId) {
  return template.replace(placeholder, songId);
}

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

export const ACCEPT_HINT = "MP3, WAV, FLAC, OGG, Opus, AAC, M4A, WebM or AIFF";

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot === -1 ? "" : name.slice(dot + 1).toLowerCase();
}

/** The content type to declare for a file, or an error message saying why it cannot be sent. */
export function checkAudioFile(file, { accepted, maxMb }) {
  const reported = (file.type || "").split(";")[0].trim().toLowerCase();
  const fromExtension = EXTENSION_TYPES[extensionOf(file.name)];
  const contentType = accepted.has(reported) ? reported : fromExtension;
  if (!contentType) {
    const what = reported ? `a ${reported} file` : "not a recognised audio file";
    return { error: `Not accepted: this is ${what}. Choose ${ACCEPT_HINT}.` };
  }
  if (file.size === 0) return { error: "Not accepted: the file is empty." };
  if (file.size > maxMb * 1024 * 1024) {
    return { error: `Too large: ${formatBytes(file.size)}; the limit is ${maxMb} MB.` };
  }
  return { contentType };
}

/**
 * Make `zone` a drop target and a keyboard-operable button that opens `input`'s file picker.
 * `onFiles` receives the dropped or chosen FileList.
 */
export function fileDropTarget(zone, input, onFiles, { extraOpeners = [] } = {}) {
  const openPicker = () => input.click();
  zone.addEventListener("click", openPicker);
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openPicker();
    }
  });
  for (const opener of extraOpeners) opener.addEventListener("click", openPicker);

  input.addEventListener("change", () => {
    if (input.files && input.files.length) onFiles(input.files);
    input.value = ""; // so choosing the same file again still fires change
  });

  const carriesFiles = (event) =>
    Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes("Files");

  let dragDepth = 0;
  zone.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    zone.classList.add("is-dragging");
  });
  zone.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) zone.classList.remove("is-dragging");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    zone.classList.remove("is-dragging");
    if (event.dataTransfer && event.dataTransfer.files.length) onFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (carriesFiles(event) && !zone.contains(event.target)) {
        event.preventDefault();
        if (type === "dragover") event.dataTransfer.dropEffect = "none";
      }
    });
  }
}

// Pages that send one audio clip at a time (find similar, identify): a newer clip aborts the request of the one
// before, and the busy state and the error box always follow the request that is current.
export function clipSender({ zone, progress, progressText, errorBox, busyRegion, limits }) {
  let inFlight = null;

  function showError(message) {
    errorBox.hidden = false;
    errorBox.textContent = message;
  }

  function setBusy(busy, text = "") {
    progress.hidden = !busy;
    progressText.textContent = text;
    zone.classList.toggle("is-busy", busy); // still usable: a new clip replaces the one being sent
    busyRegion.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // The first file, or null (with the reason shown) when it is not an audio file the server would take.
  function acceptable(files) {
    const file = files[0];
    const checked = checkAudioFile(file, limits);
    if (checked.error) {
      showError(`${file.name}: ${checked.error}`);
      return null;
    }
    return file;
  }

  async function send(clip, url, { fields = {}, onResult, onError }) {
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    errorBox.hidden = true;
    setBusy(true, `Listening to ${clip.name} (${formatBytes(clip.size)})…`);
    const form = new FormData();
    form.append("clip", clip, clip.name);
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    try {
      const data = await api(url, { method: "POST", form, signal: controller.signal });
      if (inFlight === controller) onResult(data);
    } catch (error) {
      if (inFlight !== controller || error.name === "AbortError") return;
      onError(error);
    } finally {
      if (inFlight === controller) {
        setBusy(false);
        inFlight = null;
      }
    }
  }

  return { acceptable, send, showError };
}
