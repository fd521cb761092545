// One shared <audio> element behind every row's play button, shown in a "now playing" bar while in use.
// A row's button toggles play and pause; the button and its row show which song is playing.
// Only one audio element on a page plays at a time.

import { el, icon } from "./common.js";
import { toast } from "./toast.js";

// Whichever audio element starts, every other one on the page pauses.
document.addEventListener(
  "play",
  (event) => {
    for (const audio of document.querySelectorAll("audio")) {
      if (audio !== event.target && !audio.paused) audio.pause();
    }
  },
  true,
);

const bar = document.getElementById("now-playing");
const audio = document.getElementById("shared-player");
const titleNode = document.getElementById("now-playing-title");
const closeButton = document.getElementById("now-playing-close");

let current = null; // {id, src, title}
const buttons = new Set();

function stateFor(id) {
  if (!current || current.id !== id) return "paused";
  if (audio.paused) return "paused";
  return audio.readyState < 3 && !audio.ended ? "loading" : "playing";
}

function render(button) {
  const { songId, songTitle: title } = button.dataset;
  const state = stateFor(songId);
  const active = state !== "paused";
  button.dataset.state = state;
  button.setAttribute("aria-label", `${active ? "Pause" : "Play"} ${title}`);
  button.replaceChildren(icon(active ? "pause" : "play"));
  const row = button.parentElement?.closest("[data-song-id]");
  if (row) {
    row.classList.toggle("is-playing", active);
    row.classList.toggle("is-current", Boolean(current && current.id === songId));
  }
}

function renderAll() {
  for (const button of buttons) {
    if (button.isConnected) render(button);
    else buttons.delete(button);
  }
  if (bar) bar.hidden = !current;
  document.body.classList.toggle("has-now-playing", Boolean(current));
}

function toggle(song) {
  if (!audio) return;
  if (current && current.id === song.id) {
    if (audio.paused) audio.play().catch(() => {});
    else audio.pause();
    return;
  }
  current = song;
  audio.src = song.src;
  if (titleNode) titleNode.textContent = song.title;
  audio.play().catch(() => {}); // failures arrive as an "error" event, handled below
  renderAll();
}

if (audio) {
  for (const type of ["play", "playing", "pause", "ended", "waiting", "canplay", "emptied"]) {
    audio.addEventListener(type, renderAll);
  }
  audio.addEventListener("error", () => {
    if (!current) return;
    toast(`“${current.title}” could not be played; the link may have expired — reload the page.`, { kind: "error" });
    current = null;
    audio.removeAttribute("src");
    renderAll();
  });
}

closeButton?.addEventListener("click", () => {
  audio.pause();
  current = null;
  audio.removeAttribute("src");
  audio.load();
  renderAll();
});

/** A play/pause button for one song; put it inside the song's row (an element with data-song-id). */
export function playButton({ id, src, title }) {
  const button = el("button", "play-button");
  button.type = "button";
  bindPlayButton(button, { id, src, title });
  return button;
}

/** Wire an existing button (server-rendered with data-play-src) or a new one. */
export function bindPlayButton(button, { id, src, title } = {}) {
  button.dataset.songId = id || button.dataset.songId;
  button.dataset.songTitle = title || button.dataset.songTitle;
  button.dataset.playSrc = src || button.dataset.playSrc;
  button.addEventListener("click", () =>
    toggle({ id: button.dataset.songId, src: button.dataset.playSrc, title: button.dataset.songTitle }),
  );
  buttons.add(button);
  render(button);
  queueMicrotask(() => render(button)); // once the caller has put the button in its row, mark the row too
  return button;
}
