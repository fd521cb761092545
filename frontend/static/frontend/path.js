// Path page: the songs between two songs, listed from start to end and played in order.

import { api, el, readConfig, songMeta, songTitle, songUrl } from "./common.js";
import { initQueuePlayer } from "./queue.js";

const config = readConfig("queue-config");
const list = document.getElementById("path-list");
const message = document.getElementById("path-message");
const playButton = document.getElementById("path-play");
const queue = initQueuePlayer(config);

function row(song, label) {
  const item = el("li", "song-item");
  item.dataset.songId = song.id;
  const link = el("a", "song-item__link");
  link.href = songUrl(config.urls.songPage, config.songIdPlaceholder, song.id);
  link.append(el("span", "song-item__title", songTitle(song)), el("span", "song-item__meta", songMeta(song)));
  item.append(el("span", "song-item__rank", label), link);
  return item;
}

async function load() {
  if (!config.from || !config.to) {
    message.textContent = "Pick exactly two songs in the catalog, then \u201cPath between them\u201d.";
    message.hidden = false;
    return;
  }
  const params = new URLSearchParams({ from: config.from, to: config.to, steps: String(config.steps) });
  try {
    const data = await api(`${config.urls.path}?${params}`);
    const songs = [data.start, ...data.results.map((pick) => pick.song), data.end];
    list.replaceChildren(...songs.map((song, i) => row(song, i === 0 ? "From" : i === songs.length - 1 ? "To" : String(i))));
    playButton.hidden = false;
    playButton.addEventListener("click", () => queue?.playList(songs));
  } catch (error) {
    message.textContent = `No path: ${error.message}`;
    message.hidden = false;
  }
}

load();
