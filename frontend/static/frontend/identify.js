// "What song is this?": send a clip (dropped, picked or recorded; never added to the catalog) and show which
// catalog song it was cut from, where in that song it starts, and how sure the match is.

import { clipSender, el, fileDropTarget, formatDuration, readConfig, songMeta, songTitle, songUrl } from "./common.js";

const config = readConfig("identify-config");
const limits = { accepted: new Set(config.acceptedContentTypes), maxMb: config.maxClipMb };
const link = (template, id) => songUrl(template, config.songIdPlaceholder, id);

const zone = document.getElementById("clip-zone");
const input = document.getElementById("clip-input");
const recordButton = document.getElementById("record-clip");
const recordNote = document.getElementById("record-note");
const progress = document.getElementById("identify-progress");
const progressText = document.getElementById("identify-progress-text");
const errorBox = document.getElementById("identify-error");
const resultPanel = document.getElementById("result-panel");
const resultHeading = document.getElementById("result-heading");
const resultNote = document.getElementById("result-note");
const resultBox = document.getElementById("identify-result");

const RECORD_TYPE = "audio/webm";
let recorder = null;
const sender = clipSender({ zone, progress, progressText, errorBox, busyRegion: resultBox, limits });
const showError = sender.showError;

function showRecordNote(message) {
  recordNote.hidden = !message;
  recordNote.textContent = message;
}

function chooseClip(files) {
  const file = sender.acceptable(files);
  if (file) identify(file);
}

function identify(clip) {
  sender.send(clip, config.urls.identify, {
    onResult: (data) => render(clip, data),
    onError: (error) => {
      resultPanel.hidden = true;
      showError(`Could not identify ${clip.name}. ${error.message}`);
    },
  });
}

function songLink(song) {
  const anchor = el("a", "song-item__link");
  anchor.href = link(config.urls.songPage, song.id);
  anchor.append(el("span", "song-item__title", songTitle(song)), el("span", "song-item__meta", songMeta(song)));
  return anchor;
}

function render(clip, data) {
  resultPanel.hidden = false;
  resultHeading.textContent = `What “${clip.name}” is`;
  const match = data.match;
  if (!match) {
    resultNote.textContent = "";
    const none = el("div", "", "");
    none.dataset.testid = "identify-no-match";
    none.append(el("p", "", "No match."));
    if (data.detail) none.append(el("p", "muted", data.detail));
    resultBox.replaceChildren(none);
    return;
  }
  resultNote.textContent = "";
  const best = el("div", "identify-match");
  best.dataset.testid = "identify-match";
  best.dataset.songId = match.song.id;
  best.append(
    songLink(match.song),
    el("p", "", `starts at ${formatDuration(match.offset_seconds) || "0:00"} in the song`),
    el("p", "muted", `Confidence: ${Math.round(match.confidence * 100)}%`),
  );
  const parts = [best];
  if (data.runner_up) {
    const runner = el("div", "identify-runner-up");
    runner.dataset.testid = "identify-runner-up";
    runner.append(el("p", "muted", "Runner-up:"), songLink(data.runner_up.song));
    parts.push(runner);
  }
  resultBox.replaceChildren(...parts);
}

// Recording: MediaRecorder from the microphone, uploaded as clip.webm when stopped.
function recordingSupported() {
  return Boolean(window.MediaRecorder && navigator.mediaDevices?.getUserMedia);
}

function setRecording(on) {
  recordButton.textContent = on ? "Stop" : "Record";
  recordButton.setAttribute("aria-pressed", on ? "true" : "false");
}

async function startRecording() {
  showRecordNote("");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showRecordNote(`The microphone is not available (${error.message || error.name}). You can still drop or choose a clip.`);
    return;
  }
  const options = MediaRecorder.isTypeSupported?.(RECORD_TYPE) ? { mimeType: RECORD_TYPE } : {};
  try {
    recorder = new MediaRecorder(stream, options);
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    showRecordNote(`This browser cannot record audio (${error.message}). You can still drop or choose a clip.`);
    return;
  }
  const chunks = [];
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size) chunks.push(event.data);
  });
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    recorder = null;
    setRecording(false);
    showRecordNote("");
    if (!chunks.length) {
      showError("Nothing was recorded.");
      return;
    }
    identify(new File(chunks, "clip.webm", { type: RECORD_TYPE }));
  });
  recorder.start();
  setRecording(true);
  showRecordNote("Recording… hold the microphone near the music, then press Stop.");
}

recordButton.addEventListener("click", () => {
  if (recorder) recorder.stop();
  else startRecording();
});
if (!recordingSupported()) {
  recordButton.disabled = true;
  showRecordNote("This browser cannot record from the microphone here; drop or choose a clip instead.");
}

fileDropTarget(zone, input, chooseClip, { extraOpeners: [document.getElementById("pick-clip")] });
