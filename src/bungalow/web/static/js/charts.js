// Charts: SVG sparklines for the list, uPlot (vendored, loaded on first use) for graphs,
// SVG bars for sprawl, costs and the host.

import {h} from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

/**
 * A sparkline of `values` (numbers, oldest first) scaled to `max` (default: their largest),
 * `width` x `height` CSS pixels; `label` is its accessible name.
 */
export function sparkline(values, {max, width = 90, height = 20, label = ""} = {}) {
  const box = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, class: "spark",
                          role: "img", "aria-label": label});
  if (values.length < 2) return box;
  const top = max || Math.max(...values, 1e-9);
  const step = width / (values.length - 1);
  const points = values.map((v, i) =>
    `${(i * step).toFixed(1)},${(height - 1 - (Math.min(v, top) / top) * (height - 2)).toFixed(1)}`);
  box.append(svg("polyline", {points: points.join(" "), fill: "none", class: "spark-line"}));
  return box;
}

/**
 * Horizontal bars: rows [{label, value, text, title?, tone?, max?}], each scaled to its own
 * `max`, else to the largest value; returns a <table> so that screen readers read label and text.
 */
export function bars(rows, {testid} = {}) {
  const largest = Math.max(...rows.map((row) => row.value), 1e-9);
  return h("table", {class: "bars", "data-testid": testid},
    h("tbody", {}, rows.map((row) => h("tr", {title: row.title || ""},
      h("th", {scope: "row"}, row.label),
      h("td", {class: "bar-cell"},
        h("span", {class: `bar ${row.tone || ""}`,
                   style: `width:${Math.max(0, Math.min(100, (row.value / (row.max || largest)) * 100)).toFixed(1)}%`})),
      h("td", {class: "num"}, row.text)))));
}

let uplotModule = null;

/** uPlot's constructor, imported from the vendored package on first use. */
export async function uPlot() {
  if (!uplotModule) uplotModule = import("/vendor/uplot/dist/uPlot.esm.js");
  return (await uplotModule).default;
}

/**
 * A time graph in `target`: `series` [{label, value: (row) => number, unit}] over `rows`
 * [{time, ...}]; returns {update(rows), fit() (to the target's width, once it is shown), destroy()}.
 */
export async function timeGraph(target, title, series, rows, format) {
  const UPlot = await uPlot();
  const data = (list) => [list.map((r) => r.time), ...series.map((s) => list.map(s.value))];
  const colours = ["#2f6fb3", "#c0562b", "#3c8d40", "#8a4fb5"];
  const plot = new UPlot({
    title,
    width: Math.max(280, target.clientWidth || 560),
    height: 160,
    scales: {x: {time: true}},
    axes: [{}, {values: (_u, ticks) => ticks.map(format), size: 60}],
    series: [{}, ...series.map((s, i) => ({label: s.label, stroke: colours[i % colours.length],
                                            width: 1.5, value: (_u, v) => (v == null ? "-" : format(v))}))],
  }, data(rows), target);
  return {
    update(list) { plot.setData(data(list)); },
    fit() {
      if (target.clientWidth) plot.setSize({width: Math.max(280, target.clientWidth), height: 160});
    },
    destroy() { plot.destroy(); },
  };
}
