// Chat fan-out: RECEIVERS sockets of one user (one room, `user:<id>`), one staff sender in a chat
// with that user sending RATE messages/s for SEND_SECS. Every receiver must get every message.
//   k6 run -e JWT_SECRET=... -e RECEIVERS=500 -e RATE=20 -e SEND_SECS=30 scenarios/fanout.js
import { check } from "k6";
import http from "k6/http";
import { Counter, Rate, Trend } from "k6/metrics";
import { connect, nodeFor, num, openChat, runId, token } from "../lib/sio.js";

const RECEIVERS = num("RECEIVERS", 50);
const RATE = num("RATE", 10);
const SEND_SECS = num("SEND_SECS", 10);
const WARMUP = num("WARMUP_SECS", 5);
const GRACE = num("GRACE_SECS", 3);
const EXPECTED = RATE * SEND_SECS;

const latency = new Trend("fanout_latency_ms", true);
const delivered = new Rate("fanout_delivered");
const duplicates = new Counter("fanout_duplicates");
const sendErrors = new Counter("fanout_send_errors");

export const options = {
  scenarios: {
    receivers: { executor: "per-vu-iterations", vus: RECEIVERS, iterations: 1, exec: "receive", maxDuration: `${WARMUP + SEND_SECS + GRACE + 60}s` },
    // SENDER=0 on all but one host of a distributed run: one sender in all.
    ...(__ENV.SENDER === "0" ? {} : { sender: { executor: "per-vu-iterations", vus: 1, iterations: 1, exec: "send", startTime: `${WARMUP}s`, maxDuration: `${SEND_SECS + 60}s` } }),
  },
  thresholds: {
    fanout_delivered: [`rate>=${num("MIN_DELIVERY", 0.999)}`],
    fanout_latency_ms: [`p(99)<${num("P99_MS", 100)}`],
    fanout_duplicates: ["count<1"],
    checks: ["rate==1"],
  },
};

export function setup() {
  const run = runId();
  const rx = `${run}-fan-rx`;
  const tx = `${run}-fan-tx`;
  return { rx, tx, chatId: openChat(http, nodeFor(0), token(tx, "admin"), rx) };
}

export function receive(data) {
  const seen = new Set();
  const res = connect(nodeFor(__VU), token(data.rx, "user"), (sio) => {
    sio.on("message:new", (p) => {
      // The sender's last message: everything before it has arrived (one sender keeps order).
      if (p.message.content === "k6:end") return sio.close();
      const m = /^k6:(\d+):(\d+)$/.exec(p.message.content);
      if (!m) return;
      if (seen.has(m[1])) duplicates.add(1);
      seen.add(m[1]);
      latency.add(Date.now() - Number(m[2]));
    });
    // A safety net: a receiver leaves by itself if the end marker never comes.
    sio.setTimeout(() => sio.close(), (WARMUP + SEND_SECS + GRACE + 30) * 1000);
  });
  check(res, { "receiver connected": (r) => r.connected });
  for (let i = 0; i < EXPECTED; i++) delivered.add(seen.has(String(i)));
}

export function send(data) {
  let sent = 0;
  const res = connect(nodeFor(0), token(data.tx, "admin"), (sio) => {
    sio.on("error", () => sendErrors.add(1));
    sio.setInterval(() => {
      if (sent < EXPECTED) sio.emit("message:send", { chatId: data.chatId, message: { content: `k6:${sent++}:${Date.now()}` } });
      else if (sent === EXPECTED) {
        sent++;
        sio.emit("message:send", { chatId: data.chatId, message: { content: "k6:end" } }, () => sio.setTimeout(() => sio.close(), GRACE * 1000));
      }
    }, 1000 / RATE);
    sio.setTimeout(() => sio.close(), (SEND_SECS + GRACE + 30) * 1000);
  });
  check(res, { "sender connected": (r) => r.connected, "sender sent everything": () => sent === EXPECTED + 1 });
}
