// The training controls (penalty, its rate, epochs per frame, log-scale loss chart,
// discretised output, the noise slider): their URL keys, how each change reaches the run,
// and the loss chart's axis. Loaded before app.js, which keeps every key in the URL.
"use strict";

// Keys the server checks; the first three train, the last two only change the drawing.
const CONTROL_KEYS = ["penalty", "rate", "speed", "logscale", "discretize"];
const VIEW_KEYS = ["logscale", "discretize"];  // a change redraws: no new run
const LIVE_KEYS = ["speed"];  // a change reaches the run as it trains: no reset
let lastFrame = null;  // the frame drawn last, redrawn when a view switch changes

// A field's value as the URL and the server write it. A switch holds a value from the URL
// that it cannot show ("maybe") until the user sets it, so the server can say why not.
function fieldValue(el) {
  if (el.type !== "checkbox") return el.value;
  return el.dataset.raw !== undefined ? el.dataset.raw : String(el.checked);
}

function setField(el, value) {
  if (el.type !== "checkbox") { el.value = value; return; }
  el.checked = value === "true";
  if (value === "true" || value === "false") delete el.dataset.raw; else el.dataset.raw = value;
}

// What a change of `key` does: redraw, tell the run, or start a new run (`start`).
function onControlChange(key, start) {
  if (VIEW_KEYS.includes(key)) {
    return () => { delete $(key).dataset.raw; writeHash(); if (lastFrame) draw(lastFrame); };
  }
  if (LIVE_KEYS.includes(key)) return () => changeLive(key, start);
  return start;
}

async function changeLive(key, start) {
  await starting;
  if (!runId) { await start(); return; }
  writeHash();
  try { await post(`/api/sessions/${runId}/${key}`, { [key]: $(key).value }); showError(""); }
  catch (e) { showError(e.message); }
}

// The loss chart's vertical axis: linear from 0, or logarithmic between the smallest and
// the largest loss (a loss of 0 has no place on it and is left out).
function lossAxis(points, h) {
  const values = points.flatMap((p) => [p[1], p[2]]);
  const top = Math.max(...values) || 1;
  if (!$("logscale").checked) {
    return { y: (v) => h - 4 - (h - 8) * v / top, top: top.toPrecision(3), bottom: "0" };
  }
  const positive = values.filter((v) => v > 0);
  const high = Math.log10(Math.max(...positive, 1e-12)), low = Math.log10(Math.min(...positive, 1e12));
  const span = Math.max(high - low, 1e-9);
  return { y: (v) => (v > 0 ? h - 4 - (h - 8) * (Math.log10(v) - low) / span : NaN),
           top: Math.pow(10, high).toPrecision(3), bottom: Math.pow(10, low).toPrecision(3) + " (log)" };
}

// The decision regions' shade: by how sure the network is, or one shade (discretised).
function shade(strength) { return $("discretize").checked ? 0.75 : 0.15 + 0.6 * strength / 255; }

// The noise slider moves the data set's noise field (and its change starts the new run).
function wireNoiseSlider() {
  const slider = $("noise-slider"), field = $("noise");
  const follow = () => { slider.value = field.value; slider.disabled = field.disabled; };
  slider.addEventListener("input", () => { field.value = slider.value; });
  slider.addEventListener("change", () => field.dispatchEvent(new Event("change")));
  field.addEventListener("change", follow);
  window.addEventListener("hashchange", () => setTimeout(follow));  // after app.js reads it
  return follow;
}

// Picking a data set of another view: a loss (and, for images, a network) that fits it.
function fitViewToData(picked) {
  if (!picked) return;
  const regression = picked.view === "curve" || picked.view === "surface";
  if (regression) $("loss").value = "mse";
  else if ($("loss").value === "mse") $("loss").value = "cross_entropy";
  if (picked.view === "image") {
    $("loss").value = "cross_entropy";
    $("layers").value = "conv2d:out=8,k=3,pad=1,relu,maxpool2d:k=2,flatten,linear:out=10";
    $("batch").value = "32"; $("lr").value = "0.01";
  } else if ($("layers").value.startsWith("conv2d")) {
    $("layers").value = "";
  }
}
