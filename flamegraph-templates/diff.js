// The differential flame graph: draws the tree the server sends (`DiffProfile`
// in server/src/diff.rs) with B's time as the width and the change as the
// colour (red slower, blue faster, grey unchanged; `t` is the signed
// intensity the server computed). Click to zoom, search with highlight, and
// a tooltip with A's and B's time and the difference, as flame.js does for
// one profile.
(function () {
  "use strict";

  var ROW = 19;          // px per stack level
  var MIN_WIDTH = 0.6;   // px: narrower boxes (and their children) are not drawn
  var LABEL_WIDTH = 28;  // px: narrower boxes get no text

  var root = document.getElementById("diff");
  if (!root) return;
  var graph = document.getElementById("diff-graph");
  var tip = document.getElementById("diff-tip");
  var search = document.getElementById("diff-search");
  var matched = document.getElementById("diff-matched");
  var reset = document.getElementById("diff-reset");
  var zoomPath = document.getElementById("diff-zoom");
  var data = JSON.parse(document.getElementById("diff-data").textContent);
  var tree = data.tree;
  var state = { dir: "icicle", zoom: [], pattern: null };
  var drawn = [];
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;

  function colour(node) {
    var t = node.t;
    if (!t) return dark ? "hsl(215,8%,36%)" : "hsl(215,10%,84%)";
    var hue = t > 0 ? 2 : 214;
    var k = Math.abs(t);
    return dark
      ? "hsl(" + hue + "," + (40 + 35 * k) + "%," + (36 - 8 * k) + "%)"
      : "hsl(" + hue + "," + (55 + 30 * k) + "%," + (82 - 30 * k) + "%)";
  }

  function ms(v) {
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 100) return v.toFixed(0) + " ms";
    if (v >= 10) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }

  function delta(n) {
    var d = n.b - n.a;
    var text = (d >= 0 ? "+" : "−") + ms(Math.abs(d));
    if (n.a > 0) text += " (" + (d >= 0 ? "+" : "") + (d / n.a * 100).toFixed(0) + "%)";
    else if (n.b > 0) text += " (only in B)";
    return text;
  }

  // Levels below `node` drawn `w` px wide: boxes too narrow to draw add none.
  function depthOf(node, w) {
    var best = 0;
    for (var i = 0; i < node.c.length; i++) {
      var cw = w * node.c[i].b / node.b;
      if (cw >= MIN_WIDTH) best = Math.max(best, 1 + depthOf(node.c[i], cw));
    }
    return best;
  }

  function render() {
    graph.textContent = "";
    drawn = [];
    if (!(tree.b > 0)) {
      graph.innerHTML = '<p class="muted nosamples">B has no samples here, so nothing has width; the table below lists what A ran.</p>';
      graph.style.height = "auto";
      return;
    }
    var width = graph.clientWidth;
    var zoomed = state.zoom.length ? state.zoom[state.zoom.length - 1] : tree;
    var ancestors = state.zoom.length ? [tree].concat(state.zoom.slice(0, -1)) : [];
    var levels = ancestors.length + 1 + depthOf(zoomed, width);
    graph.style.height = levels * ROW + "px";
    var frag = document.createDocumentFragment();
    function top(depth) { return state.dir === "icicle" ? depth * ROW : (levels - 1 - depth) * ROW; }
    function box(node, depth, x, w, chain, dim) {
      var el = document.createElement("div");
      el.className = "fr" + (dim ? " dim" : "") + (node.t > 0 ? " d-up" : node.t < 0 ? " d-down" : " d-same");
      el.style.left = x + "px";
      el.style.width = Math.max(w - 1, 0.5) + "px";
      el.style.top = top(depth) + "px";
      el.style.background = colour(node);
      el.dataset.i = drawn.length;
      el.dataset.name = node.n;
      if (w >= LABEL_WIDTH) el.textContent = node.n;
      drawn.push({ node: node, chain: chain });
      frag.appendChild(el);
    }
    ancestors.forEach(function (a, i) { box(a, i, 0, width, ancestors.slice(0, i), true); });
    (function walk(node, depth, x, w, chain) {
      box(node, depth, x, w, chain, false);
      var cx = x;
      var scale = w / node.b;
      var next = chain.concat([node]);
      for (var i = 0; i < node.c.length; i++) {
        var cw = node.c[i].b * scale;
        if (cw >= MIN_WIDTH) walk(node.c[i], depth + 1, cx, cw, next);
        cx += cw;
      }
    })(zoomed, ancestors.length, 0, width, ancestors);
    graph.appendChild(frag);
    reset.disabled = state.zoom.length === 0;
    var names = ["all"].concat(state.zoom.map(function (n) { return n.n; }));
    if (names.length > 6) names = names.slice(0, 1).concat(["…"], names.slice(-4));
    zoomPath.textContent = state.zoom.length ? "Zoomed: " + names.join(" › ") : "";
    highlight();
  }

  function highlight() {
    var a = 0, b = 0;
    var boxes = graph.querySelectorAll(".fr");
    for (var i = 0; i < boxes.length; i++) {
      var d = drawn[boxes[i].dataset.i];
      var hit = !!state.pattern && d.node !== tree && state.pattern.test(d.node.n + " " + d.node.f);
      boxes[i].classList.toggle("match", hit);
      if (hit && !boxes[i].classList.contains("dim")) {
        var counted = d.chain.some(function (p) { return p !== tree && state.pattern.test(p.n + " " + p.f); });
        if (!counted) { a += d.node.a; b += d.node.b; }
      }
    }
    matched.textContent = state.pattern ? "matched " + ms(a) + " → " + ms(b) : "";
  }

  function onSearch() {
    var text = search.value.trim();
    if (!text) state.pattern = null;
    else {
      try { state.pattern = new RegExp(text, "i"); }
      catch (e) { state.pattern = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i"); }
    }
    highlight();
  }

  function line(text, cls) {
    var el = document.createElement("div");
    if (cls) el.className = cls;
    el.textContent = text;
    tip.appendChild(el);
  }

  function showTip(event, d) {
    var n = d.node;
    tip.innerHTML = "";
    line(n.n, "tip-name");
    if (n.f) line(n.f, "tip-file");
    line("A: " + ms(n.a) + " · B: " + ms(n.b), "tip-values");
    line("change: " + delta(n) + (n.t ? (n.t > 0 ? " · slower" : " · faster") : " · unchanged"), "tip-delta");
    tip.hidden = false;
    var box = root.getBoundingClientRect();
    var x = event.clientX - box.left + 14;
    var y = event.clientY - box.top + 16;
    if (x + tip.offsetWidth > box.width) x = Math.max(0, event.clientX - box.left - tip.offsetWidth - 10);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  graph.addEventListener("mousemove", function (event) {
    var el = event.target.closest(".fr");
    if (!el) { tip.hidden = true; return; }
    showTip(event, drawn[el.dataset.i]);
  });
  graph.addEventListener("mouseleave", function () { tip.hidden = true; });
  graph.addEventListener("click", function (event) {
    var el = event.target.closest(".fr");
    if (!el) return;
    var d = drawn[el.dataset.i];
    state.zoom = d.node === tree ? [] : d.chain.filter(function (p) { return p !== tree; }).concat([d.node]);
    render();
  });
  reset.addEventListener("click", function () { state.zoom = []; render(); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.activeElement !== search) { state.zoom = []; render(); }
  });
  search.addEventListener("input", onSearch);
  root.querySelectorAll("[data-dir]").forEach(function (b) {
    b.addEventListener("click", function () {
      state.dir = b.dataset.dir;
      root.querySelectorAll("[data-dir]").forEach(function (o) { o.classList.toggle("on", o === b); });
      render();
    });
  });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(render, 100);
  });
  render();
})();
