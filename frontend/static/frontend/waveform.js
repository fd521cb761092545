// A waveform picture of a song, drawn in the browser: the audio is fetched, decoded with Web Audio at a low
// sample rate (enough for a picture, light on memory), and its min/max peaks are drawn one column per pixel.
// The picture is also a seek bar: click it, or focus it and use the arrow keys, Page Up/Down, Home and End.

import { formatDuration } from "./common.js";

const DECODE_RATE = 8000;
const MAX_BYTES = 150 * 1024 * 1024; // beyond this, decoding would cost more memory than the picture is worth
const KEY_STEP_MAX_SECONDS = 5; // arrow keys move 5 s, or a twentieth of a short song (at least 1 s)

export function initWaveform(canvas, player, { src, size }) {
  const box = canvas.closest(".waveform");
  const message = box.querySelector(".waveform__message");
  let samples = null; // Float32Array per channel
  let peaks = null; // [min, max] per column, for the current width
  let columns = 0;
  let frame = 0;

  function setState(state, text = "") {
    canvas.dataset.state = state;
    box.dataset.state = state;
    message.textContent = text;
    message.hidden = !text;
    canvas.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  function duration() {
    if (Number.isFinite(player.duration) && player.duration > 0) return player.duration;
    return samples ? samples[0].length / DECODE_RATE : 0;
  }

  function computePeaks(width) {
    const length = samples[0].length;
    const result = new Float32Array(width * 2);
    let loudest = 0;
    for (let x = 0; x < width; x += 1) {
      const from = Math.floor((x * length) / width);
      const to = Math.max(from + 1, Math.floor(((x + 1) * length) / width));
      let low = 0;
      let high = 0;
      for (const channel of samples) {
        for (let index = from; index < to && index < length; index += 1) {
          const value = channel[index];
          if (value < low) low = value;
          if (value > high) high = value;
        }
      }
      result[2 * x] = low;
      result[2 * x + 1] = high;
      loudest = Math.max(loudest, high, -low);
    }
    // Scale so that the loudest moment fills the height; quiet recordings stay readable.
    const gain = loudest > 0.001 ? 1 / loudest : 1;
    for (let index = 0; index < result.length; index += 1) result[index] *= gain;
    return result;
  }

  function draw() {
    frame = 0;
    if (!samples) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    if (columns !== width) {
      peaks = computePeaks(width);
      columns = width;
    }
    const style = getComputedStyle(canvas);
    const played = style.getPropertyValue("--wave-played").trim() || "#4b44d6";
    const unplayed = style.getPropertyValue("--wave").trim() || "#8a90a6";
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const middle = height / 2;
    const reach = middle * 0.92;
    const total = duration();
    const playhead = total ? Math.round((player.currentTime / total) * width) : 0;
    for (const [from, to, colour, alpha] of [
      [0, playhead, played, 1],
      [playhead, width, unplayed, 0.7],
    ]) {
      context.fillStyle = colour;
      context.globalAlpha = alpha;
      for (let x = from; x < to; x += 1) {
        const top = middle - peaks[2 * x + 1] * reach;
        const bottom = middle - peaks[2 * x] * reach;
        context.fillRect(x, top, 1, Math.max(ratio, bottom - top));
      }
    }
    context.globalAlpha = 1;
    if (playhead > 0 && playhead < width) {
      context.fillStyle = played;
      context.fillRect(playhead - ratio, 0, 2 * ratio, height);
    }
  }

  function redraw() {
    if (!frame) frame = window.requestAnimationFrame(draw);
  }

  function updateValue() {
    const total = duration();
    canvas.setAttribute("aria-valuemax", String(Math.round(total)));
    canvas.setAttribute("aria-valuenow", String(Math.round(player.currentTime)));
    canvas.setAttribute(
      "aria-valuetext",
      `${formatDuration(player.currentTime)} of ${formatDuration(total) || "unknown length"}`,
    );
  }

  function seek(seconds) {
    const total = duration();
    if (!total) return;
    player.currentTime = Math.min(Math.max(0, seconds), total);
    updateValue();
    redraw();
  }

  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    if (!rect.width) return;
    seek(((event.clientX - rect.left) / rect.width) * duration());
  });
  canvas.addEventListener("keydown", (event) => {
    const total = duration();
    const step = Math.min(KEY_STEP_MAX_SECONDS, Math.max(1, total / 20));
    const moves = {
      ArrowLeft: -step,
      ArrowDown: -step,
      ArrowRight: step,
      ArrowUp: step,
      PageDown: -total / 10,
      PageUp: total / 10,
    };
    if (event.key in moves) seek(player.currentTime + moves[event.key]);
    else if (event.key === "Home") seek(0);
    else if (event.key === "End") seek(total);
    else return;
    event.preventDefault();
  });

  // Follow playback smoothly while playing, and once more on any jump.
  let following = false;
  const follow = () => {
    draw();
    if (!player.paused) window.requestAnimationFrame(follow);
    else following = false;
  };
  player.addEventListener("play", () => {
    if (!following) {
      following = true;
      window.requestAnimationFrame(follow);
    }
  });
  for (const type of ["timeupdate", "seeked", "loadedmetadata", "durationchange"]) {
    player.addEventListener(type, () => {
      updateValue();
      redraw();
    });
  }
  new ResizeObserver(redraw).observe(canvas);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);

  async function load() {
    if (size && size > MAX_BYTES) {
      setState("error", "This file is too large to draw its waveform here; the player still works.");
      return;
    }
    setState("loading", "Drawing the waveform…");
    try {
      const response = await fetch(src, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`the file could not be fetched (${response.status})`);
      const bytes = await response.arrayBuffer();
      const context = new OfflineAudioContext(1, 1, DECODE_RATE);
      let buffer;
      try {
        buffer = await context.decodeAudioData(bytes);
      } catch {
        throw new Error("this browser cannot decode the file");
      }
      samples = Array.from({ length: buffer.numberOfChannels }, (_, index) => buffer.getChannelData(index));
      if (!samples.length || !samples[0].length) throw new Error("the file holds no audio");
      columns = 0;
      setState("ready");
      updateValue();
      draw();
    } catch (error) {
      samples = null;
      const reason = error instanceof TypeError ? "the file could not be fetched" : error.message;
      setState("error", `No waveform: ${reason}. The player still works.`);
    }
  }

  load();
}
