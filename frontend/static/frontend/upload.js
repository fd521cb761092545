// Drag-and-drop uploads straight to storage, with real progress, at most a few at once, ingest status polling,
// retry, and toasts when a song is ready or fails.

import { api, checkAudioFile, el, fileDropTarget, formatBytes, songUrl } from "./common.js";
import { toast } from "./toast.js";

const POLL_MS = 1000;
const POLL_ERROR_MS = 3000;
const TERMINAL = new Set(["ready", "failed", "rejected", "error"]);
const SONG_STATUS_TEXT = {
  pending_upload: "Waiting for upload",
  uploaded: "Queued for analysis…",
  processing: "Analysing audio…",
  ready: "Ready",
  failed: "Failed",
};

/** onSongChanged() is called whenever a song appears in the catalog or changes status there. */
export function initUploads(config, { onSongChanged = () => {} } = {}) {
  const limits = { accepted: new Set(config.acceptedContentTypes), maxMb: config.maxUploadMb };
  const parallel = config.parallelUploads || 3;
  const uploadList = document.getElementById("upload-list");
  const clearButton = document.getElementById("clear-finished");
  const link = (id) => songUrl(config.urls.songPage, config.songIdPlaceholder, id);
  const apiUrl = (template, id) => songUrl(template, config.songIdPlaceholder, id);

  const uploads = [];
  const waiting = [];
  let active = 0;

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
      const open = el("a", "upload__link", "Open song →");
      open.href = link(item.songId);
      item.ui.actions.append(open);
    }
    if (state === "failed" || state === "error") {
      const retry = el("button", "button button--small", "Retry");
      retry.type = "button";
      retry.setAttribute("aria-label", `Retry ${item.file.name}`);
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

  function addFiles(fileList) {
    for (const file of Array.from(fileList)) {
      const item = { file, ui: createRow(file), songId: null, sent: false, state: "new" };
      uploads.push(item);
      const checked = checkAudioFile(file, limits);
      if (checked.error) {
        setState(item, "rejected", checked.error);
        toast(`${file.name} was not added. ${checked.error}`, { kind: "error" });
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
    while (active < parallel && waiting.length) {
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
      const song = await api(apiUrl(config.urls.songUploaded, item.songId), { method: "POST" });
      onSongChanged();
      applySong(item, song);
    } catch (error) {
      setState(item, "error", error.message);
      toast(`${item.file.name}: ${error.message}`, { kind: "error" });
    }
  }

  function applySong(item, song) {
    if (song.status === "ready") {
      setState(item, "ready", "Ready");
      toast(`“${song.title || item.file.name}” is ready.`, {
        link: { href: link(item.songId), text: "Open song" },
      });
      onSongChanged();
    } else if (song.status === "failed") {
      const reason = song.failure_reason || "no reason was given.";
      setState(item, "failed", `Failed: ${reason}`);
      toast(`${item.file.name} failed: ${reason}`, { kind: "error" });
      onSongChanged();
    } else {
      setState(item, song.status, SONG_STATUS_TEXT[song.status] || song.status);
      window.setTimeout(() => poll(item), POLL_MS);
    }
  }

  async function poll(item) {
    try {
      applySong(item, await api(apiUrl(config.urls.songDetail, item.songId)));
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
        applySong(item, await api(apiUrl(config.urls.songRetry, item.songId), { method: "POST" }));
      } catch (error) {
        setState(item, "failed", `Retry failed: ${error.message}`);
        toast(`${item.file.name}: retry failed: ${error.message}`, { kind: "error" });
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

  fileDropTarget(document.getElementById("dropzone"), document.getElementById("file-input"), addFiles, {
    extraOpeners: [document.getElementById("pick-files")],
  });
}
