// Song page: follow a song that is still being ingested, retry a failed one, explain playback errors,
// draw the waveform (which seeks the player), play "more like this" songs from their rows, and start a radio.

import { api, readConfig } from "./common.js";
import { bindPlayButton } from "./player.js";
import { initQueuePlayer } from "./queue.js";
import { initWaveform } from "./waveform.js";

const config = readConfig("song-config");

const IN_PROGRESS = new Set(["pending_upload", "uploaded", "processing"]);
const POLL_MS = 1500;
const POLL_ERROR_MS = 5000;

// While the song is being ingested, reload once its status changes so the page shows the result.
async function follow() {
  try {
    const song = await api(config.urls.detail);
    if (song.status !== config.status) {
      window.location.reload();
      return;
    }
    window.setTimeout(follow, POLL_MS);
  } catch {
    window.setTimeout(follow, POLL_ERROR_MS);
  }
}

if (IN_PROGRESS.has(config.status)) window.setTimeout(follow, POLL_MS);

const retryButton = document.getElementById("retry-button");
if (retryButton) {
  const message = document.getElementById("retry-message");
  retryButton.addEventListener("click", async () => {
    retryButton.disabled = true;
    message.hidden = false;
    message.textContent = "Queuing the song again…";
    try {
      await api(config.urls.retry, { method: "POST" });
      window.location.reload();
    } catch (error) {
      message.textContent = `Retry failed: ${error.message}`;
      retryButton.disabled = false;
    }
  });
}

const player = document.getElementById("player");
if (player) {
  const message = document.getElementById("player-message");
  player.addEventListener("error", () => {
    message.textContent =
      "This audio could not be played. The link may have expired — reload the page — or the browser cannot decode this format.";
    message.hidden = false;
  });
  const canvas = document.getElementById("waveform");
  if (canvas) initWaveform(canvas, player, { src: player.currentSrc || player.src, size: config.size });
}

for (const button of document.querySelectorAll("button[data-play-src]")) bindPlayButton(button);

const radioButton = document.getElementById("start-radio");
const queue = initQueuePlayer(config);
if (radioButton && queue) {
  radioButton.addEventListener("click", () => {
    document.getElementById("player")?.pause();
    queue.startRadio([config.songId]);
  });
  radioButton.disabled = false;
}
