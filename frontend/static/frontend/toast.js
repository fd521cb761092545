// Notifications that dismiss themselves. They are announced through live regions that exist from page load
// (role=status for news, role=alert for problems) and never take the focus. The timer pauses while the pointer
// is over a toast or the keyboard focus is inside one, so there is time to read it or use its link.

import { el } from "./common.js";

const region = document.getElementById("toasts");
const MAX_VISIBLE = 4;
const durations = {
  success: Number(region?.dataset.successMs) || 6000,
  error: Number(region?.dataset.errorMs) || 10000,
};

function dismiss(node) {
  if (!node.isConnected || node.classList.contains("is-leaving")) return;
  window.clearTimeout(node.toastTimer);
  // If the focus is inside the toast, hand it to the page instead of losing it with the node.
  const hadFocus = node.contains(document.activeElement);
  node.classList.add("is-leaving");
  const remove = () => {
    node.remove();
    if (hadFocus) document.getElementById("main")?.focus();
  };
  if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) remove();
  else window.setTimeout(remove, 180);
}

/**
 * Show a toast. kind: "success" (polite) or "error" (assertive). link: optional {href, text}.
 * Returns the toast element.
 */
export function toast(message, { kind = "success", link } = {}) {
  if (!region) return null;
  const live = document.getElementById(kind === "error" ? "toasts-alert" : "toasts-status");
  const node = el("div", `toast toast--${kind}`);
  node.dataset.kind = kind;
  const text = el("p", "toast__text", message);
  node.append(text);
  if (link) {
    const anchor = el("a", "toast__link", link.text);
    anchor.href = link.href;
    node.append(anchor);
  }
  const close = el("button", "toast__close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss notification");
  close.addEventListener("click", () => dismiss(node));
  node.append(close);

  let remaining = durations[kind] || durations.success;
  let startedAt = 0;
  const start = () => {
    startedAt = Date.now();
    window.clearTimeout(node.toastTimer);
    node.toastTimer = window.setTimeout(() => dismiss(node), remaining);
  };
  const pause = () => {
    window.clearTimeout(node.toastTimer);
    remaining = Math.max(1500, remaining - (Date.now() - startedAt));
  };
  node.addEventListener("mouseenter", pause);
  node.addEventListener("mouseleave", start);
  node.addEventListener("focusin", pause);
  node.addEventListener("focusout", (event) => {
    if (!node.contains(event.relatedTarget)) start();
  });

  live.append(node);
  const visible = region.querySelectorAll(".toast:not(.is-leaving)");
  for (let index = 0; index < visible.length - MAX_VISIBLE; index += 1) dismiss(visible[index]);
  start();
  return node;
}
