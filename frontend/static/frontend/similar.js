// "Find similar": send a clip (never added to the catalog) and list the catalog songs that sound most like it,
// each with its score and a player.

import { api, clipSender, el, fileDropTarget, readConfig, songMeta, songTitle, songUrl } from "./common.js";
import "./player.js"; // only one audio element plays at a time

const config = readConfig("similar-config");
const limits = { accepted: new Set(config.acceptedContentTypes), maxMb: config.maxClipMb };
const link = (template, id) => songUrl(template, config.songIdPlaceholder, id);

const zone = document.getElementById("clip-zone");
const input = document.getElementById("clip-input");
const limitSelect = document.getElementById("limit-select");
const progress = document.getElementById("similar-progress");
const progressText = document.getElementById("similar-progress-text");
const errorBox = document.getElementById("similar-error");
const resultsPanel = document.getElementById("results-panel");
const resultsHeading = document.getElementById("results-heading");
const resultsNote = document.getElementById("results-note");
const resultsList = document.getElementById("similar-results");

const sender = clipSender({ zone, progress, progressText, errorBox, busyRegion: resultsList, limits });
let clip = null;

function chooseClip(files) {
  const file = sender.acceptable(files);
  if (!file) return;
  clip = file;
  search();
}

function search() {
  if (!clip) return;
  const searched = clip;
  sender.send(searched, config.urls.similar, {
    fields: { limit: limitSelect.value },
    onResult: render,
    onError: (error) => {
      resultsPanel.hidden = true;
      sender.showError(`Could not search with ${searched.name}. ${error.message}`);
    },
  });
}

function render(data) {
  const results = data.results || [];
  resultsPanel.hidden = false;
  resultsHeading.textContent = `Songs that sound like “${clip.name}”`;
  if (!results.length) {
    resultsNote.textContent = "";
    const empty = el("li", "song-list__empty");
    const text = el("p", "", "There are no ready songs to compare with yet. ");
    const add = el("a", "", "Add songs to the catalog");
    add.href = config.urls.home;
    text.append(add, ".");
    empty.append(text);
    resultsList.replaceChildren(empty);
    return;
  }
  const noun = results.length === 1 ? "song" : "songs";
  resultsNote.textContent = `${results.length} closest ${noun} by the ${data.model} model, best first; a score of 1 means identical.${data.notice ? ` ${data.notice}` : ""}`;
  resultsList.replaceChildren(...results.map((result, index) => row(result, index)));
  for (const item of resultsList.querySelectorAll(".result")) attachPlayer(item);
}

function row({ song, score }, index) {
  const item = el("li", "result");
  item.dataset.songId = song.id;
  item.append(el("span", "result__rank", String(index + 1)));
  const anchor = el("a", "song-item__link result__link");
  anchor.href = link(config.urls.songPage, song.id);
  anchor.append(el("span", "song-item__title", songTitle(song)), el("span", "song-item__meta", songMeta(song)));
  const scoreNode = el("span", "score");
  scoreNode.title = "Similarity score";
  scoreNode.append(el("span", "visually-hidden", "Similarity "), el("span", "score__value", score.toFixed(3)));
  const media = el("div", "result__media");
  media.append(el("span", "result__player-note muted", "Loading the player…"));
  item.append(anchor, scoreNode, media);
  item.songTitle = songTitle(song);
  return item;
}

// The results carry brief songs; each song's detail holds its playback address.
async function attachPlayer(item) {
  const media = item.querySelector(".result__media");
  try {
    const song = await api(link(config.urls.songDetail, item.dataset.songId));
    if (!song.playback_url) throw new Error("no playback address");
    const audio = el("audio", "result__player");
    audio.controls = true;
    audio.preload = "none";
    audio.src = song.playback_url;
    audio.setAttribute("aria-label", `Play ${item.songTitle}`);
    audio.addEventListener("error", () => {
      media.replaceChildren(el("span", "result__player-note muted", "This audio could not be played."));
    });
    media.replaceChildren(audio);
  } catch (error) {
    media.replaceChildren(el("span", "result__player-note muted", `No player: ${error.message}`));
  }
}

fileDropTarget(zone, input, chooseClip, { extraOpeners: [document.getElementById("pick-clip")] });
limitSelect.addEventListener("change", search);
