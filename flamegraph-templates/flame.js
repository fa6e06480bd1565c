// The interactive flame graph: draws the call tree the server sends
// (`Profile` in server/src/flame.rs) as positioned boxes, with click to zoom,
// search with highlight, a tooltip, an icicle/flame toggle, and the wall/CPU,
// "my code only" and synthetic-frame toggles (the server applies those: it
// refetches, and the functions table follows). The drawing it shares with
// diff.js is boxes.js.
(function () {
  "use strict";

  var B = window.TimeGlassBoxes;
  var STORE_KEY = "timeglass.flame";

  var root = document.getElementById("flame");
  if (!root) return;
  var graph = document.getElementById("flame-graph");
  var tip = document.getElementById("flame-tip");
  var search = document.getElementById("flame-search");
  var matched = document.getElementById("matched");
  var reset = document.getElementById("reset");
  var zoomPath = document.getElementById("zoom-path");
  var mine = document.getElementById("mine");
  var synthetic = document.getElementById("synthetic");
  var svgLink = document.getElementById("svg-link");
  var fnTable = document.querySelector("#functions tbody");

  var profile = JSON.parse(document.getElementById("profile-data").textContent);
  var saved = {};
  try { saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}"); } catch (e) { saved = {}; }
  var state = {
    dir: saved.dir === "flame" ? "flame" : "icicle",
    mine: !!saved.mine,
    synthetic: saved.synthetic !== false,
    // "wall", "cpu", or "memory" (bytes allocated, from sampled allocations).
    time: saved.time === "cpu" || saved.time === "memory" ? saved.time : "wall",
    zoom: [],          // the zoomed node and its ancestors, root first
    focused: false,    // the zoom is the server's focus: its library ancestors are not drawn
    pattern: null,
    fnBy: "self"
  };
  var drawn = [];      // box index -> {node, depth, ancestors}
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;

  function save() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({ dir: state.dir, mine: state.mine, synthetic: state.synthetic, time: state.time }));
    } catch (e) { /* private mode: settings last for this page only */ }
  }

  function hash(text) {
    var h = 2166136261;
    for (var i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619); }
    return (h >>> 0) / 4294967296;
  }

  // Warm colours for the app's code, cool greys for libraries, violet for TimeGlass's own frames.
  function colour(node) {
    if (node === profile.tree) return dark ? "hsl(215,12%,32%)" : "hsl(215,16%,86%)";
    var t = hash(node.n + node.f);
    if (node.k === 2) return dark ? "hsl(268,32%," + (34 + 8 * t) + "%)" : "hsl(268,48%," + (78 + 6 * t) + "%)";
    if (node.k === 1) return dark ? "hsl(" + (200 + 25 * t) + ",14%," + (28 + 8 * t) + "%)" : "hsl(" + (200 + 25 * t) + ",22%," + (80 + 8 * t) + "%)";
    return dark ? "hsl(" + (18 + 26 * t) + ",62%," + (38 + 8 * t) + "%)" : "hsl(" + (18 + 26 * t) + ",88%," + (64 + 8 * t) + "%)";
  }

  function pct(part, whole) {
    if (!whole) return "0%";
    var p = part / whole * 100;
    return (p >= 10 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : p.toFixed(2)) + "%";
  }

  // A node's value: samples, or bytes in the memory view.
  function amount(v) {
    if (state.time !== "memory") return String(v);
    if (v >= 1048576) return (v / 1048576).toFixed(1) + " MiB";
    if (v >= 1024) return (v / 1024).toFixed(1) + " KiB";
    return v + " B";
  }

  // Opens where the app's own code begins (`focus` in server/src/flame.rs):
  // the library frames above it stay out of the way until "Full stack".
  function openAtFocus() {
    var node = profile.tree;
    state.zoom = (profile.focus || []).map(function (i) { node = node.c[i]; return node; });
    state.focused = state.zoom.length > 0;
  }

  function zoomTo(nodes) {
    state.zoom = nodes;
    state.focused = false;
    render();
  }

  function render() {
    if (!profile.samples) {
      drawn = [];
      graph.innerHTML = state.time === "memory"
        ? '<p class="muted nosamples">No allocations were sampled here. Record with <code>timeglass run --memory</code>; a sample is taken every ~512 KiB a thread allocates, so small requests often get none, and a route\'s view merges all its requests.</p>'
        : state.time === "cpu"
        ? '<p class="muted nosamples">No CPU time was sampled here: all of it was spent off the CPU (blocked, awaiting, queued). Switch to Wall to see where it waited.</p>'
        : '<p class="muted nosamples">No samples were charged here. Sampling runs at 1 kHz, so requests shorter than a few milliseconds often get none; a route\'s view merges all its requests.</p>';
      graph.style.height = "auto";
      renderFunctions();
      return;
    }
    drawn = B.draw({
      graph: graph,
      tree: profile.tree,
      zoom: state.zoom,
      hideAncestors: state.focused,
      dir: state.dir,
      value: function (n) { return n.v; },
      colour: colour
    });
    reset.disabled = state.zoom.length === 0;
    renderCrumbs();
    highlight();
    renderFunctions();
  }

  // "Zoomed: all › … › f", or, at the focus, how many library frames are
  // hidden above it; either way a "Full stack" link goes back to the root.
  function renderCrumbs() {
    zoomPath.textContent = "";
    if (!state.zoom.length) return;
    var back = document.createElement("button");
    back.type = "button";
    back.className = "linkish";
    back.id = "full-stack";
    back.textContent = "Full stack";
    back.addEventListener("click", function () { zoomTo([]); });
    zoomPath.appendChild(back);
    var names = state.zoom.map(function (n) { return n.n; });
    var text;
    if (state.focused) {
      var hidden = state.zoom.length - 1;  // the focused frame itself is drawn
      text = (hidden ? " › " + hidden + " library frame" + (hidden === 1 ? "" : "s") : "") +
        " › " + names[names.length - 1] + " · opened where your code begins";
    } else {
      if (names.length > 5) names = ["…"].concat(names.slice(-4));
      text = " › " + names.join(" › ");
    }
    zoomPath.appendChild(document.createTextNode(text));
  }

  function highlight() {
    var total = 0;
    B.highlight(graph, drawn, state.pattern, profile.tree).forEach(function (n) { total += n.v; });
    var base = state.zoom.length ? state.zoom[state.zoom.length - 1].v : profile.samples;
    matched.textContent = state.pattern ? "matched " + pct(Math.min(total, base), base) : "";
  }

  function renderFunctions() {
    var key = state.fnBy === "self" ? "self_samples" : "total_samples";
    var list = profile.functions.slice().sort(function (a, b) { return b[key] - a[key] || (a.name < b.name ? -1 : 1); });
    var rows = list.filter(function (f) { return f[key] > 0; }).slice(0, 40).map(function (f) {
      var tr = document.createElement("tr");
      function td(text, cls) { var c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; tr.appendChild(c); return c; }
      var name = td("", "fn-name");
      var sw = document.createElement("span");
      sw.className = "sw k" + f.kind;
      var a = document.createElement("a");
      a.href = "#flame";
      a.textContent = f.name;
      a.title = "Highlight in the flame graph";
      a.addEventListener("click", function (e) {
        e.preventDefault();
        search.value = "^" + B.escape(f.name) + " ";
        onSearch();
      });
      name.appendChild(sw);
      name.appendChild(a);
      td(f.file, "code muted");
      td(amount(f.self_samples), "num");
      td(pct(f.self_samples, profile.samples), "num");
      td(amount(f.total_samples), "num");
      td(pct(f.total_samples, profile.samples), "num");
      return tr;
    });
    fnTable.textContent = "";
    rows.forEach(function (r) { fnTable.appendChild(r); });
  }

  function onSearch() {
    state.pattern = B.pattern(search.value);
    highlight();
  }

  function showTip(event, d) {
    var n = d.node;
    var whole = profile.samples;
    tip.innerHTML = "";
    B.line(tip, n.n, "tip-name");
    if (n.f) B.line(tip, n.f + ":" + n.l, "tip-file");
    var unit = state.time === "memory" ? " allocated" : " samples";
    B.line(tip, amount(n.v) + unit + " · " + pct(n.v, whole) + " of all" + (n.s ? " · self " + amount(n.s) + " (" + pct(n.s, whole) + ")" : ""));
    B.placeTip(tip, root, event);
  }

  B.pointer(graph, tip, function () { return drawn; }, showTip, function (d) { zoomTo(B.zoomOn(d, profile.tree)); });
  reset.addEventListener("click", function () { zoomTo([]); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.activeElement !== search) zoomTo([]);
  });
  search.addEventListener("input", onSearch);

  root.querySelectorAll("[data-dir]").forEach(function (b) {
    b.addEventListener("click", function () { state.dir = b.dataset.dir; save(); syncControls(); render(); });
  });
  root.querySelectorAll("[data-time]").forEach(function (b) {
    b.addEventListener("click", function () {
      if (b.dataset.time === state.time) return;
      state.time = b.dataset.time; save(); syncControls(); refetch();
    });
  });
  root.querySelectorAll("[data-by]").forEach(function (b) {
    b.addEventListener("click", function () { state.fnBy = b.dataset.by; syncControls(); renderFunctions(); });
  });

  function query() {
    var q = [];
    if (state.time === "cpu") q.push("cpu=true");
    if (state.time === "memory") q.push("memory=true");
    if (state.mine) q.push("mine=true");
    if (!state.synthetic) q.push("hide_synthetic=true");
    return q.join("&");
  }

  function refetch() {
    root.classList.add("loading");
    var q = query();
    fetch(root.dataset.profileUrl + (q ? "?" + q : ""), { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (p) { profile = p; openAtFocus(); render(); })
      .catch(function () { zoomPath.textContent = "Could not load the flame graph; is `timeglass ui` still running?"; })
      .finally(function () { root.classList.remove("loading"); });
  }

  function syncControls() {
    root.querySelectorAll("[data-dir]").forEach(function (b) { b.classList.toggle("on", b.dataset.dir === state.dir); });
    root.querySelectorAll("[data-by]").forEach(function (b) { b.classList.toggle("on", b.dataset.by === state.fnBy); });
    root.querySelectorAll("[data-time]").forEach(function (b) {
      var on = b.dataset.time === state.time;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    mine.checked = state.mine;
    synthetic.checked = state.synthetic;
    var q = query();
    var dir = state.dir === "icicle" ? "icicle=true" : "";
    var all = [q, dir].filter(Boolean).join("&");
    svgLink.href = root.dataset.svgUrl + (all ? "?" + all : "");
    // The downloads are of the view shown here too.
    root.querySelectorAll("a[data-export]").forEach(function (a) {
      a.href = a.dataset.export + (q ? "?" + q : "");
    });
  }

  mine.addEventListener("change", function () { state.mine = mine.checked; save(); syncControls(); refetch(); });
  synthetic.addEventListener("change", function () { state.synthetic = synthetic.checked; save(); syncControls(); refetch(); });

  B.onResize(render);

  syncControls();
  if (state.mine || !state.synthetic || state.time !== "wall") refetch(); else { openAtFocus(); render(); }
})();
