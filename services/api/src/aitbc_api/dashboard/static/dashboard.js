// Copy buttons for the one-time key display. Progressive: without this script the key is
// still in a read-only field to select and copy by hand. No other script runs here.
"use strict";

function copied(status, text) {
  if (status) status.textContent = text;
}

async function copy(button) {
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.copy + "-status");
  if (!field) return;
  try {
    await navigator.clipboard.writeText(field.value);
    copied(status, "Copied to the clipboard.");
  } catch (error) {
    field.focus();
    field.select();
    const ok = typeof document.execCommand === "function" && document.execCommand("copy");
    copied(status, ok ? "Copied to the clipboard." : "Selected: press Ctrl+C (or ⌘C) to copy.");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => copy(button));
  }
});
