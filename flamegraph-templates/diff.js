// The differential flame graph: draws the tree the server sends (`DiffProfile`
// in server/src/diff.rs) with B's time as the width and the change as the
// colour (red slower, blue faster, grey unchanged; `t` is the signed
// intensity the server computed). Click to zoom, search with highlight, and
// a tooltip with A's and B's time and the difference, as flame.js does for
// one profile; the drawing they share is boxes.js.
(function () {
  "use strict";

  var B = window.TimeGlassBoxes;
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

  function render() {
    if (!(tree.b > 0)) {
      graph.innerHTML = '<p class="muted nosamples">B has no samples here, so nothing has width; the table below lists what A ran.</p>';
      graph.style.height = "auto";
      drawn = [];
      return;
    }
    drawn = B.draw({
      graph: graph,
      tree: tree,
      zoom: state.zoom,
      dir: state.dir,
      value: function (n) { return n.b; },
      colour: colour,
      className: function (n) { return n.t > 0 ? " d-up" : n.t < 0 ? " d-down" : " d-same"; }
    });
    reset.disabled = state.zoom.length === 0;
    var names = ["all"].concat(state.zoom.map(function (n) { return n.n; }));
    if (names.length > 6) names = names.slice(0, 1).concat(["…"], names.slice(-4));
    zoomPath.textContent = state.zoom.length ? "Zoomed: " + names.join(" › ") : "";
    highlight();
  }

  function highlight() {
    var a = 0, b = 0;
    B.highlight(graph, drawn, state.pattern, tree).forEach(function (n) { a += n.a; b += n.b; });
    matched.textContent = state.pattern ? "matched " + ms(a) + " → " + ms(b) : "";
  }

  function showTip(event, d) {
    var n = d.node;
    tip.innerHTML = "";
    B.line(tip, n.n, "tip-name");
    if (n.f) B.line(tip, n.f, "tip-file");
    B.line(tip, "A: " + ms(n.a) + " · B: " + ms(n.b), "tip-values");
    B.line(tip, "change: " + delta(n) + (n.t ? (n.t > 0 ? " · slower" : " · faster") : " · unchanged"), "tip-delta");
    B.placeTip(tip, root, event);
  }

  function zoomTo(nodes) { state.zoom = nodes; render(); }

  B.pointer(graph, tip, function () { return drawn; }, showTip, function (d) { zoomTo(B.zoomOn(d, tree)); });
  reset.addEventListener("click", function () { zoomTo([]); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.activeElement !== search) zoomTo([]);
  });
  search.addEventListener("input", function () { state.pattern = B.pattern(search.value); highlight(); });
  root.querySelectorAll("[data-dir]").forEach(function (b) {
    b.addEventListener("click", function () {
      state.dir = b.dataset.dir;
      root.querySelectorAll("[data-dir]").forEach(function (o) { o.classList.toggle("on", o === b); });
      render();
    });
  });
  B.onResize(render);
  render();
})();
