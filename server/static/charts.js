// The dashboard's time-series charts, drawn with uPlot (vendored, MIT) from
// /api/v1/series. A page of a session still recording asks again every
// two seconds, so the charts follow `timeglass run --ui` live.
(function () {
  "use strict";
  const section = document.getElementById("charts");
  if (!section || typeof uPlot === "undefined") return;
  const url = section.dataset.series;
  const live = section.dataset.live === "true";
  const note = section.querySelector("[data-chart-note]");
  const plots = {};

  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => (css.getPropertyValue(name).trim() || fallback);
  const palette = [color("--accent", "#2563eb"), "#d97706", "#dc2626"];

  function specs(s) {
    const line = (label, i, unit) => ({
      label, stroke: palette[i % palette.length], width: 1.5,
      value: (u, v) => (v == null ? "-" : v.toFixed(v >= 100 ? 0 : 1) + unit),
    });
    return {
      latency: { x: s.t, ys: [s.p50_ms, s.p95_ms, s.p99_ms], series: [line("p50", 0, " ms"), line("p95", 1, " ms"), line("p99", 2, " ms")] },
      rps: { x: s.t, ys: [s.rps], series: [line("req/s", 0, "")] },
      in_flight: { x: s.t, ys: [s.in_flight], series: [line("in flight", 0, "")] },
      cpu: { x: s.process_t, ys: [s.cpu_percent], series: [line("CPU", 0, "%")] },
      rss: { x: s.process_t, ys: [s.rss_mb], series: [line("RSS", 0, " MB")] },
    };
  }

  function draw(s) {
    const all = specs(s);
    note.textContent = s.t.length + " buckets of " + s.bucket_seconds + " s" +
      (s.process_t.length ? "" : "; no resource samples yet");
    for (const el of section.querySelectorAll("[data-chart]")) {
      const name = el.dataset.chart;
      const spec = all[name];
      const data = [spec.x, ...spec.ys];
      el.classList.toggle("empty", spec.x.length === 0);
      if (plots[name]) {
        plots[name].setData(data);
        continue;
      }
      const opts = {
        width: Math.max(240, el.clientWidth),
        height: 180,
        series: [{}, ...spec.series],
        axes: [{ stroke: color("--muted", "#888") }, { stroke: color("--muted", "#888"), size: 56 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        legend: { live: true },
      };
      plots[name] = new uPlot(opts, data, el);
    }
  }

  async function load() {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    if (!response.ok) {
      note.textContent = (await response.json()).error || response.statusText;
      return;
    }
    draw(await response.json());
    section.dataset.drawn = "true";
  }

  window.addEventListener("resize", () => {
    for (const el of section.querySelectorAll("[data-chart]")) {
      const plot = plots[el.dataset.chart];
      if (plot) plot.setSize({ width: Math.max(240, el.clientWidth), height: 180 });
    }
  });
  load();
  // Polling, not the request list's event stream: every point here is
  // an aggregate over a time bucket (nearest-rank p50/p95/p99, peak in
  // flight, process samples that the stream does not carry), and the
  // server computes it from indexes in milliseconds. Folding streamed
  // requests into buckets in the browser would need a second percentile
  // implementation and every request of the session kept in the page.
  if (live) setInterval(load, 2000);
})();
