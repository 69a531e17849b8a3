// graphc-train.mjs: train a graphc training bundle with a stock ONNX runtime.
//
// An ES module with no dependencies and no build step. The caller passes the `ort` module it uses,
// so the same driver runs on onnxruntime-web (WASM, or WebGPU where available) in a browser and on
// onnxruntime-node (or onnxruntime-web's WASM backend) in Node.js:
//
//   import * as ort from "onnxruntime-web";            // or: const ort = require("onnxruntime-node")
//   import { loadBundle } from "./graphc-train.mjs";
//   const trainer = await loadBundle("bundle/", { ort });
//   const { loss } = await trainer.step({ x: new ort.Tensor("float32", xs, [32, 64]),
//                                         y: new ort.Tensor("int64", ys, [32]) });
//   await trainer.fit({ x, y }, { epochs: 5, batchSize: 32, onStep: (i, m) => plot(m.loss) });
//   const weights = trainer.exportWeights();           // {name: ort.Tensor}, copies
//
// A bundle is what `gc.export_training` writes: manifest.json, step.onnx, state.safetensors and
// (optionally) inference.onnx. The manifest is versioned and checked on load against the step
// model and the state file; a batch is checked on every step. Errors are BundleError and name
// the tensor, the expected and the actual value.
//
// Parameters and optimizer state stay in ort Tensors between steps: a step feeds them, and the
// step's outputs `new.<name>` replace them (the update map in the manifest), as graphc's Python
// stepper swaps its two buffer sets.

export const FORMAT = "graphc-training-bundle/1";

export class BundleError extends Error {
  constructor(message) { super(message); this.name = "BundleError"; }
}

const TYPED = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  int16: Int16Array, int8: Int8Array, uint8: Uint8Array, uint16: Uint16Array, bool: Uint8Array,
  float16: Uint16Array,
};
// safetensors dtype names -> graphc/ort dtype names
const ST_DTYPES = { F32: "float32", F64: "float64", I64: "int64", I32: "int32", I16: "int16",
                    I8: "int8", U8: "uint8", U16: "uint16", BOOL: "bool", F16: "float16" };
const ST_NAMES = Object.fromEntries(Object.entries(ST_DTYPES).map(([k, v]) => [v, k]));

const isNode = typeof process !== "undefined" && process.versions != null && process.versions.node != null;

function joinPath(base, file) {
  if (base instanceof URL) return new URL(file, base.href.endsWith("/") ? base : base.href + "/");
  return base.endsWith("/") ? base + file : base + "/" + file;
}

async function readBytes(location) {
  const text = String(location);
  const remote = /^(https?|blob|data):/i.test(text) || !isNode;
  if (remote) {
    const res = await fetch(location);
    if (!res.ok) throw new BundleError(`cannot fetch ${text}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  const fs = await import("node:fs/promises");
  const path = text.startsWith("file:") ? new URL(text) : text;
  try {
    return new Uint8Array(await fs.readFile(path));
  } catch (err) {
    throw new BundleError(`cannot read ${text}: ${err.message}`);
  }
}

/** Parses a safetensors file: {name: {dtype, shape, data (a typed array of its own)}}. */
export function parseSafetensors(bytes, what = "safetensors file") {
  if (bytes.length < 8) throw new BundleError(`${what}: ${bytes.length} bytes, too short for a header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > bytes.length) throw new BundleError(`${what}: header of ${n} bytes runs past the end`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const dtype = ST_DTYPES[info.dtype];
    if (!dtype) throw new BundleError(`${what}: tensor '${name}' has dtype ${info.dtype}, not supported`);
    const [begin, end] = info.data_offsets;
    const count = info.shape.reduce((a, b) => a * b, 1);
    const Typed = TYPED[dtype];
    if (end - begin !== count * Typed.BYTES_PER_ELEMENT || 8 + n + end > bytes.length) {
      throw new BundleError(`${what}: tensor '${name}' has ${end - begin} bytes for shape ` +
                            `[${info.shape}] of ${dtype}, or runs past the end`);
    }
    // a copy, so the typed array is aligned and owns its memory (the host is little-endian: JS
    // engines on every platform onnxruntime-web supports are)
    const buf = bytes.slice(8 + n + begin, 8 + n + end).buffer;
    out[name] = { dtype, shape: info.shape.slice(), data: new Typed(buf) };
  }
  return out;
}

/** Writes {name: ort.Tensor} as safetensors bytes (what Python's safetensors.numpy.load reads). */
export function toSafetensors(tensors, metadata = null) {
  const header = {};
  let offset = 0;
  const parts = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: ST_NAMES[t.type], shape: t.dims.slice(), data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  if (metadata) header.__metadata__ = metadata;
  let json = JSON.stringify(header);
  while ((8 + new TextEncoder().encode(json).length) % 8) json += " ";
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** lr(step) for the manifest's schedule data (the formulas of graphc.optim.schedules). */
export function learningRate(schedule, step) {
  const s = schedule;
  switch (s.type) {
    case "constant": return s.base_lr;
    case "step_decay": return s.base_lr * s.gamma ** Math.floor(step / s.step_size);
    case "exponential": return s.base_lr * s.gamma ** step;
    case "cosine": {
      const t = Math.min(step, s.total_steps);
      return s.min_lr + (s.base_lr - s.min_lr) * (1 + Math.cos(Math.PI * t / s.total_steps)) / 2;
    }
    case "linear_warmup": {
      const base = learningRate(s.after, step);
      if (step >= s.warmup_steps) return base;
      return base * (s.start_factor + (1 - s.start_factor) * step / s.warmup_steps);
    }
    case "table": return s.values[Math.min(step, s.values.length - 1)];
    default: throw new BundleError(`unknown learning-rate schedule type '${s.type}'`);
  }
}

const sameShape = (a, b) => a.length === b.length && a.every((d, i) => d === b[i]);
const fmtShape = (s) => `[${s.join(", ")}]`;

function checkManifest(m, where) {
  if (typeof m !== "object" || m === null) throw new BundleError(`${where}: not a JSON object`);
  const [kind, version] = String(m.format || "").split("/");
  if (kind !== FORMAT.split("/")[0]) {
    throw new BundleError(`${where}: format is '${m.format}', expected '${FORMAT}' (a bundle ` +
                          "written by gc.export_training)");
  }
  if (version !== FORMAT.split("/")[1]) {
    throw new BundleError(`${where}: bundle format version ${version}, this driver reads ${FORMAT}; ` +
                          "use the graphc-train.mjs of the graphc that wrote the bundle");
  }
  for (const key of ["inputs", "outputs", "batch", "params", "state", "metrics", "updates", "schedule"]) {
    if (m[key] == null) throw new BundleError(`${where}: manifest has no '${key}'`);
  }
  const byName = Object.fromEntries(m.inputs.map((i) => [i.name, i]));
  const want = (name, roles, what) => {
    const i = byName[name];
    if (!i) throw new BundleError(`${where}: ${what} '${name}' is not among the inputs`);
    if (!roles.includes(i.role)) {
      throw new BundleError(`${where}: input '${name}' has role '${i.role}', expected ${roles.join(" or ")} (${what})`);
    }
  };
  m.batch.forEach((n) => want(n, ["data", "gradient"], "batch input"));
  m.params.forEach((n) => want(n, ["param", "buffer"], "parameter"));
  m.state.forEach((n) => want(n, ["optimizer_state"], "optimizer state"));
  if (m.step) want(m.step, ["step"], "step input");
  if (m.lr) want(m.lr, ["lr"], "learning-rate input");
  if (m.rng_seed) want(m.rng_seed, ["rng_seed"], "rng seed input");
  const carried = new Set([...m.params, ...m.state]);
  const replaced = new Set(Object.values(m.updates));
  for (const n of carried) {
    if (!replaced.has(n)) throw new BundleError(`${where}: carried input '${n}' has no output in 'updates' that replaces it`);
  }
  const outNames = new Set(m.outputs.map((o) => o.name));
  for (const o of [...Object.keys(m.updates), ...m.metrics]) {
    if (!outNames.has(o)) throw new BundleError(`${where}: output '${o}' is not among the outputs`);
  }
  return byName;
}

function checkSession(session, m, what) {
  const ins = new Set(session.inputNames), outs = new Set(session.outputNames);
  for (const i of m.inputs) {
    if (!ins.has(i.name)) throw new BundleError(`${what}: the manifest's input '${i.name}' is not an input of the model (its inputs: ${session.inputNames.join(", ")})`);
  }
  for (const n of session.inputNames) {
    if (!m.inputs.some((i) => i.name === n)) throw new BundleError(`${what}: model input '${n}' is not in the manifest`);
  }
  for (const o of m.outputs) {
    if (!outs.has(o.name)) throw new BundleError(`${what}: the manifest's output '${o.name}' is not an output of the model`);
  }
}

class Trainer {
  constructor(ort, manifest, session, state, base, options) {
    this.ort = ort;
    this.manifest = manifest;
    this.session = session;
    this.state = state;            // name -> ort.Tensor, parameters then optimizer state
    this.stepCount = manifest.step_count || 0;
    this.base = base;
    this.options = options;
    this._inputs = Object.fromEntries(manifest.inputs.map((i) => [i.name, i]));
    this._inference = null;
    this._lrArray = manifest.lr_dtype === "float64" ? Float64Array : Float32Array;
    this._busy = false;
  }

  /** lr for the next step from the manifest's schedule (or options.lr(step) when given). */
  learningRate(step = this.stepCount) {
    return this.options.lr ? this.options.lr(step) : learningRate(this.manifest.schedule, step);
  }

  _checkBatch(batch) {
    const m = this.manifest;
    const dims = {};
    for (const n of Object.keys(batch)) {
      if (!m.batch.includes(n)) throw new BundleError(`batch input '${n}' is not an input of the bundle; its batch inputs are ${m.batch.join(", ")}`);
    }
    for (const n of m.batch) {
      const t = batch[n], spec = this._inputs[n];
      if (t == null) throw new BundleError(`batch input '${n}' is missing; the bundle needs ${m.batch.join(", ")}`);
      if (!(t instanceof this.ort.Tensor)) throw new BundleError(`batch input '${n}': expected an ort.Tensor, got ${t && t.constructor ? t.constructor.name : typeof t}`);
      if (t.type !== spec.dtype) throw new BundleError(`batch input '${n}': dtype ${t.type}, expected ${spec.dtype}`);
      if (t.dims.length !== spec.shape.length) throw new BundleError(`batch input '${n}': shape ${fmtShape(t.dims)} has rank ${t.dims.length}, expected ${fmtShape(spec.shape)}`);
      spec.shape.forEach((d, k) => {
        const got = t.dims[k];
        if (typeof d === "string") {
          if (dims[d] === undefined) dims[d] = [got, n];
          else if (dims[d][0] !== got) throw new BundleError(`batch input '${n}': dim ${k} is ${got}, but ${d} is ${dims[d][0]} in '${dims[d][1]}'`);
        } else if (d !== got) {
          throw new BundleError(`batch input '${n}': shape ${fmtShape(t.dims)}, expected ${fmtShape(spec.shape)} (dim ${k} must be ${d})`);
        }
      });
      if (spec.range) {
        const [lo, hi] = spec.range;
        const data = t.data;
        for (let i = 0; i < data.length; i++) {
          const v = Number(data[i]);
          if ((v < lo || v >= hi) && v !== spec.ignore) throw new BundleError(`batch input '${n}': label ${v} at index ${i} is outside [${lo}, ${hi})`);
        }
      }
    }
  }

  /** Runs one training step; resolves to the metrics as numbers, e.g. {loss: 0.31, accuracy: 0.9}. */
  async step(batch) {
    if (this._busy) throw new BundleError("step() called while another step is running; await each step");
    this._checkBatch(batch);
    const m = this.manifest, ort = this.ort;
    const feeds = { ...batch, ...this.state };
    if (m.step) feeds[m.step] = new ort.Tensor("int64", BigInt64Array.from([BigInt(this.stepCount)]), []);
    if (m.lr) feeds[m.lr] = new ort.Tensor(m.lr_dtype, this._lrArray.from([this.learningRate()]), []);
    if (m.rng_seed) feeds[m.rng_seed] = new ort.Tensor("int64", BigInt64Array.from([BigInt(m.seed || 0)]), []);
    const fetches = [...m.metrics, ...Object.keys(m.updates)];
    this._busy = true;
    let out;
    try {
      out = await this.session.run(feeds, fetches);
    } finally {
      this._busy = false;
    }
    const next = {};
    for (const [o, src] of Object.entries(m.updates)) next[src] = out[o];
    this.state = next;             // swap: the step's outputs are the next step's inputs
    this.stepCount += 1;
    const metrics = {};
    for (const name of m.metrics) metrics[name] = Number(out[name].data[0]);
    return metrics;
  }

  /**
   * Trains over `dataset` for `epochs`; resolves to [{epoch, loss, ...mean metrics}].
   * `dataset` is an array (or iterable) of batches {name: ort.Tensor}, or one {name: ort.Tensor}
   * of whole arrays cut into batches of `batchSize` rows along the first dim (the last batch may
   * be smaller; `shuffle: true` reorders the rows each epoch with a seeded generator).
   * `onStep(stepIndex, metrics)` runs after every step; returning false stops training.
   */
  async fit(dataset, { epochs = 1, batchSize = this.manifest.batch_size || 32, shuffle = false,
                       seed = 0, onStep = null, onEpoch = null } = {}) {
    const history = [];
    let rand = mulberry32(seed);
    for (let epoch = 0; epoch < epochs; epoch++) {
      const sums = {};
      let count = 0, stop = false;
      for (const batch of this._batches(dataset, batchSize, shuffle ? rand : null)) {
        const metrics = await this.step(batch);
        for (const [k, v] of Object.entries(metrics)) sums[k] = (sums[k] || 0) + v;
        count += 1;
        if (onStep && (await onStep(this.stepCount, metrics)) === false) { stop = true; break; }
      }
      const row = { epoch: epoch + 1 };
      for (const [k, v] of Object.entries(sums)) row[k] = v / Math.max(count, 1);
      history.push(row);
      if (onEpoch) await onEpoch(row);
      if (stop) break;
    }
    return history;
  }

  *_batches(dataset, batchSize, rand) {
    if (Array.isArray(dataset) || (dataset && typeof dataset[Symbol.iterator] === "function")) {
      yield* dataset;
      return;
    }
    const names = this.manifest.batch;
    const first = dataset[names[0]];
    if (!first) throw new BundleError(`dataset has no '${names[0]}'; it needs ${names.join(", ")}`);
    const n = first.dims[0];
    const order = Array.from({ length: n }, (_, i) => i);
    if (rand) for (let i = n - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    for (let start = 0; start < n; start += batchSize) {
      const rows = order.slice(start, start + batchSize);
      const batch = {};
      for (const name of names) {
        const t = dataset[name];
        if (!t) throw new BundleError(`dataset has no '${name}'; it needs ${names.join(", ")}`);
        if (t.dims[0] !== n) throw new BundleError(`dataset '${name}' has ${t.dims[0]} rows, '${names[0]}' has ${n}`);
        const row = t.dims.slice(1).reduce((a, b) => a * b, 1);
        const data = new t.data.constructor(rows.length * row);
        rows.forEach((r, i) => data.set(t.data.subarray(r * row, (r + 1) * row), i * row));
        batch[name] = new this.ort.Tensor(t.type, data, [rows.length, ...t.dims.slice(1)]);
      }
      yield batch;
    }
  }

  /** The trained parameters, {name: ort.Tensor} (copies: later steps do not change them). */
  exportWeights() {
    return this._copy(this.manifest.params);
  }

  /** Parameters and optimizer state, {name: ort.Tensor} (copies). */
  exportState() {
    return this._copy([...this.manifest.params, ...this.manifest.state]);
  }

  /** Parameters and optimizer state as safetensors bytes (same layout as state.safetensors). */
  saveState() {
    return toSafetensors(this.exportState(), { format: FORMAT, step_count: String(this.stepCount) });
  }

  /** Replaces parameters/state from {name: ort.Tensor} or safetensors bytes; checks names and shapes. */
  loadState(values) {
    const src = values instanceof Uint8Array ? tensorsFromSafetensors(this.ort, parseSafetensors(values)) : values;
    const next = { ...this.state };
    for (const [n, t] of Object.entries(src)) {
      const spec = this._inputs[n];
      if (!spec || !(n in this.state)) throw new BundleError(`loadState: '${n}' is not a parameter or state tensor of the bundle`);
      checkTensor(t, spec, "loadState");
      next[n] = t;
    }
    this.state = next;
  }

  _copy(names) {
    const out = {};
    for (const n of names) {
      const t = this.state[n];
      out[n] = new this.ort.Tensor(t.type, t.data.slice(), t.dims.slice());
    }
    return out;
  }

  /** Runs the inference model with the current parameters: resolves to {output: ort.Tensor}. */
  async predict(feeds) {
    const inf = this.manifest.inference;
    if (!inf) throw new BundleError("this bundle has no inference model (export one with inference=)");
    if (!this._inference) {
      const bytes = await readBytes(joinPath(this.base, inf.file));
      this._inference = await this.ort.InferenceSession.create(bytes, this.options.sessionOptions || {});
      checkSession(this._inference, { inputs: [...inf.inputs, ...inf.params], outputs: inf.outputs },
                   String(joinPath(this.base, inf.file)));
    }
    const all = { ...feeds };
    for (const p of inf.params) {
      if (!(p.name in this.state)) throw new BundleError(`inference parameter '${p.name}' is not a parameter of the training step`);
      all[p.name] = this.state[p.name];
    }
    for (const i of inf.inputs) {
      if (!(i.name in all)) throw new BundleError(`predict: input '${i.name}' is missing`);
    }
    return this._inference.run(all);
  }
}

function checkTensor(t, spec, what) {
  if (t.type !== spec.dtype || !sameShape(t.dims, spec.shape)) {
    throw new BundleError(`${what}: tensor '${spec.name}' is ${t.type}${fmtShape(t.dims)}, the step expects ${spec.dtype}${fmtShape(spec.shape)}`);
  }
}

function tensorsFromSafetensors(ort, parsed) {
  const out = {};
  for (const [n, t] of Object.entries(parsed)) out[n] = new ort.Tensor(t.dtype, t.data, t.shape);
  return out;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Loads a bundle from a URL (browser, or http(s) in Node) or a directory path (Node).
 * options: {ort (required): the onnxruntime module; sessionOptions: passed to
 * InferenceSession.create, e.g. {executionProviders: ["webgpu", "wasm"]}; lr: a function
 * step -> learning rate replacing the manifest's schedule}.
 * Resolves to a trainer with step(), fit(), exportWeights(), saveState(), loadState(), predict().
 */
export async function loadBundle(urlOrPath, options = {}) {
  const { ort } = options;
  if (!ort || typeof ort.InferenceSession !== "object" && typeof ort.InferenceSession !== "function") {
    throw new BundleError("loadBundle: pass the onnxruntime module as {ort} (onnxruntime-web or onnxruntime-node)");
  }
  const base = urlOrPath;
  const where = String(joinPath(base, "manifest.json"));
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(await readBytes(joinPath(base, "manifest.json"))));
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError(`${where}: not valid JSON (${err.message})`);
  }
  const inputs = checkManifest(manifest, where);
  const [modelBytes, stateBytes] = await Promise.all([
    readBytes(joinPath(base, manifest.step_model || "step.onnx")),
    readBytes(joinPath(base, manifest.state_file || "state.safetensors")),
  ]);
  const stateWhere = String(joinPath(base, manifest.state_file || "state.safetensors"));
  const parsed = parseSafetensors(stateBytes, stateWhere);
  const state = {};
  for (const n of [...manifest.params, ...manifest.state]) {
    const t = parsed[n];
    if (!t) throw new BundleError(`${stateWhere}: no tensor '${n}' (${inputs[n].role} of the step)`);
    if (t.dtype !== inputs[n].dtype || !sameShape(t.shape, inputs[n].shape)) {
      throw new BundleError(`${stateWhere}: tensor '${n}' is ${t.dtype}${fmtShape(t.shape)}, the manifest says ${inputs[n].dtype}${fmtShape(inputs[n].shape)}`);
    }
    state[n] = new ort.Tensor(t.dtype, t.data, t.shape);
  }
  const session = await ort.InferenceSession.create(modelBytes, options.sessionOptions || {});
  checkSession(session, manifest, String(joinPath(base, manifest.step_model || "step.onnx")));
  return new Trainer(ort, manifest, session, state, base, options);
}
