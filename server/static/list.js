// Request lists: whole rows open their request, filters apply as soon as
// they change, and new requests stream in (server-sent events) without
// touching the filters or the scroll position.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var row = event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a") || window.getSelection().toString()) return;
    if (event.ctrlKey || event.metaKey) window.open(row.dataset.href);
    else window.location.href = row.dataset.href;
  });

  var form = document.getElementById("filters");
  if (form) {
    form.querySelectorAll("select, input[type=number]").forEach(function (el) {
      el.addEventListener("change", function () { form.requestSubmit(); });
    });
    // Empty fields stay out of the address.
    form.addEventListener("submit", function () {
      form.querySelectorAll("input, select").forEach(function (el) {
        if (!el.value) el.disabled = true;
      });
    });
  }

  var table = document.querySelector("table[data-stream]");
  if (!table || !window.EventSource) return;
  var rows = document.getElementById("rows");
  var live = table.dataset.live === "on";
  var badge = document.getElementById("live");
  var newer = document.getElementById("newer");
  var source = new EventSource(table.dataset.stream);

  source.onopen = function () { badge.classList.add("connected"); badge.classList.remove("broken"); };
  source.onerror = function () { badge.classList.remove("connected"); badge.classList.add("broken"); };
  source.addEventListener("request", function (event) {
    var data = JSON.parse(event.data);
    if (!live) {
      // Sorted otherwise, or a later page: say so rather than reshuffle.
      var params = new URLSearchParams(window.location.search);
      params.delete("before");
      params.delete("sort");
      newer.querySelector("a").href = "/?" + params.toString();
      newer.hidden = false;
      return;
    }
    if (rows.querySelector('tr[data-id="' + data.id + '"]')) return;
    var holder = document.createElement("tbody");
    holder.innerHTML = data.html;
    var row = holder.firstElementChild;
    if (!row) return;
    var before = document.documentElement.scrollHeight;
    row.classList.add("fresh");
    rows.insertBefore(row, rows.firstElementChild);
    document.querySelectorAll(".empty").forEach(function (el) { el.remove(); });
    // Keep what the user is reading in place when they have scrolled down.
    if (window.scrollY > 0) window.scrollBy(0, document.documentElement.scrollHeight - before);
  });
})();

// Clearing deletes every session that is not being recorded: ask first.
(function () {
  var form = document.getElementById("clear");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    if (!window.confirm("Delete every recorded session (except one being recorded)? This cannot be undone.")) {
      event.preventDefault();
    }
  });
})();
