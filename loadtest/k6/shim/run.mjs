#!/usr/bin/env node
// A small stand-in for `k6 run`, to prove the k6 scripts against a real node where k6 is not
// installed (CI). Runs options.scenarios (executors per-vu-iterations, shared-iterations as
// per-VU split, constant-vus) or options.vus/duration/iterations, each VU in a thread that
// blocks like k6 does; setup() and teardown() in the main thread; evaluates options.thresholds
// on the merged metrics and exits 99 when one fails (k6's code), 0 otherwise.
//
//   node --import ./register.mjs run.mjs ../scenarios/fanout.js
//
// Not k6: no arrival-rate executors, no tags on thresholds, no ramping, no cloud; durations
// are capped by SHIM_MAX_SECS (default 120).
import { Worker } from "node:worker_threads";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { checkTally, metrics, shutdownNet } from "./runtime.mjs";

const script = resolve(process.argv[2] ?? "");
const env = { ...process.env };
globalThis.__ENV = env;
globalThis.__VU = 0;
globalThis.__ITER = 0;
const mod = await import(pathToFileURL(script).href);
const options = mod.options ?? {};
const MAX_MS = Number(env.SHIM_MAX_SECS ?? 120) * 1000;

const ms = (d) => {
  if (d === undefined || d === null) return undefined;
  if (typeof d === "number") return d;
  const m = String(d).match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
};

const scenarios = options.scenarios ?? {
  default: options.iterations
    ? { executor: "shared-iterations", vus: options.vus ?? 1, iterations: options.iterations }
    : { executor: "constant-vus", vus: options.vus ?? 1, duration: options.duration ?? "10s" },
};

const data = mod.setup ? mod.setup() : undefined;
const jobs = [];
let vuId = 0;
for (const [name, s] of Object.entries(scenarios)) {
  const vus = s.vus ?? 1;
  for (let v = 0; v < vus; v++) {
    let iterations;
    if (s.executor === "per-vu-iterations") iterations = s.iterations ?? 1;
    else if (s.executor === "shared-iterations") iterations = Math.floor((s.iterations ?? 1) / vus) + (v < (s.iterations ?? 1) % vus ? 1 : 0);
    else if (s.executor !== "constant-vus") throw new Error(`executor ${s.executor} is not supported by the shim`);
    const durationMs = s.executor === "constant-vus" ? ms(s.duration) : undefined;
    const hardMs = Math.min(MAX_MS, (durationMs ?? ms(s.maxDuration ?? "10m")) + ms(s.gracefulStop ?? "30s"));
    vuId++;
    const w = new Worker(new URL("./vu.mjs", import.meta.url), {
      workerData: { script, exec: s.exec, scenario: name, vu: vuId, vuInScenario: v, iterations, durationMs, hardMs, startMs: ms(s.startTime ?? "0s"), data, env: s.env ? { ...env, ...s.env } : env },
      execArgv: ["--import", new URL("./register.mjs", import.meta.url).href],
    });
    jobs.push(new Promise((res) => {
      let report;
      w.on("message", (m) => (report = m));
      w.on("error", (e) => {
        console.error(`VU ${vuId} crashed: ${e?.stack ?? e}`);
        res({ metrics: [], checks: [], errors: 1 });
      });
      w.on("exit", () => res(report ?? { metrics: [], checks: [], errors: 1 }));
    }));
  }
}
const reports = await Promise.all(jobs);
if (mod.teardown) mod.teardown(data);

// ---- merge ----
const merged = new Map([...metrics.values()].map((m) => [m.name, { ...m, values: [...m.values] }]));
const checks = new Map(checkTally);
let errors = 0;
for (const r of reports) {
  errors += r.errors;
  for (const m of r.metrics) {
    const t = merged.get(m.name);
    if (!t) {
      merged.set(m.name, { ...m, values: [...m.values] });
      continue;
    }
    for (const v of m.values) t.values.push(v);
    t.sum += m.sum;
    t.passes += m.passes;
    t.fails += m.fails;
    t.last = m.last;
  }
  for (const [name, c] of r.checks) {
    const t = checks.get(name) ?? { passes: 0, fails: 0 };
    t.passes += c.passes;
    t.fails += c.fails;
    checks.set(name, t);
  }
}

function agg(m, what) {
  const v = [...m.values].sort((a, b) => a - b);
  const q = (p) => (v.length ? v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] : NaN);
  const p = what.match(/^p\((\d+(?:\.\d+)?)\)$/);
  if (p) return q(Number(p[1]));
  switch (what) {
    case "avg":
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
    case "min":
      return v[0];
    case "max":
      return v[v.length - 1];
    case "med":
      return q(50);
    case "count":
      return m.type === "counter" ? m.sum : m.type === "rate" ? m.passes + m.fails : v.length;
    case "rate":
      return m.type === "rate" ? m.passes / Math.max(1, m.passes + m.fails) : m.sum;
    case "value":
      return m.last;
  }
  return NaN;
}

const ops = { "<": (a, b) => a < b, "<=": (a, b) => a <= b, ">": (a, b) => a > b, ">=": (a, b) => a >= b, "==": (a, b) => a == b, "===": (a, b) => a === b, "!=": (a, b) => a != b };
let failed = 0;
console.log(`\nshim run of ${script}`);
for (const [name, c] of checks) console.log(`  check ${c.fails === 0 ? "✓" : "✗"} ${name}: ${c.passes} passed, ${c.fails} failed`);
for (const [name, m] of [...merged].sort()) {
  const summary = m.type === "trend" ? `avg=${agg(m, "avg").toFixed(2)} p(50)=${agg(m, "med")} p(95)=${agg(m, "p(95)")} p(99)=${agg(m, "p(99)")} max=${agg(m, "max")} n=${m.values.length}`
    : m.type === "rate" ? `${(agg(m, "rate") * 100).toFixed(2)}% (${m.passes} of ${m.passes + m.fails})`
    : m.type === "counter" ? `${m.sum}` : `${m.last}`;
  console.log(`  ${name}: ${summary}`);
}
for (const [name, list] of Object.entries(options.thresholds ?? {})) {
  const m = merged.get(name);
  for (const t of list) {
    const expr = typeof t === "string" ? t : t.threshold;
    const parsed = expr.replace(/\s+/g, "").match(/^(avg|min|max|med|count|rate|value|p\(\d+(?:\.\d+)?\))(<=|>=|===|==|!=|<|>)(-?\d+(?:\.\d+)?)$/);
    const value = m && parsed ? agg(m, parsed[1]) : NaN;
    const ok = !!parsed && !Number.isNaN(value) && ops[parsed[2]](value, Number(parsed[3]));
    if (!ok) failed++;
    console.log(`  threshold ${ok ? "✓" : "✗"} ${name}: ${expr} (actual ${m ? value : "no samples"})`);
  }
}
console.log(`  iteration errors: ${errors}`);
shutdownNet();
process.exit(failed > 0 ? 99 : errors > 0 ? 1 : 0);
