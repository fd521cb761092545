// A player that goes from one song to the next by itself. Radio mode asks the API for what comes next, sending
// back what was played and skipped (the API keeps no state); "more like this one" re-seeds it on the current song.
// Path mode plays a fixed list.

import { api, el, songMeta, songTitle, songUrl } from "./common.js";
import { toast } from "./toast.js";

const BATCH = 10; // songs asked for at a time
const LOW_WATER = 3; // ask for more when this few are left

export function initQueuePlayer(config) {
  const root = document.getElementById("queue-player");
  if (!root) return null;
  const audio = document.getElementById("queue-audio");
  const title = document.getElementById("queue-now-title");
  const meta = document.getElementById("queue-now-meta");
  const status = document.getElementById("queue-status");
  const list = document.getElementById("queue-list");
  const skipButton = document.getElementById("queue-skip");
  const moreButton = document.getElementById("queue-more-like");
  const stopButton = document.getElementById("queue-stop");
  const saveButton = document.getElementById("queue-save");

  const state = { mode: "radio", seeds: [], played: [], skipped: [], queue: [], current: null, loading: null };

  function renderQueue() {
    list.replaceChildren(
      ...state.queue.map((song) => {
        const item = el("li", "song-item");
        item.dataset.songId = song.id;
        const link = el("a", "song-item__link");
        link.href = songUrl(config.urls.songPage, config.songIdPlaceholder, song.id);
        link.append(el("span", "song-item__title", songTitle(song)), el("span", "song-item__meta", songMeta(song)));
        item.append(link);
        return item;
      }),
    );
    if (!state.queue.length) list.append(el("li", "song-list__empty", "Nothing more to play."));
    root.dataset.current = state.current ? state.current.id : "";
    moreButton.hidden = state.mode !== "radio";
  }

  async function fetchMore({ replace = false } = {}) {
    if (state.mode !== "radio") return;
    const body = {
      seeds: state.seeds,
      played: [...state.played, ...(state.current ? [state.current.id] : []), ...(replace ? [] : state.queue.map((s) => s.id))],
      skipped: state.skipped,
      length: BATCH,
    };
    const mine = (state.loading = api(config.urls.radio, { method: "POST", body }));
    try {
      const data = await mine;
      if (state.loading !== mine) return; // a newer request replaced this one
      const songs = data.results.map((pick) => pick.song);
      state.queue = replace ? songs : [...state.queue, ...songs];
      status.textContent = "";
    } catch (error) {
      status.textContent = `Could not plan what comes next: ${error.message}`;
    } finally {
      if (state.loading === mine) state.loading = null;
    }
    renderQueue();
  }

  function play(song) {
    state.current = song;
    title.textContent = songTitle(song);
    title.href = songUrl(config.urls.songPage, config.songIdPlaceholder, song.id);
    meta.textContent = songMeta(song);
    audio.src = song.playback_url;
    audio.play().catch(() => {}); // autoplay refusals leave the controls for the listener
    renderQueue();
  }

  async function next() {
    if (state.current) state.played.push(state.current.id);
    if (!state.queue.length && state.loading) await state.loading;
    if (!state.queue.length) await fetchMore();
    const song = state.queue.shift();
    if (!song) {
      state.current = null;
      status.textContent = "The end: nothing left to play.";
      audio.removeAttribute("src");
      renderQueue();
      return;
    }
    play(song);
    if (state.queue.length < LOW_WATER) fetchMore();
  }

  audio.addEventListener("ended", next);
  audio.addEventListener("error", () => {
    if (!state.current || !audio.getAttribute("src")) return;
    toast(`“${songTitle(state.current)}” could not be played; moving on.`, { kind: "error" });
    next();
  });
  skipButton.addEventListener("click", async () => {
    if (state.current && state.mode === "radio") {
      state.skipped.push(state.current.id);
      state.current = null;
      await fetchMore({ replace: true }); // the skip steers what comes next
    }
    next();
  });
  moreButton.addEventListener("click", async () => {
    if (!state.current) return;
    state.seeds = [state.current.id];
    await fetchMore({ replace: true });
    toast(`The radio now follows “${songTitle(state.current)}”.`);
  });
  stopButton.addEventListener("click", () => {
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
    root.hidden = true;
  });
  saveButton?.addEventListener("click", async () => {
    const songs = [...state.played, ...(state.current ? [state.current.id] : []), ...state.queue.map((s) => s.id)];
    const name = window.prompt("Name of the playlist", config.playlistName || "Radio");
    if (!name) return;
    try {
      const saved = await api(config.urls.playlists, { method: "POST", body: { name, songs: [...new Set(songs)] } });
      toast(`Saved “${saved.name}” with ${saved.songs.length} songs.`);
    } catch (error) {
      toast(`Could not save the playlist: ${error.message}`, { kind: "error" });
    }
  });

  return {
    /** Start a radio from seed song ids. */
    async startRadio(seeds) {
      Object.assign(state, { mode: "radio", seeds, played: [], skipped: [], queue: [], current: null });
      root.hidden = false;
      status.textContent = "Choosing songs…";
      await fetchMore({ replace: true });
      root.scrollIntoView({ block: "nearest" });
      next();
    },
    /** Play a fixed list of songs (as the API describes them) in order. */
    playList(songs) {
      Object.assign(state, { mode: "list", seeds: [], played: [], skipped: [], queue: [...songs], current: null });
      root.hidden = false;
      next();
    },
  };
}
