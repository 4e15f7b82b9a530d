// The views of data sets other than 2-D classes (playground/views.py says what the server
// sends): a regression's fitted curve or surface over its points, and for images the
// class probabilities of the digit drawn in draw.js. Every value comes from the server.
"use strict";

const LOW_COLOUR = [245, 147, 34], HIGH_COLOUR = [8, 119, 189];  // TF Playground's orange, blue

function floats(b64) { return new Float32Array(bytes(b64).buffer); }

// Which panel shows: the square canvas for points, the drawing panel for images.
function showView(kind) {
  $("heatmap").hidden = kind === "image";
  $("points-key").hidden = kind === "image";
  $("points-key").textContent = pointsKey(kind);
  $("digit-panel").hidden = kind !== "image";
  // An image set is a fixed table of its own size (the train share still splits it), and
  // draws no grid.
  for (const id of ["size", "grid"]) $(id).disabled = kind === "image";
}

// What the colours and dots of the square mean, for the view shown.
function pointsKey(kind) {
  if (kind === "curve") {
    return "Black line: the network's output; filled dots: training points; ringed dots: test points.";
  }
  if (kind === "surface") {
    const [low, high] = setup.range.map((v) => v.toPrecision(3));
    return `Colour: the network's output, orange at ${low}, white half way, blue at ${high}; ` +
      "dots: the points' own values (thick dark ring: test points).";
  }
  return "Filled dots: training points; ringed dots: test points.";
}

function drawView(frame) {
  showView(setup.view);
  if (setup.view === "curve") drawCurveView(floats(frame.curve));
  else if (setup.view === "surface") drawSurfaceView(floats(frame.surface));
  else if (setup.view === "image") drawProbabilities(frame.probe);
}

// A value's place between the targets' lowest and highest (0 to 1), in `bands` steps
// when the output is discretised.
function level(v) {
  const [low, high] = setup.range, t = (v - low) / ((high - low) || 1);
  if (!$("discretize").checked) return t;
  const bands = 8;
  return Math.min(bands - 1, Math.max(0, Math.floor(t * bands))) / (bands - 1);
}

// Orange for the lowest value, white half way, blue for the highest (a diverging map).
function colourOf(t) {
  const c = Math.min(1, Math.max(0, t));
  const [end, s] = c < 0.5 ? [LOW_COLOUR, 1 - 2 * c] : [HIGH_COLOUR, 2 * c - 1];
  return end.map((k) => Math.round(255 + (k - 255) * s));
}

function drawCurveView(values) {
  const canvas = $("heatmap"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const [x0, x1] = setup.domain, [low, high] = setup.range, margin = 0.1 * ((high - low) || 1);
  const px = (x) => (x - x0) / (x1 - x0) * w;
  const py = (t) => h - (t * (high - low) + margin) / (high - low + 2 * margin) * h;  // t: level
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#eee"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(0, py(level(0))); ctx.lineTo(w, py(level(0))); ctx.stroke();
  for (const [points, filled] of [[setup.train, true], [setup.test, false]]) {
    for (let i = 0; i < points.x.length; i++) {
      ctx.beginPath();
      ctx.arc(px(points.x[i]), py((points.value[i] - low) / ((high - low) || 1)), 2.4, 0, 2 * Math.PI);
      ctx.fillStyle = filled ? `rgb(${HIGH_COLOUR})` : "#fff";
      ctx.strokeStyle = filled ? "#fff" : `rgb(${LOW_COLOUR})`;
      ctx.lineWidth = filled ? 0.8 : 1.4;
      ctx.fill(); ctx.stroke();
    }
  }
  ctx.beginPath(); ctx.strokeStyle = "#222"; ctx.lineWidth = 2.5;
  const n = values.length, step = (x1 - x0) / n;
  for (let i = 0; i < n; i++) {
    const x = px(x0 + step * (i + 0.5)), y = py(level(values[i]));
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  }
  ctx.stroke();
  ctx.fillStyle = "#555"; ctx.font = "11px system-ui";
  ctx.fillText(`${high.toPrecision(3)}`, 4, py(1) - 4); ctx.fillText(`${low.toPrecision(3)}`, 4, py(0) + 12);
}

function drawSurfaceView(values) {
  const n = setup.grid, cells = new OffscreenCanvas(n, n), ctx = cells.getContext("2d");
  const image = ctx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const colour = colourOf(level(values[i]));
    for (let k = 0; k < 3; k++) image.data[4 * i + k] = Math.round(255 + (colour[k] - 255) * 0.8);
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const canvas = $("heatmap"), out = canvas.getContext("2d");
  out.imageSmoothingEnabled = !$("discretize").checked;
  out.drawImage(cells, 0, 0, canvas.width, canvas.height);
  const [x0, x1, y0, y1] = setup.domain, [low, high] = setup.range;
  const px = (x) => (x - x0) / (x1 - x0) * canvas.width;
  const py = (y) => (y1 - y) / (y1 - y0) * canvas.height;
  for (const [points, filled] of [[setup.train, true], [setup.test, false]]) {
    for (let i = 0; i < points.x.length; i++) {
      const c = colourOf((points.value[i] - low) / ((high - low) || 1));
      out.beginPath();
      out.arc(px(points.x[i]), py(points.y[i]), 2.6, 0, 2 * Math.PI);
      out.fillStyle = `rgb(${c})`;  // a point's own value; ringed thicker when a test point
      out.strokeStyle = filled ? "#888" : "#333";
      out.lineWidth = filled ? 0.5 : 1.1;
      out.fill(); out.stroke();
    }
  }
}

// One bar per class; the list also carries the numbers (data-probabilities) as sent.
function drawProbabilities(probe) {
  const list = $("probabilities");
  if (!probe || !digitDrawn()) { list.replaceChildren(); delete list.dataset.probabilities; return; }
  const best = probe.indexOf(Math.max(...probe));
  list.replaceChildren(...probe.map((p, k) => {
    const item = document.createElement("li"), name = document.createElement("span");
    const bar = document.createElement("div"), value = document.createElement("span");
    name.textContent = setup.class_names[k] ?? String(k);
    bar.className = "bar"; bar.style.width = `${(100 * p).toFixed(1)}%`;
    value.className = "value"; value.textContent = `${(100 * p).toFixed(1)}%`;
    item.classList.toggle("top", k === best);
    item.append(name, bar, value);
    return item;
  }));
  list.dataset.probabilities = JSON.stringify(probe);
}

// A regression's error is the RMSE in the target's units; a classifier's a share.
function errorText(x) { return setup && setup.task === "regression" ? fixed(x) : percent(x); }
