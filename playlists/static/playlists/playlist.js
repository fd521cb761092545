// Playlist page: rename, reorder (up/down), remove songs, delete, and play the songs in order.
// Every change is saved at once through the API; the list on the page is what was saved.

import { api, enableScriptedControls, readConfig } from "../frontend/common.js";
import { initQueuePlayer } from "../frontend/queue.js";
import { toast } from "../frontend/toast.js";

const config = readConfig("queue-config");
const list = document.getElementById("playlist-songs");
const message = document.getElementById("playlist-message");
const heading = document.getElementById("playlist-heading");
const queue = initQueuePlayer(config);

const order = () => [...list.querySelectorAll("li[data-song-id]")].map((row) => row.dataset.songId);

async function save(changes, done) {
  message.textContent = "Saving…";
  try {
    const saved = await api(config.urls.playlist, { method: "PATCH", body: changes });
    heading.textContent = saved.name;
    message.textContent = "Saved.";
    return saved;
  } catch (error) {
    message.textContent = `Not saved: ${error.message}`;
    if (done) done();
    return null;
  }
}

list.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("li");
  const before = [...list.children];
  const { action } = button.dataset;
  if (action === "up" && row.previousElementSibling) row.previousElementSibling.before(row);
  else if (action === "down" && row.nextElementSibling) row.nextElementSibling.after(row);
  else if (action === "remove") row.remove();
  else return;
  button.focus();
  await save({ songs: order() }, () => list.replaceChildren(...before)); // a refused change is undone on the page
});

document.getElementById("playlist-form").addEventListener("submit", (event) => {
  event.preventDefault();
  save({ name: document.getElementById("playlist-name").value });
});

document.getElementById("playlist-delete").addEventListener("click", async () => {
  if (!window.confirm("Delete this playlist? The songs stay in the catalog.")) return;
  try {
    await api(config.urls.playlist, { method: "DELETE" });
    window.location.assign(config.urls.playlists);
  } catch (error) {
    toast(`Could not delete the playlist: ${error.message}`, { kind: "error" });
  }
});

document.getElementById("playlist-play").addEventListener("click", async () => {
  const saved = await api(config.urls.playlist);
  queue?.playList(saved.songs);
});

enableScriptedControls(list.closest("section"));
