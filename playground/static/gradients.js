// The backward pass made visible: each layer's gradient norm and update-to-weight ratio over
// time (log scale, one line per layer), and in one-step mode the gradient flowing back
// through each module for the batch just taken. The numbers come from the framework's own
// backward, read on the server after each step (playground/inspection.py).
"use strict";

const Gradients = (() => {
  const COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
                   "#666666", "#1f78b4"];
  let history = [], names = [];  // history: [at, grad norms, update ratios]

  function reset() { history = []; names = []; }

  function add(gradients) {
    if (!gradients) return;
    names = gradients.layers;
    const last = history[history.length - 1];
    if (last && last[0] === gradients.at) return;
    if (last && gradients.at < last[0]) history = [];  // a new run from epoch 0
    history.push([gradients.at, gradients.grad_norm, gradients.update_ratio]);
  }

  function chart(canvas, which, label) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    const left = 42, right = 8, top = 18, bottom = 18;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#ddd"; ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
    ctx.fillStyle = "#555"; ctx.font = "11px system-ui";
    ctx.fillText(label, left, 12);
    const values = history.flatMap((p) => p[which]).filter((v) => v !== null && v > 0);
    canvas.dataset.lines = "0";
    if (!values.length) return;
    let low = Math.floor(Math.log10(Math.min(...values))), high = Math.ceil(Math.log10(Math.max(...values)));
    if (high === low) high = low + 1;
    const first = history[0][0], last = Math.max(history[history.length - 1][0], first + 1e-9);
    const px = (at) => left + (w - left - right) * (at - first) / (last - first);
    const py = (v) => h - bottom - (h - top - bottom) * (Math.log10(v) - low) / (high - low);
    const step = Math.max(1, Math.ceil((high - low) / 6));
    for (let d = low; d <= high; d += step) {  // one grid line a decade (or a few)
      const y = py(10 ** d);
      ctx.strokeStyle = "#eee"; ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      ctx.fillStyle = "#777"; ctx.fillText(`1e${d}`, 4, y + 4);
    }
    ctx.fillText(`epoch ${Number(first.toFixed(2))}`, left, h - 4);
    ctx.fillText(`${Number(last.toFixed(2))}`, w - right - 40, h - 4);
    let drawn = 0;
    names.forEach((_, k) => {
      ctx.beginPath(); ctx.strokeStyle = COLOURS[k % COLOURS.length]; ctx.lineWidth = 1.5;
      let started = false, points = 0;
      for (const p of history) {
        const v = p[which][k];
        if (v === null || v === undefined || !(v > 0)) { started = false; continue; }
        if (started) ctx.lineTo(px(p[0]), py(v)); else ctx.moveTo(px(p[0]), py(v));
        started = true; points += 1;
      }
      if (history.length === 1 && points) ctx.arc(px(history[0][0]), py(history[0][which][k]), 2, 0, 2 * Math.PI);
      ctx.stroke();
      if (points) drawn += 1;  // a layer counts once it has a value to draw (the tests read it)
    });
    canvas.dataset.lines = String(drawn);
  }

  function key(list) {
    if (list.dataset.names === names.join("|")) return;
    list.dataset.names = names.join("|");
    list.replaceChildren(...names.map((name, k) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch"; swatch.style.background = COLOURS[k % COLOURS.length];
      item.append(swatch, name);
      return item;
    }));
  }

  // One-step mode: d loss / d (each module's output) for the batch, from the loss back.
  function flow(panel, onestep) {
    panel.hidden = !onestep;
    if (!onestep) return;
    const batches = onestep.batches, at = onestep.at;
    const epoch = Math.floor(at - 1e-9) + 1, batch = Math.round((at - epoch + 1) * batches);
    const rows = onestep.flow.map((f, i) => {
      const row = document.createElement("div");
      row.className = "flow-row";
      row.style.animationDelay = `${i * 0.18}s`;  // revealed from the loss back to the input
      const name = document.createElement("span");
      name.className = "flow-name";
      name.textContent = `\u2202L/\u2202 ${f.name} (module ${f.module + 1})`;
      const cells = document.createElement("span");
      cells.className = "flow-cells";
      const top = Math.max(1e-30, ...f.mean.map(Math.abs));
      f.mean.forEach((g, u) => {
        const cell = document.createElement("span");
        cell.className = "flow-cell";
        const a = Math.abs(g) / top, c = g < 0 ? [245, 147, 34] : [8, 119, 189];
        cell.style.background = `rgb(${c.map((x) => Math.round(255 + (x - 255) * a))})`;
        cell.title = `unit ${u + 1}: mean ${g.toPrecision(3)}, rms ${f.rms[u].toPrecision(3)}`;
        cells.append(cell);
      });
      if (f.units > f.mean.length) cells.append(` +${f.units - f.mean.length}`);
      const norm = document.createElement("span");
      norm.className = "flow-norm";
      norm.textContent = `\u2016g\u2016 ${f.norm.toPrecision(3)}`;
      row.append(name, cells, norm);
      return row;
    });
    const title = document.createElement("p");
    title.className = "hint";
    title.textContent = `Epoch ${epoch}, batch ${batch} of ${batches}: the gradient of the loss ` +
      `with respect to each module's output, as the hand-written backward passed it back ` +
      `(colour: the batch's mean per unit, orange below 0, blue above).`;
    panel.replaceChildren(title, ...rows);
  }

  function draw(frame) {
    add(frame.gradients);
    chart(document.getElementById("grad-norms"), 1, "gradient norm \u2016\u2202L/\u2202W\u2016 (log)");
    chart(document.getElementById("update-ratios"), 2, "update / weight \u2016\u0394W\u2016/\u2016W\u2016 (log)");
    key(document.getElementById("layer-key"));
    flow(document.getElementById("flow"), frame.onestep);
  }

  return { draw, reset };
})();
