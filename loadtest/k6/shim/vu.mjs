// One VU of one scenario, in its own thread: runs the scenario's function until its iterations
// or duration are done, then hands its metrics to run.mjs.
import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import { block, checkTally, limits, metrics, shutdownNet } from "./runtime.mjs";

const w = workerData;
globalThis.__ENV = w.env;
globalThis.__VU = w.vu;
globalThis.__ITER = 0;
globalThis.__SCENARIO = w.scenario;
// per-vu-iterations: VU k of a scenario runs its iterations k*n .. k*n+n-1 (k6 counts alike).
globalThis.__SCENARIO_ITER_BASE = w.vuInScenario * (w.iterations ?? 0);
const mod = await import(pathToFileURL(w.script).href);
const fn = mod[w.exec ?? "default"];
let errors = 0;
const t0 = Date.now();
block(w.startMs);
const start = Date.now();
limits.hardDeadline = start + w.hardMs;
const endBy = w.durationMs ? start + w.durationMs : Infinity;
for (let i = 0; i < (w.iterations ?? Infinity) && Date.now() < endBy && Date.now() < limits.hardDeadline; i++) {
  globalThis.__ITER = i;
  try {
    fn(w.data);
    metrics.get("iterations") ?? metrics.set("iterations", { name: "iterations", type: "counter", values: [], sum: 0, passes: 0, fails: 0 });
    metrics.get("iterations").sum++;
  } catch (e) {
    errors++;
    console.error(`VU ${w.vu} (${w.scenario}) iteration ${i}: ${e?.stack ?? e}`);
  }
}
shutdownNet();
parentPort.postMessage({ metrics: [...metrics.values()], checks: [...checkTally.entries()], errors, ms: Date.now() - t0 });
