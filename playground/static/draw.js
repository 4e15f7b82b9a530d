// The digit canvas: strokes drawn with the mouse (or a finger), brought down to the data's
// image size and scale, and sent to the server, whose network gives the class
// probabilities with every frame from then on (views.js draws them).
//
// scikit-learn's digits are 32 x 32 bitmaps counted in 4 x 4 blocks: each of the 8 x 8
// pixels is how many of its 16 bits are on (0 to 16). A cell's share of ink times the
// data's highest pixel is that same count; the server then standardises it as it does
// every training image.
"use strict";

const PEN = 0.09;  // the pen's width, as a share of the canvas side (a 32 x 32 bitmap's 3 bits)
let drawnPixels = null;  // what was last sent, at the data's scale; re-sent to a new run

function digitDrawn() { return drawnPixels !== null; }

function wireDigitCanvas() {
  const canvas = $("digit"), ctx = canvas.getContext("2d");
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
            (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = at(event);
    stroke(ctx, last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (last === null) return;
    const next = at(event);
    stroke(ctx, last, next);
    last = next;
  });
  const end = () => { if (last !== null) { last = null; sendDigit(); } };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear-digit").addEventListener("click", () => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawnPixels = null;
    showSeen(new Array(64).fill(0), 16);
    drawProbabilities(null);
  });
}

function stroke(ctx, from, to) {
  ctx.strokeStyle = "#000"; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.lineWidth = PEN * ctx.canvas.width;
  ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
}

// The canvas as the data's image: each cell's mean ink, scaled to the data's pixel range.
function digitPixels() {
  const canvas = $("digit"), [, rows, cols] = setup.image.shape;
  const { low, high } = setup.image;
  const ink = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const sums = new Float64Array(rows * cols), counts = new Float64Array(rows * cols);
  for (let y = 0; y < canvas.height; y++) {
    const row = Math.min(rows - 1, Math.floor(y * rows / canvas.height));
    for (let x = 0; x < canvas.width; x++) {
      const cell = row * cols + Math.min(cols - 1, Math.floor(x * cols / canvas.width));
      sums[cell] += ink[4 * (y * canvas.width + x) + 3] / 255;  // alpha: the ink
      counts[cell] += 1;
    }
  }
  return Array.from(sums, (s, i) => Math.round((low + (high - low) * s / counts[i]) * 1e4) / 1e4);
}

function showSeen(pixels, high) {
  const seen = $("digit-seen"), ctx = seen.getContext("2d");
  const image = ctx.createImageData(seen.width, seen.height);
  pixels.forEach((p, i) => {
    const grey = Math.round(255 * (1 - p / (high || 1)));
    image.data.set([grey, grey, grey, 255], 4 * i);
  });
  ctx.putImageData(image, 0, 0);
}

async function sendDigit() {
  if (!setup || setup.view !== "image") return;
  drawnPixels = digitPixels();
  showSeen(drawnPixels, setup.image.high);
  await resendDigit();
}

// A new run (a reset keeps it on the server; a changed setting starts another) gets the
// drawing again.
async function resendDigit() {
  await starting;
  if (!runId || drawnPixels === null || !setup || setup.view !== "image") return;
  try { await post(`/api/sessions/${runId}/probe`, { pixels: drawnPixels }); }
  catch (e) { showError(e.message); }
}
