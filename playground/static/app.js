// The playground page: it keeps the configuration in the URL, asks the server to train,
// and draws the frames the server streams. No training happens here.
"use strict";

const KEYS = ["data", "options", "noise", "size", "ratio", "seed", "hidden", "act", "layers", "loss",
              "init", "optimizer", "lr", "batch", "grid"];
KEYS.push(...CONTROL_KEYS);  // controls.js: penalty, rate, speed, logscale, discretize
const SELECTS = { data: "datasets", act: "activations", loss: "losses", init: "initializers",
                  optimizer: "optimizers" };
// One colour per class (class 0 orange, class 1 blue, as TensorFlow Playground).
const PALETTE = [[245, 147, 34], [8, 119, 189], [46, 160, 44], [214, 39, 40], [148, 103, 189],
                 [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

const $ = (id) => document.getElementById(id);
let choices = null, runId = null, source = null, setup = null, curve = [], playing = false;
let starting = Promise.resolve();  // the run being started; controls wait for it

function showError(text) { const e = $("error"); e.textContent = text; e.hidden = !text; }

function config() {
  const c = {};
  for (const key of KEYS) c[key] = fieldValue($(key));
  Object.assign(c, Inside.config());  // the inside views' switches (inside.js)
  return c;
}

function readHash() {
  const given = new URLSearchParams(location.hash.slice(1));
  for (const key of KEYS) {
    const value = given.has(key) ? given.get(key) : String(choices.defaults[key]);
    const el = $(key);
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) {
      el.add(new Option(value + " (not registered)", value));  // the server says why
    }
    setField(el, value);
  }
  Inside.readHash(given, choices.defaults);
}

function writeHash() {
  const params = new URLSearchParams(config());
  history.replaceState(null, "", "#" + params.toString());
}

async function post(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function stop() {
  if (source) source.close();
  if (runId) {
    fetch(`/api/sessions/${runId}`, { method: "DELETE", headers: { "Content-Type": "application/json" },
                                      keepalive: true }).catch(() => {});
  }
  source = null; runId = null;
}

function start() {
  starting = starting.then(begin);
  return starting;
}

async function begin() {
  stop();
  writeHash();
  setPlaying(false);
  try {
    runId = (await post("/api/sessions", config())).id;
  } catch (e) {
    showError(e.message); $("state").textContent = "not training: fix the setting above";
    return;
  }
  showError("");
  source = new EventSource(`/api/sessions/${runId}/events`);
  source.addEventListener("setup", (event) => {
    setup = JSON.parse(event.data); curve = [];
    resendDigit();  // draw.js: a new run sees the drawing too
    Inside.reset();  // inside.js: the gradient history starts again
  });
  source.addEventListener("frame", (event) => draw(JSON.parse(event.data)));
  source.addEventListener("end", (event) => {  // the server stopped the run, and says why
    showError(JSON.parse(event.data).reason);
    setPlaying(false); $("state").textContent = "stopped";
    if (source) source.close();
    source = null; runId = null;
  });
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      showError("lost the connection to the server; press reset to start again");
    }
  };
}

async function control(action) {
  await starting;
  if (!runId) { await start(); if (!runId) return; }
  try { await post(`/api/sessions/${runId}/control`, { action }); }
  catch (e) { showError(e.message); if (action === "reset") await start(); }
}

function setPlaying(on) {
  playing = on;
  $("play").textContent = on ? "pause" : "play";
  $("play").classList.toggle("playing", on);
}

// A number the server could not give (a diverged loss arrives as null): a dash.
function percent(x) { return x === null ? "\u2013" : (100 * x).toFixed(1) + "%"; }
function fixed(x) { return x === null ? "\u2013" : x.toFixed(4); }

function draw(frame) {
  if (!setup || frame.setup === undefined) return;
  setPlaying(frame.playing);
  if (frame.error) showError(frame.error);
  $("epoch").textContent = frame.epoch;
  lastFrame = frame;
  $("train-error").textContent = errorText(frame.train_error);  // views.js: RMSE or a share
  $("test-error").textContent = errorText(frame.test_error);
  $("train-loss").textContent = fixed(frame.train_loss);
  $("test-loss").textContent = fixed(frame.test_loss);
  $("state").textContent = frame.error ? "stopped: see the message above" : frame.playing ? "training" : "paused";
  const finite = frame.train_loss !== null && frame.test_loss !== null;
  if (finite && (!curve.length || curve[curve.length - 1][0] !== frame.epoch)) {
    curve.push([frame.epoch, frame.train_loss, frame.test_loss]);
  }
  if (frame.heatmap) { showView("plane"); drawHeatmap(frame.heatmap); } else drawView(frame);
  drawCurves();
  Inside.draw(frame);  // the diagram, the gradients, one step (inside.js)
}

function bytes(b64) { return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)); }

function drawHeatmap(heatmap) {
  const n = setup.grid, classes = bytes(heatmap.classes), strength = bytes(heatmap.strength);
  const cells = new OffscreenCanvas(n, n), ctx = cells.getContext("2d");
  const image = ctx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const colour = PALETTE[classes[i] % PALETTE.length], a = shade(strength[i]);
    for (let k = 0; k < 3; k++) image.data[4 * i + k] = Math.round(255 + (colour[k] - 255) * a);
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const canvas = $("heatmap"), out = canvas.getContext("2d");
  out.imageSmoothingEnabled = true;
  out.drawImage(cells, 0, 0, canvas.width, canvas.height);
  const [x0, x1, y0, y1] = setup.domain;
  const px = (x) => (x - x0) / (x1 - x0) * canvas.width;
  const py = (y) => (y1 - y) / (y1 - y0) * canvas.height;
  for (const [points, filled] of [[setup.train, true], [setup.test, false]]) {
    for (let i = 0; i < points.x.length; i++) {
      const c = PALETTE[points.label[i] % PALETTE.length];
      out.beginPath();
      out.arc(px(points.x[i]), py(points.y[i]), 2.6, 0, 2 * Math.PI);
      out.fillStyle = filled ? `rgb(${c})` : "rgba(255,255,255,0.9)";
      out.strokeStyle = filled ? "#fff" : `rgb(${c})`;
      out.lineWidth = filled ? 0.8 : 1.6;
      out.fill(); out.stroke();
    }
  }
}

function drawCurves() {
  const canvas = $("curves"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (curve.length < 1) return;
  const last = Math.max(1, curve[curve.length - 1][0]);
  const axis = lossAxis(curve, h);  // controls.js: linear or log
  ctx.strokeStyle = "#ddd"; ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  for (const [index, colour] of [[1, "#0877bd"], [2, "#f59322"]]) {
    ctx.beginPath(); ctx.strokeStyle = colour; ctx.lineWidth = 1.5;
    curve.forEach((p, i) => {
      const x = 4 + (w - 8) * p[0] / last, y = axis.y(p[index]);
      if (!Number.isFinite(y)) return;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#555"; ctx.font = "11px system-ui";
  ctx.fillText(axis.top, 6, 14); ctx.fillText(axis.bottom, 6, h - 6);
  ctx.fillText("epoch " + last, w - 70, 14);
}

async function download() {
  await starting;
  if (!runId) return;
  const response = await fetch(`/api/sessions/${runId}/model`);
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    showError(data.error || `the server answered ${response.status}`);
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `playground-${$("data").value}.safetensors`;
  link.click();
  URL.revokeObjectURL(link.href);
}

// A data set's own defaults when it is picked: its noise (none: 0, and the field is off).
function pickedData() {
  const picked = choices.datasets.find((d) => d.name === $("data").value);
  const takesNoise = Boolean(picked && "noise" in picked.options);
  $("noise").disabled = !takesNoise;
  const others = picked ? Object.keys(picked.options).filter((k) => k !== "n" && k !== "noise") : [];
  $("options").placeholder = others.length ? others.map((k) => `${k}=${picked.options[k]}`).join(",") : "none";
  $("options").disabled = !others.length;
  return { picked, takesNoise };
}

function fillChoices() {
  for (const [id, kind] of Object.entries(SELECTS)) {
    for (const c of choices[kind]) $(id).add(new Option(c.name, c.name));
  }
  for (const kind of ["layers", "activations"]) {
    for (const c of choices[kind]) {
      const button = document.createElement("button");
      button.textContent = c.name;
      button.title = `${c.summary} [${c.plugin}]`;
      if (!c.plugin.startsWith("plugins.")) button.classList.add("plugin");
      button.addEventListener("click", () => {
        const text = $("layers").value.trim();
        $("layers").value = text ? `${text},${c.name}` : c.name;
        $("layers").dispatchEvent(new Event("change"));
      });
      $("components").append(button);
    }
  }
  const l = choices.limits;
  $("limits").textContent = `Limits: ${l.min_points}-${l.max_points} points, widths up to ${l.max_width}, ` +
    `${l.max_parameters} weights, heat maps up to ${l.max_grid} cells a side, ` +
    `${l.max_epochs_per_second} epochs a second, ${l.max_sessions} tabs training at once, ` +
    `a penalty rate up to ${l.max_rate}, up to ${l.max_speed} epochs a frame.`;
}

async function main() {
  try {
    choices = await (await fetch("/api/choices")).json();
  } catch (e) {
    showError("cannot reach the playground server: is `nn-cli serve` running?");
    return;
  }
  fillChoices();
  readHash();
  pickedData();
  const followNoise = wireNoiseSlider();  // controls.js
  followNoise();
  wireDigitCanvas();  // draw.js
  $("data").addEventListener("change", () => {
    const { picked, takesNoise } = pickedData();
    $("noise").value = takesNoise ? String(picked.options.noise) : "0";
    $("options").value = "";
    fitViewToData(picked);  // controls.js: a loss (and a CNN) for a curve, a surface, images
    followNoise();
  }, true);  // before the run restarts with the new set
  for (const key of KEYS) $(key).addEventListener("change", onControlChange(key, start));
  $("play").addEventListener("click", () => control(playing ? "pause" : "play"));
  $("step").addEventListener("click", () => control("step"));
  $("reset").addEventListener("click", () => (runId ? control("reset") : start()));
  $("download").addEventListener("click", download);
  window.addEventListener("hashchange", () => { readHash(); pickedData(); start(); });
  window.addEventListener("pagehide", stop);
  Inside.listen({ run: async () => { await starting; return runId; }, post, writeHash, showError });
  await start();
}

main();
