// Per-thread state of the shim: the bridge to this thread's network worker, the event queue, and
// the metrics this thread recorded (merged by run.mjs at the end).
import { MessageChannel, Worker, receiveMessageOnPort } from "node:worker_threads";

const sab = new SharedArrayBuffer(4);
const flag = new Int32Array(sab);
const { port1, port2 } = new MessageChannel();
const net = new Worker(new URL("./net-worker.mjs", import.meta.url), { workerData: { port: port2, sab }, transferList: [port2] });
net.unref();
let nextId = 1;
const queue = [];
// Wait until the network thread is up, so its start-up is not counted as connect time.
while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 1000);

export const newId = () => nextId++;
export const post = (m) => port1.postMessage(m);

function pull() {
  let m;
  while ((m = receiveMessageOnPort(port1))) queue.push(m.message);
}

/** Events for `id`, waiting up to `timeoutMs` when there are none yet. */
export function take(id, timeoutMs) {
  const seen = Atomics.load(flag, 0);
  pull();
  let out = queue.filter((e) => e.id === id);
  if (out.length === 0 && timeoutMs > 0) {
    Atomics.wait(flag, 0, seen, timeoutMs);
    pull();
    out = queue.filter((e) => e.id === id);
  }
  for (const e of out) queue.splice(queue.indexOf(e), 1);
  return out;
}

/** Blocks the thread, like k6's sleep. */
export function block(ms) {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- metrics ----
export const metrics = new Map();
export function metric(name, type, isTime = false) {
  let m = metrics.get(name);
  if (!m) {
    m = { name, type, isTime, values: [], sum: 0, passes: 0, fails: 0, last: 0 };
    metrics.set(name, m);
  }
  return m;
}
export function add(name, type, value, isTime = false) {
  const m = metric(name, type, isTime);
  if (type === "trend") m.values.push(Number(value));
  else if (type === "rate") value && value !== 0 ? m.passes++ : m.fails++;
  else if (type === "counter") m.sum += Number(value);
  else m.last = Number(value);
}
export const checkTally = new Map();

/** The time after which this VU must stop (set by the VU runner). */
export const limits = { hardDeadline: Infinity };
export function shutdownNet() {
  net.terminate();
}
