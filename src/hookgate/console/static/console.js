// hookgate console: the little JavaScript it needs (pages work without it).
// 1. A table body with data-poll is refreshed every few seconds from the same URL with
//    fragment=rows, so new events appear without a reload; new rows are highlighted and
//    announced to screen readers.
// 2. A file input with data-fill-into reads a chosen CSV file into a textarea.
"use strict";
(function () {
  const POLL_MS = 3000;
  function poll(tbody) {
    const url = tbody.dataset.poll;
    const live = document.getElementById("live");
    let timer = null;
    async function refresh() {
      if (document.hidden) return;
      try {
        const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (answer.redirected || !answer.ok) return;
        const known = new Set(Array.from(tbody.querySelectorAll("tr[data-id]"), (r) => r.dataset.id));
        const holder = document.createElement("tbody");
        holder.innerHTML = await answer.text();
        const rows = Array.from(holder.children);
        const fresh = rows.filter((r) => r.dataset.id && !known.has(r.dataset.id));
        if (!fresh.length && rows.length === tbody.children.length) return;
        tbody.replaceChildren(...rows);
        fresh.forEach((r) => r.classList.add("new"));
        if (live && fresh.length) live.textContent = fresh.length + " new event(s) arrived.";
      } catch (e) { /* offline for a moment: try again on the next tick */ }
    }
    timer = setInterval(refresh, POLL_MS);
    window.addEventListener("pagehide", () => clearInterval(timer));
  }
  function fill(input) {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      const target = document.getElementById(input.dataset.fillInto);
      if (!file || !target) return;
      file.text().then((text) => { target.value = text; });
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("tbody[data-poll]").forEach(poll);
    document.querySelectorAll("input[data-fill-into]").forEach(fill);
  });
})();
