// The support-chat mix: USERS users, each in their own 1:1 chat, type, send acknowledged
// messages and mark the answers read; AGENTS staff sockets watch everything (the `admins` room).
//   k6 run -e JWT_SECRET=... -e USERS=200 -e AGENTS=5 -e MESSAGES=20 scenarios/support-mix.js
import { check } from "k6";
import http from "k6/http";
import { Counter, Rate, Trend } from "k6/metrics";
import { connect, nodeFor, num, openChat, runId, token } from "../lib/sio.js";

const USERS = num("USERS", 20);
const AGENTS = num("AGENTS", 2);
const MESSAGES = num("MESSAGES", 5);
const INTERVAL = num("SEND_INTERVAL_MS", 1000);
const WARMUP = num("WARMUP_SECS", 5);
const SESSION = WARMUP + (MESSAGES * INTERVAL) / 1000 + 3;

const ackMs = new Trend("send_ack_ms", true);
const ackOk = new Rate("send_ack_ok");
const readOk = new Rate("read_ack_ok");
const typingSeen = new Counter("typing_events_seen");
const agentDelivered = new Rate("agent_delivered");

export const options = {
  scenarios: {
    agents: { executor: "per-vu-iterations", vus: AGENTS, iterations: 1, exec: "agent", maxDuration: `${SESSION + 60}s` },
    users: { executor: "per-vu-iterations", vus: USERS, iterations: 1, exec: "user", startTime: `${WARMUP}s`, maxDuration: `${SESSION + 60}s` },
  },
  thresholds: {
    send_ack_ok: ["rate>0.99"],
    read_ack_ok: ["rate>0.99"],
    send_ack_ms: [`p(99)<${num("ACK_P99_MS", 500)}`],
    agent_delivered: ["rate>0.99"],
    checks: ["rate>0.99"],
  },
};

export const setup = () => ({ run: runId() });

export function agent(data) {
  const got = new Set();
  const res = connect(nodeFor(__VU), token(`${data.run}-agent-${__VU}`, "admin"), (sio) => {
    sio.on("message:new", (p) => {
      if (p.message.content.startsWith(`${data.run}:`)) got.add(p.message.content);
      if (got.size === USERS * MESSAGES) sio.close();
    });
    sio.on("user:typing", () => typingSeen.add(1));
    // A safety net, if some message never comes.
    sio.setTimeout(() => sio.close(), (SESSION + 30) * 1000);
  });
  check(res, { "agent connected": (r) => r.connected });
  const expected = USERS * MESSAGES;
  for (let i = 0; i < expected; i++) agentDelivered.add(i < got.size);
}

export function user(data) {
  const id = `${data.run}-user-${__VU}`;
  const tok = token(id, "user");
  const base = nodeFor(__VU);
  const chatId = openChat(http, base, tok);
  let sent = 0;
  const res = connect(base, tok, (sio) => {
    sio.on("message:new", (p) => {
      if (p.chatId !== chatId) return;
      sio.emit("message:read", { chatId, messageId: p.message.id }, (ack) => readOk.add(ack && ack.ok === true));
    });
    sio.setInterval(() => {
      if (sent >= MESSAGES) return;
      const n = sent++;
      sio.emit("user:typing:start", { chatId });
      sio.setTimeout(() => {
        const t0 = Date.now();
        sio.emit("message:send", { chatId, message: { content: `${data.run}:${id}:${n}` }, clientMessageId: `${id}-${n}` }, (ack) => {
          ackMs.add(Date.now() - t0);
          ackOk.add(ack && ack.ok === true);
        });
        sio.emit("user:typing:stop", { chatId });
      }, 100);
    }, INTERVAL);
    sio.setTimeout(() => sio.close(), (MESSAGES * INTERVAL) / 1000 * 1000 + 2000);
  });
  check(res, { "user connected": (r) => r.connected, "user sent everything": () => sent === MESSAGES });
}
