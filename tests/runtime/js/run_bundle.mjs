// Drives a graphc training bundle from Node.js for tests/runtime/test_bundle.py.
//   node run_bundle.mjs DRIVER NODE_MODULES BUNDLE BATCHES node|web STEPS
// BATCHES is a safetensors file with <input>.<step> tensors; prints one JSON line:
// {"metrics": [{loss, ...} per step], "weights": "<path of the safetensors written>"}.
import { createRequire } from "node:module";
import { writeFile, readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const [driverPath, nodeModules, bundle, batchesPath, backend, stepsText, outPath] = process.argv.slice(2);
const { loadBundle, parseSafetensors, BundleError } = await import(pathToFileURL(driverPath).href);
const require = createRequire(resolve(nodeModules) + "/");
let ort;
if (backend === "node") {
  ort = require("onnxruntime-node");
} else {
  ort = require("onnxruntime-web");
  ort.env.wasm.numThreads = 1;
}
const opts = backend === "node" ? { ort, sessionOptions: { intraOpNumThreads: 1, logSeverityLevel: 3 } }
                                : { ort, sessionOptions: { executionProviders: ["wasm"] } };
const trainer = await loadBundle(bundle, opts);
const parsed = parseSafetensors(new Uint8Array(await readFile(batchesPath)));
const steps = Number(stepsText);
const metrics = [];
for (let i = 0; i < steps; i++) {
  const batch = {};
  for (const n of trainer.manifest.batch) {
    const t = parsed[`${n}.${i}`];
    batch[n] = new ort.Tensor(t.dtype, t.data, t.shape);
  }
  metrics.push(await trainer.step(batch));
}
// a bad batch must fail with a BundleError naming the tensor
let badBatch = null;
try {
  const x = parsed[`${trainer.manifest.batch[0]}.0`];
  await trainer.step({ [trainer.manifest.batch[0]]: new ort.Tensor(x.dtype, x.data.slice(0, 3), [3]) });
} catch (err) {
  badBatch = { name: err.name, message: err.message };
}
let predicted = null;
if (trainer.manifest.inference) {
  const first = trainer.manifest.inference.inputs[0].name;
  const t = parsed[`${first}.0`];
  const out = await trainer.predict({ [first]: new ort.Tensor(t.dtype, t.data, t.shape) });
  const o = trainer.manifest.inference.outputs[0].name;
  predicted = { name: o, dims: out[o].dims, data: Array.from(out[o].data) };
}
await writeFile(outPath, trainer.saveState());
console.log(JSON.stringify({ metrics, badBatch, predicted, stepCount: trainer.stepCount }));
