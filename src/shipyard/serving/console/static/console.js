/* shipyard console: draws the uPlot charts of a page from the JSON it embeds.
 *
 * A chart is <div class="chart" data-chart="ID"> next to <script type="application/json"
 * id="ID">{"x": [epoch seconds], "series": [{"label", "values"}], "logToggle": bool}</script>
 * (the page's Content-Security-Policy allows no inline script: data only). Charts whose data
 * says logToggle get a "log scale" checkbox; on a log scale values <= 0 are left out and
 * values under 1e-10 drawn at 1e-10. Without JavaScript (or uPlot) the table beside each
 * chart shows the same numbers.
 */
(function () {
  "use strict";

  var COLORS = ["#2451b3", "#c4322b", "#2e9d5b", "#d08a00", "#7a3db8", "#0f8a8a",
                "#b3246b", "#5b6b00", "#8a5a2b", "#3b7dd8", "#e0603a", "#546e7a"];

  /* A log axis over a hundred decades takes uPlot seconds to draw: values under FLOOR (tiny
   * p-values) are drawn at FLOOR; the table keeps the exact numbers. */
  var FLOOR = 1e-10;

  function positive(values) {
    return values.map(function (v) { return v !== null && v > 0 ? Math.max(v, FLOOR) : null; });
  }

  /* An axis label: 0.05, 1.2k-free plain numbers; 1e-7 for the tiny p-values of a log axis. */
  function tick(v) {
    if (v === null || v === undefined) { return ""; }
    var size = Math.abs(v);
    if (v === 0 || (size >= 0.001 && size < 1e7)) { return String(Number(v.toPrecision(3))); }
    return v.toExponential(0);
  }

  /* One report: a day around it (uPlot would otherwise stretch one instant over years). */
  function around(x) {
    return function () { return [x - 43200, x + 43200]; };
  }

  function draw(holder, spec, log) {
    if (holder._plot) { holder._plot.destroy(); holder._plot = null; }
    var plotArea = holder.querySelector(".chart-area");
    var series = [{ label: "time" }];
    var data = [spec.x];
    spec.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
                    points: { show: spec.x.length < 60 } });
      data.push(log ? positive(s.values) : s.values);
    });
    var options = {
      width: Math.max(plotArea.clientWidth || holder.clientWidth || 400, 280),
      height: 240,
      series: series,
      scales: { x: spec.x.length > 1 ? { time: true } : { time: true, range: around(spec.x[0]) },
                y: log ? { distr: 3, log: 10 } : { auto: true } },
      axes: [{}, { size: 64, values: function (u, splits) { return splits.map(tick); } }],
      legend: { live: true }
    };
    holder._plot = new window.uPlot(options, data, plotArea);
  }

  function build(holder) {
    if (holder.dataset.built === "1") { return; }
    var source = document.getElementById(holder.dataset.chart);
    if (!source || typeof window.uPlot !== "function") { return; }
    var spec;
    try { spec = JSON.parse(source.textContent); } catch (e) { return; }
    if (!spec.x || !spec.x.length) { return; }
    holder.dataset.built = "1";
    holder.textContent = "";
    if (spec.logToggle) {
      var tools = document.createElement("div");
      tools.className = "chart-tools";
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.className = "log-toggle";
      box.checked = true;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" log scale"));
      tools.appendChild(label);
      holder.appendChild(tools);
      box.addEventListener("change", function () { draw(holder, spec, box.checked); });
    }
    var area = document.createElement("div");
    area.className = "chart-area";
    holder.appendChild(area);
    draw(holder, spec, Boolean(spec.logToggle));
  }

  function buildAll(root) {
    var holders = (root || document).querySelectorAll("div.chart[data-chart]");
    Array.prototype.forEach.call(holders, build);
  }

  document.addEventListener("DOMContentLoaded", function () { buildAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { buildAll(event.target); });
})();
