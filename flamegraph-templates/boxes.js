// What the flame graph (flame.js) and the differential one (diff.js) draw
// alike: a call tree as positioned boxes, the rows of the zoomed node's
// ancestors, search matches that count each matched subtree once, the
// tooltip's placement, and the pointer's hover and click. Each graph keeps
// its own data, colours, labels and controls.
window.TimeGlassBoxes = (function () {
  "use strict";

  var ROW = 19;          // px per stack level
  var MIN_WIDTH = 0.6;   // px: narrower boxes (and their children) are not drawn
  var LABEL_WIDTH = 28;  // px: narrower boxes get no text

  // Levels below `node` drawn `w` px wide: boxes too narrow to draw add none.
  function depthOf(node, w, value) {
    var best = 0;
    var whole = value(node);
    for (var i = 0; i < node.c.length; i++) {
      var cw = whole ? w * value(node.c[i]) / whole : 0;
      if (cw >= MIN_WIDTH) best = Math.max(best, 1 + depthOf(node.c[i], cw, value));
    }
    return best;
  }

  // Draws `o.tree` into `o.graph`, zoomed on the last of `o.zoom` (the
  // zoomed node's ancestors, root excluded, then it), its ancestors as dim
  // full-width rows unless `o.hideAncestors`. `o.value(node)` is a box's
  // width, `o.colour(node)` its background, `o.className(node)` extra
  // classes. Returns the boxes drawn: {node, depth, chain}, indexed by each
  // box's `data-i`; `data-name` is its frame's name.
  function draw(o) {
    var graph = o.graph;
    graph.textContent = "";
    var drawn = [];
    var width = graph.clientWidth;
    var zoomed = o.zoom.length ? o.zoom[o.zoom.length - 1] : o.tree;
    var chain = o.zoom.length ? [o.tree].concat(o.zoom.slice(0, -1)) : [];
    var ancestors = o.hideAncestors ? [] : chain;
    var levels = ancestors.length + 1 + depthOf(zoomed, width, o.value);
    graph.style.height = levels * ROW + "px";
    var frag = document.createDocumentFragment();
    function top(depth) { return o.dir === "icicle" ? depth * ROW : (levels - 1 - depth) * ROW; }
    function box(node, depth, x, w, above, dim) {
      var el = document.createElement("div");
      el.className = "fr" + (dim ? " dim" : "") + (o.className ? o.className(node) : "");
      el.style.left = x + "px";
      el.style.width = Math.max(w - 1, 0.5) + "px";
      el.style.top = top(depth) + "px";
      el.style.background = o.colour(node);
      el.dataset.i = drawn.length;
      el.dataset.name = node.n;
      if (w >= LABEL_WIDTH) el.textContent = node.n;
      drawn.push({ node: node, depth: depth, chain: above });
      frag.appendChild(el);
    }
    ancestors.forEach(function (a, i) { box(a, i, 0, width, ancestors.slice(0, i), true); });
    (function walk(node, depth, x, w, above) {
      box(node, depth, x, w, above, false);
      var cx = x;
      var scale = w / o.value(node);
      var next = above.concat([node]);
      for (var i = 0; i < node.c.length; i++) {
        var cw = o.value(node.c[i]) * scale;
        if (cw >= MIN_WIDTH) walk(node.c[i], depth + 1, cx, cw, next);
        cx += cw;
      }
    })(zoomed, ancestors.length, 0, width, chain);
    graph.appendChild(frag);
    return drawn;
  }

  // The search box's text as a case-insensitive pattern (taken literally
  // when it is not a valid one), or null when empty.
  function pattern(text) {
    text = text.trim();
    if (!text) return null;
    try { return new RegExp(text, "i"); }
    catch (e) { return new RegExp(escape(text), "i"); }
  }

  function escape(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  // Marks the boxes whose frame matches `re`; returns the matched nodes
  // whose time counts, each once: not a dim ancestor row, and under no
  // matched frame itself.
  function highlight(graph, drawn, re, tree) {
    var counted = [];
    function hits(n) { return !!re && n !== tree && re.test(n.n + " " + n.f); }
    var boxes = graph.querySelectorAll(".fr");
    for (var i = 0; i < boxes.length; i++) {
      var d = drawn[boxes[i].dataset.i];
      var hit = hits(d.node);
      boxes[i].classList.toggle("match", hit);
      if (hit && !boxes[i].classList.contains("dim") && !d.chain.some(hits)) counted.push(d.node);
    }
    return counted;
  }

  // Puts the tooltip `tip` beside the pointer, inside `root`.
  function placeTip(tip, root, event) {
    tip.hidden = false;
    var box = root.getBoundingClientRect();
    var x = event.clientX - box.left + 14;
    var y = event.clientY - box.top + 16;
    if (x + tip.offsetWidth > box.width) x = Math.max(0, event.clientX - box.left - tip.offsetWidth - 10);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  // The zoom that opens on a clicked box: its ancestors and it, root excluded.
  function zoomOn(d, tree) {
    return d.node === tree ? [] : d.chain.filter(function (a) { return a !== tree; }).concat([d.node]);
  }

  // Hover shows `show(event, box)` (hidden off the boxes), a click calls
  // `zoom(box)`; `drawn()` gives the boxes drawn last.
  function pointer(graph, tip, drawn, show, zoom) {
    graph.addEventListener("mousemove", function (event) {
      var el = event.target.closest(".fr");
      if (!el) { tip.hidden = true; return; }
      show(event, drawn()[el.dataset.i]);
    });
    graph.addEventListener("mouseleave", function () { tip.hidden = true; });
    graph.addEventListener("click", function (event) {
      var el = event.target.closest(".fr");
      if (el) zoom(drawn()[el.dataset.i]);
    });
  }

  // Calls `render` again once the window has stopped resizing.
  function onResize(render) {
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(render, 100);
    });
  }

  // Tooltip lines: text in a div of class `cls`.
  function line(tip, text, cls) {
    var el = document.createElement("div");
    if (cls) el.className = cls;
    el.textContent = text;
    tip.appendChild(el);
  }

  return {
    ROW: ROW,
    draw: draw,
    pattern: pattern,
    escape: escape,
    highlight: highlight,
    placeTip: placeTip,
    zoomOn: zoomOn,
    pointer: pointer,
    onResize: onResize,
    line: line
  };
})();
