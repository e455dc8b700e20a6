// Clients through a load balancer, with the official socket.io-client.
//
// Connects polling-only clients (which need sticky sessions) and WebSocket-only clients (which do
// not), all through the load balancer, each from its own loopback source address (127.0.0.x, so
// that an address-hashing balancer spreads them over the nodes). Every user opens a support chat
// over REST and sends one message in it; an admin opens a chat with the first user and sends one
// too. Every participant socket and every admin socket must receive each `message:new` for it
// exactly once, and no polling session may be lost (a lost one shows as a disconnect, since
// reconnection is off: 400 "Session ID unknown" when a poll reaches the wrong node).
//
//   node lb-test.mjs --url http://127.0.0.1:8080 --secret S
//     --expect-session-loss  negative control: the balancer is NOT sticky; at least one polling
//                          session must break (proves the check can fail), while every WebSocket
//                          client still works
//     --cookies            keep cookies (HAProxy's inserted stickiness cookie)
//
// Prints one JSON summary line; exits 0 on success, 1 on a failed assertion.

import { createHmac } from "node:crypto";
import http from "node:http";
import { parseArgs } from "node:util";
import { io } from "../js/node_modules/socket.io-client/build/esm-debug/index.js";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    secret: { type: "string" },
    clients: { type: "string", default: "6" },
    "expect-session-loss": { type: "boolean", default: false },
    cookies: { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "20000" },
  },
});
const BASE = args.url;
const PER_TRANSPORT = Number(args.clients);
const TIMEOUT_MS = Number(args["timeout-ms"]);
const deadline = Date.now() + TIMEOUT_MS;
const failures = [];
const sockets = [];

function fail(msg) {
  failures.push(msg);
}

function b64url(x) {
  return Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
}

/** An HS256 token with the claims of PROTOCOL.md. */
function token(id, role) {
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ id, role, name: `${role} ${id}`, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = createHmac("sha256", args.secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function rest(method, path, tok, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { authorization: `Bearer ${tok}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(Math.max(1000, deadline - Date.now())),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Resolves when `cond()` holds, rejects at the test's deadline. */
async function until(what, cond) {
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let nextAddress = 2;

/** A connected client: its socket, the `message:new` ids it saw (with counts) and its troubles. */
function connect(id, role, transport) {
  const localAddress = `127.0.0.${nextAddress++}`;
  const client = { id, role, transport, localAddress, seen: new Map(), troubles: [], connected: false };
  const opts = {
    auth: { token: token(id, role) },
    transports: [transport],
    upgrade: false,
    reconnection: false,
    forceNew: true,
    timeout: 10000,
    withCredentials: args.cookies,
  };
  if (transport === "websocket") opts.localAddress = localAddress;
  else opts.agent = new http.Agent({ keepAlive: true, localAddress });
  const s = io(BASE, opts);
  client.socket = s;
  s.on("connect", () => {
    client.connected = true;
    client.sid = s.id;
  });
  s.on("connect_error", (e) => client.troubles.push(`connect_error: ${e.message}`));
  s.on("disconnect", (reason, d) => {
    if (!client.closing) client.troubles.push(`disconnect: ${reason} ${d?.description?.message ?? d?.description ?? ""}`.trim());
  });
  s.on("message:new", ({ message }) => client.seen.set(message.id, (client.seen.get(message.id) ?? 0) + 1));
  sockets.push(client);
  return client;
}

function send(client, chatId, content) {
  return new Promise((resolve, reject) => {
    client.socket
      .timeout(Math.max(1000, deadline - Date.now()))
      .emit("message:send", { chatId, message: { content } }, (err, ack) => {
        if (err) reject(new Error(`${client.id}: no ack (${err.message})`));
        else if (!ack?.ok) reject(new Error(`${client.id}: ${JSON.stringify(ack)}`));
        else resolve(ack.message);
      });
  });
}

async function main() {
  // Arrange: two admins (one per transport), then users, half polling and half WebSocket.
  const admins = [connect("admin-a", "admin", "polling"), connect("admin-b", "admin", "websocket")];
  const users = [];
  for (let i = 0; i < PER_TRANSPORT; i++) {
    users.push(connect(`user-p${i}`, "user", "polling"));
    users.push(connect(`user-w${i}`, "user", "websocket"));
  }
  const settled = () => sockets.every((c) => c.connected || c.troubles.length > 0);
  await until("every client to connect or fail", settled);

  if (args["expect-session-loss"]) {
    // Negative control: give polling sessions a few round trips to land on a wrong node.
    const polling = sockets.filter((c) => c.transport === "polling");
    for (const c of polling.filter((c) => c.connected)) {
      c.socket.emit("chat:sync", { chatId: "x", afterSeq: 0 });
    }
    await until("a polling session to break", () => polling.some((c) => c.troubles.length > 0)).catch(() => {});
    const broken = polling.filter((c) => c.troubles.length > 0);
    if (broken.length === 0) fail("no polling session broke behind a non-sticky balancer: the check cannot see missing stickiness");
    // WebSocket-only clients need no stickiness: a WebSocket is one connection to one node.
    const ws = sockets.filter((c) => c.transport === "websocket");
    for (const c of ws) {
      if (!c.connected || c.troubles.length) fail(`${c.id} (websocket) failed behind the non-sticky balancer: ${c.troubles.join("; ")}`);
    }
    return { brokenPollingSessions: broken.length, pollingClients: polling.length, healthyWebSockets: ws.filter((c) => c.connected && !c.troubles.length).length, example: broken[0]?.troubles[0] };
  }

  for (const c of sockets) if (!c.connected) fail(`${c.id} (${c.transport}) did not connect: ${c.troubles.join("; ")}`);
  if (failures.length) return {};

  // Which node each socket reached: active-users is cluster-wide, any node answers.
  const adminToken = token("admin-a", "admin");
  const perNode = {};
  const nodeOf = new Map();
  const res = await fetch(`${BASE}/api/socket/active-users?limit=500`, { headers: { authorization: `Bearer ${adminToken}` } });
  for (const u of (await res.json()).activeUsers) nodeOf.set(u.socketId, u.node);
  for (const c of sockets) {
    const node = nodeOf.get(c.sid) ?? "unknown";
    c.node = node;
    perNode[node] = (perNode[node] ?? 0) + 1;
  }
  if (Object.keys(perNode).filter((n) => n !== "unknown").length < 2) {
    fail(`every client reached the same node (${JSON.stringify(perNode)}): nothing crossed nodes`);
  }

  // Act: each user opens a support chat and writes in it; admin-a opens a chat with the first
  // user and writes there too.
  const expected = new Map(); // message id -> clients that must see it
  const chats = await Promise.all(users.map((u) => rest("POST", "/api/chats", token(u.id, "user"), {})));
  const adminChat = await rest("POST", "/api/chats", adminToken, { participantId: users[0].id });
  const sent = await Promise.all([
    ...users.map((u, i) => send(u, chats[i].id, `hello from ${u.id}`).then((m) => [m, u])),
    send(admins[0], adminChat.id, "hello from admin-a").then((m) => [m, users[0]]),
  ]);
  for (const [message, user] of sent) expected.set(message.id, new Set([user, ...admins]));

  // Assert: every expected delivery arrives; then a second round of messages from every user
  // (which, from one sender, must arrive after the first) bounds the wait for duplicates.
  const delivered = () =>
    [...expected].every(([id, audience]) => [...audience].every((c) => c.seen.has(id)));
  await until("every message:new to reach its audience", delivered).catch((e) => fail(e.message));
  const markers = await Promise.all(users.map((u, i) => send(u, chats[i].id, `marker from ${u.id}`)));
  await until("the marker messages", () => markers.every((m, i) => [users[i], ...admins].every((c) => c.seen.has(m.id)))).catch((e) =>
    fail(e.message),
  );

  for (const [id, audience] of expected) {
    for (const c of audience) {
      const n = c.seen.get(id) ?? 0;
      if (n !== 1) fail(`${c.id} (${c.transport}, node ${c.node}) got message ${id} ${n} times`);
    }
  }
  for (const c of sockets) {
    if (c.troubles.length) fail(`${c.id} (${c.transport}): ${c.troubles.join("; ")}`);
    if (!c.socket.connected) fail(`${c.id} (${c.transport}) is no longer connected`);
    if (c.socket.io.engine?.transport?.name !== c.transport) fail(`${c.id} ended on ${c.socket.io.engine?.transport?.name}`);
    if (c.socket.id !== c.sid) fail(`${c.id} changed session`);
  }
  const deliveries = [...expected].reduce((n, [, a]) => n + a.size, 0);
  return { clients: sockets.length, socketsPerNode: perNode, messages: expected.size + markers.length, deliveriesChecked: deliveries };
}

let summary = {};
try {
  summary = await main();
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  for (const c of sockets) {
    c.closing = true;
    c.socket.disconnect();
  }
}
console.log(JSON.stringify({ ok: failures.length === 0, ...summary, failures }));
process.exit(failures.length === 0 ? 0 : 1);
