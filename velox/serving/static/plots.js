// The Velox dashboard: polls /dashboard/data and draws each series as an SVG line plot, every plot
// on the same time axis, with the versions' timeline (trained, activated, swapped, rolled back) as
// vertical marks across all of them. Plain DOM and SVG: nothing is fetched but the edge's own data.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 430, HEIGHT = 150, LEFT = 44, RIGHT = 6, TOP = 6, BOTTOM = 18;
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];
  const MARKS = {"trained": "#999999", "activated": "#2ca02c", "swapped": "#9ecae1", "rolled back": "#d62728"};
  const EVERY_MS = 2000;
  const asked = new URLSearchParams(window.location.search);
  const token = asked.get("token");
  const minutes = Number(asked.get("minutes")) || 5;  // ?minutes=N: the last N minutes (the edge keeps 15)

  function element(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function panel(name, title) {
    let div = document.getElementById("panel-" + name);
    if (!div) {
      div = document.createElement("div");
      div.className = "panel";
      div.id = "panel-" + name;
      const heading = document.createElement("h2");
      heading.textContent = title;
      div.appendChild(heading);
      div.appendChild(element("svg", {width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}`}));
      const legend = document.createElement("div");
      legend.className = "legend";
      div.appendChild(legend);
      document.getElementById("panels").appendChild(div);
    }
    return div;
  }

  function label(value) {
    if (value === 0) return "0";
    const size = Math.abs(value);
    if (size >= 1000) return (value / 1000).toFixed(1) + "k";
    if (size >= 10) return value.toFixed(0);
    if (size >= 1) return value.toFixed(2);
    return value.toPrecision(2);
  }

  function draw(name, series, start, end, timeline) {
    const div = panel(name, series.title);
    const svg = div.querySelector("svg");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const labels = Object.keys(series.lines);
    let top = 0, points = 0;
    for (const line of labels) for (const [, value] of series.lines[line]) top = Math.max(top, value);
    top = top > 0 ? top * 1.1 : 1;
    const x = (t) => LEFT + (WIDTH - LEFT - RIGHT) * (t - start) / (end - start);
    const y = (v) => HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * v / top;
    element("line", {x1: LEFT, y1: y(0), x2: WIDTH - RIGHT, y2: y(0), stroke: "#bbb"}, svg);
    element("line", {x1: LEFT, y1: TOP, x2: LEFT, y2: y(0), stroke: "#bbb"}, svg);
    element("text", {x: LEFT - 4, y: TOP + 8, "text-anchor": "end"}, svg).textContent = label(top);
    element("text", {x: LEFT - 4, y: y(0), "text-anchor": "end"}, svg).textContent = "0";
    for (const [offset, text] of [[0, `-${Math.round((end - start) / 60)} min`], [end - start, "now"]]) {
      element("text", {x: x(start + offset), y: HEIGHT - 4, "text-anchor": offset ? "end" : "start"}, svg).textContent = text;
    }
    for (const event of timeline) {
      if (event.at < start) continue;
      const mark = element("line", {x1: x(event.at), y1: TOP, x2: x(event.at), y2: y(0),
                                    stroke: MARKS[event.kind] || "#999", "stroke-dasharray": "3,2", class: "mark"}, svg);
      element("title", {}, mark).textContent = `${event.kind} ${event.version} ${event.detail}`;
    }
    const legend = div.querySelector(".legend");
    legend.textContent = "";
    labels.forEach((line, i) => {
      const shown = series.lines[line].filter(([t]) => t >= start);
      points += shown.length;
      const color = COLORS[i % COLORS.length];
      if (shown.length) {
        element("polyline", {points: shown.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
                             fill: "none", stroke: color, "stroke-width": 1.5}, svg);
        const last = shown[shown.length - 1];
        element("circle", {cx: x(last[0]), cy: y(last[1]), r: 2, fill: color}, svg);
      }
      const key = document.createElement("span");
      key.style.color = color;
      key.textContent = shown.length ? `${line}: ${label(shown[shown.length - 1][1])}` : line;
      legend.appendChild(key);
    });
    if (!labels.length) legend.textContent = "no data yet";
    div.dataset.points = String(points);
    div.dataset.marks = String(svg.querySelectorAll(".mark").length);
  }

  function list(timeline) {
    const div = document.getElementById("timeline");
    div.textContent = "";
    const heading = document.createElement("h2");
    heading.textContent = "versions";
    heading.style.fontSize = "0.9em";
    div.appendChild(heading);
    for (const event of timeline.slice(-15).reverse()) {
      const row = document.createElement("div");
      row.style.color = MARKS[event.kind] || "#333";
      row.textContent = `${new Date(event.at * 1000).toLocaleTimeString()} ${event.kind} ${event.version}` +
        (event.detail ? ` (${event.detail})` : "");
      div.appendChild(row);
    }
    div.dataset.events = String(timeline.length);
  }

  async function refresh() {
    const status = document.getElementById("status");
    try {
      const answer = await fetch("/dashboard/data", {headers: token ? {"Authorization": "Bearer " + token} : {},
                                                    cache: "no-store"});
      if (!answer.ok) {
        status.textContent = `no data: the edge answered ${answer.status}`;
        return;
      }
      const data = await answer.json();
      const end = data.now, start = end - Math.min(data.span, minutes * 60);
      for (const [name, series] of Object.entries(data.series)) draw(name, series, start, end, data.timeline);
      list(data.timeline);
      status.textContent = `model ${data.model} at ${data.worker}'s edge · updated ` +
        new Date(end * 1000).toLocaleTimeString();
      document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
    } catch (failure) {
      status.textContent = `no data: ${failure}`;
    }
  }

  refresh();
  window.setInterval(refresh, EVERY_MS);
})();
