// The network diagram: each layer's units as small heat maps of their activation over the
// input plane, the weights between them as lines (colour: sign, width: size). Hovering a
// unit or a line shows its value. Everything drawn comes in the frame (playground/inspection.py).
"use strict";

const Diagram = (() => {
  const NEGATIVE = [245, 147, 34], POSITIVE = [8, 119, 189];  // orange below 0, blue above
  const BOX = 44, COLUMN = 150, ROW = 56, TOP = 34, LEFT = 10;  // px
  const SVG = "http://www.w3.org/2000/svg";
  let shape = "", units = [], lines = [], more = [];
  let current = null;  // the diagram last drawn, for the tooltip
  const CAPTION = "Each unit's output over the plotted square (orange below 0, blue above); " +
    "lines: the weights (colour: sign, width: size). Hover for values.";
  const RINGS = " One step: each unit's ring is the loss's gradient with respect to its output " +
    "(the batch's mean, against the layer's largest; orange below 0, blue above).";

  // -1 .. 1 -> orange .. white .. blue
  function colour(v) {
    const c = v < 0 ? NEGATIVE : POSITIVE, a = Math.min(1, Math.abs(v));
    return [0, 1, 2].map((k) => Math.round(255 + (c[k] - 255) * a));
  }
  function rgb(v) { return `rgb(${colour(v)})`; }
  function number(x) { return x === null || x === undefined ? "\u2013" : Number(x).toPrecision(3); }

  function centre(layer, unit) { return [LEFT + layer * COLUMN + BOX / 2, TOP + unit * ROW + BOX / 2]; }

  // The boxes, lines and labels, built again only when the network's shape changes.
  function build(root, diagram) {
    root.replaceChildren();
    units = []; lines = []; more = [];
    const layers = diagram.layers, tall = Math.max(...layers.map((l) => l.low.length));
    const svg = document.createElementNS(SVG, "svg");
    const drawn = document.createElementNS(SVG, "g"), hits = document.createElementNS(SVG, "g");
    svg.append(drawn, hits);  // the hit lines above the drawn ones
    const width = LEFT * 2 + (layers.length - 1) * COLUMN + BOX, height = TOP + tall * ROW + 24;
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.id = "weights";
    root.append(svg);
    root.style.width = width + "px"; root.style.height = height + "px";
    layers.forEach((layer, i) => {
      const title = document.createElement("div");
      title.className = "layer-name";
      title.textContent = i === 0 ? "input" : i === layers.length - 1 ? `output (${layer.name})` : layer.name;
      title.style.left = (LEFT + i * COLUMN - 20) + "px";
      root.append(title);
      const shown = [];
      for (let u = 0; u < layer.low.length; u++) {
        const box = document.createElement("canvas");
        box.width = box.height = diagram.cells;
        box.className = "unit";
        box.dataset.layer = i; box.dataset.unit = u;
        const [x, y] = centre(i, u);
        box.style.left = (x - BOX / 2) + "px"; box.style.top = (y - BOX / 2) + "px";
        box.addEventListener("mouseenter", (e) => tip(e, unitText(i, u)));
        box.addEventListener("mousemove", move);
        box.addEventListener("mouseleave", hide);
        root.append(box);
        shown.push(box);
      }
      units.push(shown);
      const hidden = layer.units - shown.length;
      const label = document.createElement("div");
      label.className = "more";
      label.textContent = hidden > 0 ? `+${hidden} more` : "";
      label.style.left = (LEFT + i * COLUMN) + "px";
      label.style.top = (TOP + shown.length * ROW - 6) + "px";
      root.append(label);
      more.push(label);
      const into = [];
      if (i > 0 && layer.weights) {
        layer.weights.forEach((row, a) => row.forEach((_, b) => {
          const [x1, y1] = centre(i - 1, a), [x2, y2] = centre(i, b);
          const seen = document.createElementNS(SVG, "line"), hit = document.createElementNS(SVG, "line");
          for (const l of [seen, hit]) {
            l.setAttribute("x1", x1 + BOX / 2); l.setAttribute("y1", y1);
            l.setAttribute("x2", x2 - BOX / 2); l.setAttribute("y2", y2);
          }
          seen.setAttribute("class", "weight");
          hit.setAttribute("class", "weight-hit");  // wide and clear: easy to hover
          hit.addEventListener("mouseenter", (e) => { seen.classList.add("hover"); tip(e, lineText(i, a, b)); });
          hit.addEventListener("mousemove", move);
          hit.addEventListener("mouseleave", () => { seen.classList.remove("hover"); hide(); });
          drawn.append(seen); hits.append(hit);
          into.push([seen, a, b]);
        }));
      }
      lines.push(into);
    });
  }

  function draw(root, diagram) {
    current = diagram;
    const caption = root.parentElement.querySelector("figcaption");
    if (!diagram || !diagram.layers) {
      root.replaceChildren(); shape = "";
      root.textContent = diagram ? "The diagram draws networks of 2-D inputs with plain layers only." : "";
      caption.hidden = true;  // it explains a diagram that is not there
      return;
    }
    caption.hidden = false;
    caption.textContent = CAPTION + (diagram.layers.some((l) => l.grad) ? RINGS : "");
    const key = diagram.layers.map((l) => `${l.name}:${l.units}:${l.weights ? l.weights.length : 0}`).join("|");
    if (key !== shape) { build(root, diagram); shape = key; }
    const n = diagram.cells, cells = n * n;
    diagram.layers.forEach((layer, i) => {
      const codes = Uint8Array.from(atob(layer.maps), (c) => c.charCodeAt(0));
      units[i].forEach((box, u) => {
        const ctx = box.getContext("2d"), image = ctx.createImageData(n, n);
        for (let c = 0; c < cells; c++) {
          const [r, g, b] = colour(codes[u * cells + c] / 127.5 - 1);
          image.data[4 * c] = r; image.data[4 * c + 1] = g; image.data[4 * c + 2] = b; image.data[4 * c + 3] = 255;
        }
        ctx.putImageData(image, 0, 0);
        const grad = layer.grad ? layer.grad[u] : null;  // one-step mode: d loss / d unit
        box.classList.toggle("gradient", grad !== null && grad !== undefined);
        box.style.outlineColor = grad === null || grad === undefined ? "" : rgb(grad / gradScale(layer));
      });
    });
    let top = 0;
    for (const layer of diagram.layers) for (const row of layer.weights || []) for (const w of row) top = Math.max(top, Math.abs(w));
    diagram.layers.forEach((layer, i) => {
      for (const [line, a, b] of lines[i]) {
        const w = layer.weights[a][b], size = top ? Math.abs(w) / top : 0;
        line.setAttribute("stroke", rgb(Math.sign(w) * (0.35 + 0.65 * size)));
        line.setAttribute("stroke-width", (0.5 + 4.5 * size).toFixed(2));
      }
    });
  }

  function gradScale(layer) { return Math.max(1e-30, ...layer.grad.map(Math.abs)); }

  function unitText(i, u) {
    const layer = current.layers[i];
    const name = i === 0 ? `input ${u + 1}` : `${layer.name}, unit ${u + 1}`;
    let text = `${name}: ${number(layer.low[u])} to ${number(layer.high[u])} over the plane`;
    if (layer.bias) text += `; bias ${number(layer.bias[u])}`;
    if (layer.grad) text += `; d loss / d unit ${number(layer.grad[u])} (batch mean)`;
    return text;
  }

  function lineText(i, a, b) {
    const w = current.layers[i].weights[a][b];
    return `weight ${number(w)}: ${i === 1 ? "input" : "unit"} ${a + 1} of layer ${i - 1} \u2192 unit ${b + 1} of layer ${i}`;
  }

  function tip(event, text) {
    const t = document.getElementById("tip");
    t.textContent = text; t.hidden = false; move(event);
  }
  function move(event) {
    const t = document.getElementById("tip");
    t.style.left = (event.pageX + 12) + "px"; t.style.top = (event.pageY + 12) + "px";
  }
  function hide() { document.getElementById("tip").hidden = true; }

  return { draw, reset: () => { shape = ""; } };
})();
