// The demo page of `graphc bundle serve`: trains the bundle at /bundle/ on the digits at /data/
// with onnxruntime-web (WASM), plots the loss live, then classifies digits drawn on the canvas.
// URL parameters: ?steps=N trains N steps at once and stops (tests read #result and
// window.graphcResult); ?epochs=E trains E epochs at once.
import * as ort from "/ort/ort.min.mjs";
import { loadBundle, parseSafetensors } from "/graphc-train.mjs";

ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = 1;          // threads need cross-origin isolation; one is plenty here
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text) => { $("status").textContent = text; };
const losses = [];

function plot() {
  const c = $("plot"), g = c.getContext("2d"), w = c.width, h = c.height, pad = 34;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#999"; g.fillStyle = "#555"; g.font = "11px sans-serif";
  g.beginPath(); g.moveTo(pad, 6); g.lineTo(pad, h - 18); g.lineTo(w - 6, h - 18); g.stroke();
  if (!losses.length) return;
  const top = Math.max(...losses.slice(0, 20), 0.1);
  g.fillText(top.toFixed(2), 2, 12); g.fillText("0", 22, h - 20);
  g.fillText(`step ${losses.length}`, w - 70, h - 4); g.fillText("training loss", pad + 40, 14);
  const x = (i) => pad + (w - pad - 8) * i / Math.max(losses.length - 1, 1);
  const y = (v) => (h - 18) - (h - 26) * Math.min(v, top) / top;
  g.strokeStyle = "#c33"; g.lineWidth = 1.5; g.beginPath();
  losses.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke(); g.lineWidth = 1;
}

const tensor = (t) => new ort.Tensor(t.dtype, t.data, t.shape);
let trainer, data;

async function accuracy() {
  const out = await trainer.predict({ x: tensor(data["x.test"]) });
  const logits = out.logits.data, y = data["y.test"].data, n = y.length;
  let right = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < 10; k++) if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
    if (BigInt(best) === y[i]) right++;
  }
  return right / n;
}

async function train(epochs, maxSteps = Infinity) {
  $("train").disabled = true;
  const t0 = performance.now();
  const dataset = { x: tensor(data["x.train"]), y: tensor(data["y.train"]) };
  const history = await trainer.fit(dataset, {
    epochs, batchSize: trainer.manifest.batch_size || 32,
    onStep: async (step, m) => {
      losses.push(m.loss);
      if (step % 5 === 0) {
        plot();
        $("progress").textContent = `step ${step}, loss ${m.loss.toFixed(4)}`;
        await new Promise((r) => setTimeout(r, 0));   // let the page paint
      }
      return step < maxSteps;
    },
  });
  plot();
  const acc = await accuracy();
  const seconds = (performance.now() - t0) / 1000;
  const result = { steps: trainer.stepCount, finalLoss: losses[losses.length - 1], losses,
                   testAccuracy: acc, seconds, epochs: history.length };
  status(`trained ${trainer.stepCount} steps in ${seconds.toFixed(1)} s: last loss ` +
         `${result.finalLoss.toFixed(4)}, test accuracy ${(acc * 100).toFixed(1)}%. Draw a digit below.`);
  $("result").textContent = JSON.stringify({ ...result, losses: undefined });
  window.graphcResult = result;
  document.title = "graphc: trained";
  $("train").disabled = false;
  return result;
}

// ---- drawing pad: 192x192 ink -> the 8x8 [0, 1] image of the digits data --------------------
const pad = $("pad"), pg = pad.getContext("2d");
let drawing = false;
function clearPad() { pg.fillStyle = "#000"; pg.fillRect(0, 0, pad.width, pad.height); }
clearPad();
pad.addEventListener("pointerdown", (e) => { drawing = true; pg.beginPath(); pg.moveTo(e.offsetX, e.offsetY); });
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  pg.strokeStyle = "#fff"; pg.lineWidth = 16; pg.lineCap = "round"; pg.lineJoin = "round";
  pg.lineTo(e.offsetX, e.offsetY); pg.stroke();
});
const finish = () => { if (drawing) { drawing = false; classify(); } };
pad.addEventListener("pointerup", finish); pad.addEventListener("pointerleave", finish);
$("clear").addEventListener("click", () => { clearPad(); $("guess").textContent = "?"; $("bars").innerHTML = ""; });

function toDigit() {
  const { width: w, height: h } = pad, px = pg.getImageData(0, 0, w, h).data;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (px[(y * w + x) * 4] > 40) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  // a square box around the ink, with a margin, like the centred digits of the data set
  const size = Math.max(x1 - x0, y1 - y0) * 1.25 + 8, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const out = new Float32Array(64);
  for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) {
    let sum = 0, n = 0;
    for (let yy = 0; yy < 6; yy++) for (let xx = 0; xx < 6; xx++) {
      const x = Math.round(cx - size / 2 + (c + (xx + 0.5) / 6) * size / 8);
      const y = Math.round(cy - size / 2 + (r + (yy + 0.5) / 6) * size / 8);
      if (x >= 0 && y >= 0 && x < w && y < h) sum += px[(y * w + x) * 4] / 255;
      n++;
    }
    out[r * 8 + c] = Math.min(1, 1.6 * sum / n);
  }
  return out;
}

// paints test digit k (8x8) onto the pad, as if drawn: lets a headless run show a classification
function drawTestDigit(k) {
  const x = data["x.test"].data, cell = pad.width / 8;
  clearPad();
  for (let i = 0; i < 64; i++) {
    const v = Math.round(255 * x[k * 64 + i]);
    pg.fillStyle = `rgb(${v},${v},${v})`;
    pg.fillRect((i % 8) * cell, Math.floor(i / 8) * cell, cell, cell);
  }
  window.graphcDigit = { index: k, label: Number(data["y.test"].data[k]) };
}

async function classify(image = null) {
  const img = image || toDigit();
  if (!img || !trainer) return;
  const pv = $("preview").getContext("2d"), id = pv.createImageData(8, 8);
  img.forEach((v, i) => { id.data.set([v * 255, v * 255, v * 255, 255], i * 4); });
  pv.putImageData(id, 0, 0);
  const out = await trainer.predict({ x: new ort.Tensor("float32", img, [1, 64]) });
  const z = Array.from(out.logits.data), m = Math.max(...z), e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0), p = e.map((v) => v / s);
  const best = p.indexOf(Math.max(...p));
  $("guess").textContent = String(best);
  window.graphcGuess = best;
  if (window.graphcResult) $("result").textContent = JSON.stringify({ ...window.graphcResult, losses: undefined, guess: best, digit: window.graphcDigit });
  $("bars").innerHTML = p.map((v, k) => `<span>${k}</span><div style="display:inline-block;width:${Math.round(v * 160)}px"></div><br>`).join("");
}

try {
  status("loading the bundle and onnxruntime-web…");
  const [t, bytes] = await Promise.all([
    loadBundle(new URL("/bundle/", location.href), { ort, sessionOptions: { executionProviders: ["wasm"] } }),
    fetch("/data/digits.safetensors").then((r) => r.arrayBuffer()),
  ]);
  trainer = t;
  data = parseSafetensors(new Uint8Array(bytes), "digits.safetensors");
  const m = trainer.manifest;
  status(`bundle '${m.name}': ${m.params.length} parameters, ${m.state.length} optimizer-state tensors, ` +
         `${data["y.train"].shape[0]} training digits. Press Train.`);
  $("train").disabled = false;
  $("train").addEventListener("click", () => train(Number($("epochs").value) || 1));
  if (params.has("steps")) {
    await train(1e9, Number(params.get("steps")));
    // the test digit's own 64 values (what the pad shows): this checks predict() with the
    // trained weights, not the pad's resampling of a drawing
    const k = Number(params.get("digit") || 0);
    drawTestDigit(k);
    await classify(data["x.test"].data.slice(k * 64, (k + 1) * 64));
  }
  else if (params.has("epochs")) await train(Number(params.get("epochs")));
} catch (err) {
  status(`error: ${err.message}`);
  $("result").textContent = JSON.stringify({ error: String(err && err.stack || err) });
  window.graphcResult = { error: String(err) };
  document.title = "graphc: error";
  throw err;
}
