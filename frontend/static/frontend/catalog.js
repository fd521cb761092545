// The catalog list: search, filter by status and sound tag, sort, paginate, play any song from its row, and pick
// songs for a radio or a path.
// The filters live in the address (?search=&status=&tag=&sort=&page=) so a filtered view can be shared or reloaded.

import { api, el, songMeta, songTitle, songUrl } from "./common.js";
import { playButton } from "./player.js";
import { toast } from "./toast.js";

const SEARCH_DEBOUNCE_MS = 250;
const STATUS_TEXT = {
  pending_upload: "Waiting for upload",
  uploaded: "Queued",
  processing: "Processing",
  ready: "Ready",
  failed: "Failed",
};
// Songs in these states have a file in storage worth playing.
const PLAYABLE = new Set(["uploaded", "processing", "ready"]);
const TAGS_SHOWN = 2;

export function initCatalog(config) {
  const list = document.getElementById("catalog-list");
  const count = document.getElementById("catalog-count");
  const errorBox = document.getElementById("catalog-error");
  const pager = document.getElementById("catalog-pager");
  const pageInfo = document.getElementById("page-info");
  const prevButton = document.getElementById("page-prev");
  const nextButton = document.getElementById("page-next");
  const form = document.getElementById("catalog-search");
  const searchInput = document.getElementById("search-input");
  const statusSelect = document.getElementById("status-select");
  const sortSelect = document.getElementById("sort-select");
  const tagSelect = document.getElementById("tag-select");
  const tagField = document.getElementById("tag-field");
  const clearButton = document.getElementById("clear-filters");
  const placeholder = config.songIdPlaceholder;

  const initial = new URLSearchParams(window.location.search);
  const optionValues = (select) => [...select.options].map((option) => option.value);
  const state = {
    search: initial.get("search") || "",
    status: optionValues(statusSelect).includes(initial.get("status")) ? initial.get("status") : "",
    tag: initial.get("tag") || "",
    sort: optionValues(sortSelect).includes(initial.get("sort")) ? initial.get("sort") : "newest",
    page: Math.max(1, Number.parseInt(initial.get("page") || "1", 10) || 1),
  };
  searchInput.value = state.search;
  statusSelect.value = state.status;
  sortSelect.value = state.sort;

  let request = 0;

  // Songs picked for a radio or a path; kept across pages and filters.
  const selected = new Set();
  const selectionBar = document.getElementById("catalog-selection");
  const selectionCount = document.getElementById("selection-count");
  const radioLink = document.getElementById("selection-radio");
  const pathLink = document.getElementById("selection-path");

  function renderSelection() {
    if (!selectionBar) return;
    selectionBar.hidden = selected.size === 0;
    selectionCount.textContent = `${selected.size} selected`;
    const ids = [...selected];
    radioLink.href = `${config.urls.radioPage}?${new URLSearchParams(ids.map((id) => ["seed", id]))}`;
    pathLink.hidden = ids.length !== 2;
    if (ids.length === 2) pathLink.href = `${config.urls.pathPage}?${new URLSearchParams({ from: ids[0], to: ids[1] })}`;
  }
  document.getElementById("selection-save")?.addEventListener("click", async () => {
    const name = window.prompt("Name of the playlist", "Picked songs");
    if (!name) return;
    try {
      const saved = await api(config.urls.playlists, { method: "POST", body: { name, songs: [...selected] } });
      window.location.assign(songUrl(config.urls.playlistPage, placeholder, saved.id));
    } catch (error) {
      toast(`Could not save the playlist: ${error.message}`, { kind: "error" });
    }
  });
  document.getElementById("selection-clear")?.addEventListener("click", () => {
    selected.clear();
    for (const box of list.querySelectorAll(".song-item__select")) box.checked = false;
    renderSelection();
  });

  const filtered = () => Boolean(state.search || state.status || state.tag);

  function tagLink(label) {
    const link = el("a", "tag tag--small", label);
    link.href = `?${new URLSearchParams({ tag: label })}`;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      setTag(label);
    });
    return link;
  }

  function row(song) {
    const item = el("li", "song-item");
    item.dataset.songId = song.id;
    item.dataset.status = song.status;
    if (song.playback_url && PLAYABLE.has(song.status)) {
      item.append(playButton({ id: song.id, src: song.playback_url, title: songTitle(song) }));
    } else {
      item.append(el("span", "play-button play-button--none"));
    }
    if (song.status === "ready") {
      const pick = el("input", "song-item__select");
      pick.type = "checkbox";
      pick.checked = selected.has(song.id);
      pick.setAttribute("aria-label", `Select ${songTitle(song)}`);
      pick.addEventListener("change", () => {
        if (pick.checked) selected.add(song.id);
        else selected.delete(song.id);
        renderSelection();
      });
      item.append(pick);
    }
    const link = el("a", "song-item__link");
    link.href = songUrl(config.urls.songPage, placeholder, song.id);
    link.append(el("span", "song-item__title", songTitle(song)), el("span", "song-item__meta", songMeta(song)));
    item.append(link);
    const tags = (song.tags || []).slice(0, TAGS_SHOWN);
    if (tags.length) {
      const tagList = el("span", "song-item__tags");
      for (const tag of tags) tagList.append(tagLink(tag.label));
      item.append(tagList);
    }
    item.append(el("span", `status status--${song.status}`, STATUS_TEXT[song.status] || song.status));
    return item;
  }

  function syncAddress() {
    const params = new URLSearchParams();
    if (state.search) params.set("search", state.search);
    if (state.status) params.set("status", state.status);
    if (state.tag) params.set("tag", state.tag);
    if (state.sort !== "newest") params.set("sort", state.sort);
    if (state.page > 1) params.set("page", String(state.page));
    const query = params.toString();
    window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
  }

  function describe(total, exact) {
    const noun = total === 1 && exact ? "song" : "songs";
    const parts = [];
    if (state.search) parts.push(`matching “${state.search}”`);
    if (state.status) parts.push(`with status ${statusSelect.selectedOptions[0].textContent.trim().toLowerCase()}`);
    if (state.tag) parts.push(`tagged ${state.tag}`);
    // A broad text search counts up to a limit: "1000+ songs" rather than a number it did not count.
    return [`${total}${exact ? "" : "+"} ${noun}`, parts.join(", ")].filter(Boolean).join(" ");
  }

  function render(data) {
    const results = data.results || [];
    list.replaceChildren(...results.map(row));
    if (!results.length) {
      const empty = el("li", "song-list__empty");
      if (filtered()) {
        empty.append(el("p", "", "No songs match these filters."));
        const clear = el("button", "button button--small", "Clear filters");
        clear.type = "button";
        clear.addEventListener("click", clearFilters);
        empty.append(clear);
      } else {
        empty.append(el("p", "", config.emptyText || "No songs yet."));
      }
      list.append(empty);
    }
    const exact = data.count_exact !== false;
    count.textContent = describe(data.count, exact);
    // A page with a next one is full, so its length is the page size; without a next one this is the last.
    const pages = data.next ? Math.ceil(data.count / results.length) : state.page;
    pager.hidden = !data.next && !data.previous;
    prevButton.disabled = !data.previous;
    nextButton.disabled = !data.next;
    pageInfo.textContent = `Page ${state.page} of ${pages}${exact || !data.next ? "" : "+"}`;
    clearButton.hidden = !filtered();
    syncAddress();
  }

  async function load() {
    const mine = ++request;
    const params = new URLSearchParams({ sort: state.sort, page: String(state.page) });
    if (state.search) params.set("search", state.search);
    if (state.status) params.set("status", state.status);
    if (state.tag) params.set("tag", state.tag);
    list.setAttribute("aria-busy", "true");
    try {
      const data = await api(`${config.urls.songs}?${params}`);
      if (mine !== request) return;
      errorBox.hidden = true;
      render(data);
    } catch (error) {
      if (mine !== request) return;
      if (error.status === 404 && state.page > 1) {
        state.page = 1; // the page went away (fewer results now); start over
        load();
        return;
      }
      errorBox.replaceChildren(el("span", "", `Could not load the catalog: ${error.message} `));
      const again = el("button", "button button--small", "Try again");
      again.type = "button";
      again.addEventListener("click", load);
      errorBox.append(again);
      errorBox.hidden = false;
    } finally {
      if (mine === request) list.removeAttribute("aria-busy");
    }
  }

  function update(changes) {
    Object.assign(state, { page: 1 }, changes);
    load();
  }

  function setTag(label) {
    if (![...tagSelect.options].some((option) => option.value === label)) addTagOption(label);
    tagSelect.value = label;
    tagField.hidden = false;
    update({ tag: label });
  }

  function clearFilters() {
    window.clearTimeout(searchTimer);
    searchInput.value = "";
    statusSelect.value = "";
    tagSelect.value = "";
    update({ search: "", status: "", tag: "" });
    searchInput.focus();
  }

  function addTagOption(label, songs) {
    const option = el("option", "", songs ? `${label} (${songs})` : label);
    option.value = label;
    tagSelect.append(option);
  }

  async function loadTags() {
    try {
      const data = await api(config.urls.tags);
      const tags = data.results || [];
      const labels = tags.map((tag) => tag.label);
      while (tagSelect.options.length > 1) tagSelect.remove(1);
      if (state.tag && !labels.includes(state.tag)) addTagOption(state.tag);
      for (const tag of tags) addTagOption(tag.label, tag.songs);
      tagSelect.value = state.tag;
      tagField.hidden = tagSelect.options.length <= 1;
    } catch {
      tagField.hidden = !state.tag; // filtering by tag is optional; the catalog still works without it
    }
  }

  let searchTimer = null;
  searchInput.addEventListener("input", () => {
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => update({ search: searchInput.value.trim() }), SEARCH_DEBOUNCE_MS);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    window.clearTimeout(searchTimer);
    update({ search: searchInput.value.trim() });
  });
  statusSelect.addEventListener("change", () => update({ status: statusSelect.value }));
  tagSelect.addEventListener("change", () => update({ tag: tagSelect.value }));
  sortSelect.addEventListener("change", () => update({ sort: sortSelect.value }));
  clearButton.addEventListener("click", clearFilters);
  prevButton.addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    load();
  });
  nextButton.addEventListener("click", () => {
    state.page += 1;
    load();
  });

  loadTags();
  load();

  let refreshTimer = null;
  return {
    /** Reload the current page of the catalog soon (coalescing bursts of changes). */
    refresh() {
      window.clearTimeout(refreshTimer);
      refreshTimer = window.setTimeout(() => {
        load();
        loadTags(); // new songs bring new sound tags
      }, 150);
    },
  };
}
