// The baseline Switchboard is measured against: a plain Node socket.io 4 server (with
// @socket.io/redis-adapter, or the Redis-Streams adapter, when REDIS_URL is set) that serves the same wire contract the
// benchmarks touch: the same HS256 auth in `auth.token`, the same rooms (`user:{id}`, `admins`,
// `users`), `message:send` -> `message:new` with an in-memory `seq` and `clientMessageId`
// retries, `chat:sync`, typing, `message:read`, `sendReportMessage`, `user:status` on presence
// transitions, and `POST /api/chats`. It keeps everything in memory: no persistence, which
// flatters the baseline in the persisted-send figures (said so in loadtest/README.md).
//
// Env: HOST, PORT, JWT_SECRET, REDIS_URL (optional), RATE_LIMIT_PER_SEC (ignored: no limiter),
// ADAPTER: `redis` (default with REDIS_URL: @socket.io/redis-adapter, pub/sub, no connection state
// recovery) or `streams` (@socket.io/redis-streams-adapter with socket.io's connectionStateRecovery,
// maxDisconnectionDuration 120 s, skipMiddlewares false: the one Node setup whose recovery
// survives the node a client was on; the reconnect benchmark's fair comparison), STREAMS_MAXLEN
// (the stream's length cap, default 10,000: the adapter's own default).

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const HOST = process.env.HOST ?? "127.0.0.1";
const PORT = Number(process.env.PORT ?? 5001);
const SECRET = process.env.JWT_SECRET ?? "";
if (!SECRET) {
  console.error("JWT_SECRET is required");
  process.exit(2);
}

// ---- auth: HS256 only, algorithm pinned, exp required (30 s leeway), role checked ----
const ROLES = new Set(["user", "admin", "superadmin"]);
function verify(token) {
  if (typeof token !== "string") throw new Error("missing token");
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("malformed");
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "HS256") throw new Error("wrong algorithm");
  const sig = createHmac("sha256", SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== sig.length || !timingSafeEqual(given, sig)) throw new Error("bad signature");
  const c = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof c.exp !== "number" || c.exp + 30 < Date.now() / 1000) throw new Error("expired");
  const id = c.id ?? c.sub;
  if (!id || !ROLES.has(c.role)) throw new Error("bad claims");
  return { id: String(id), role: c.role, name: c.name ?? String(id) };
}
const isStaff = (u) => u.role !== "user";
const oid = () => randomBytes(12).toString("hex");

// ---- in-memory state ----
const chats = new Map(); // id -> { id, participants, messages: [], byClientId: Map }
const reports = new Map();
const online = new Map(); // userId -> socket count on this node

function chatRooms(chat) {
  return [...chat.participants.map((p) => `user:${p}`), "admins"];
}
function canSee(user, chat) {
  return isStaff(user) || chat.participants.includes(user.id);
}
const fail = (code, message) => ({ ok: false, error: { code, message } });

// ---- HTTP: POST /api/chats, /healthz ----
const http = createServer((req, res) => {
  const send = (status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  if (req.url === "/healthz" || req.url === "/readyz") return send(200, { ok: true });
  if (req.method === "POST" && req.url === "/api/chats") {
    let user;
    try {
      user = verify((req.headers.authorization ?? "").replace(/^Bearer /, ""));
    } catch (e) {
      return send(401, { error: { code: "UNAUTHORIZED", message: e.message } });
    }
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      let body = {};
      try {
        body = raw ? JSON.parse(raw) : {};
      } catch {
        return send(400, { error: { code: "VALIDATION", message: "bad JSON" } });
      }
      const participants = isStaff(user) ? [String(body.participantId ?? ""), user.id] : [user.id];
      if (!participants[0]) return send(400, { error: { code: "VALIDATION", message: "participantId" } });
      const now = new Date().toISOString();
      const chat = { id: oid(), participants, chatType: "support", title: body.title ?? "Support", status: "open", priority: "medium", createdAt: now, updatedAt: now };
      chats.set(chat.id, { ...chat, messages: [], byClientId: new Map() });
      send(201, chat);
    });
    return;
  }
  if (req.url.startsWith("/socket.io/")) return; // socket.io answers these
  send(404, { error: { code: "NOT_FOUND", message: "not found" } });
});

const ADAPTER = process.env.REDIS_URL ? (process.env.ADAPTER ?? "redis") : "memory";
if (!["memory", "redis", "streams"].includes(ADAPTER)) {
  console.error(`ADAPTER must be redis or streams (with REDIS_URL), not ${ADAPTER}`);
  process.exit(2);
}
const recovery = ADAPTER === "streams" ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000, skipMiddlewares: false } } : {};
const io = new Server(http, { maxHttpBufferSize: 256 * 1024, cors: { origin: true, credentials: true }, ...recovery });

if (ADAPTER === "redis") {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
} else if (ADAPTER === "streams") {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-streams-adapter");
  const client = createClient({ url: process.env.REDIS_URL });
  await client.connect();
  io.adapter(createAdapter(client, { maxLen: Number(process.env.STREAMS_MAXLEN ?? 10_000) }));
}

io.use((socket, next) => {
  try {
    socket.data.user = verify(socket.handshake.auth?.token);
    next();
  } catch (e) {
    next(new Error(`UNAUTHORIZED: ${e.message}`));
  }
});

function announce(user, status) {
  const rooms = new Set(["admins"]);
  for (const c of chats.values()) if (c.participants.includes(user.id)) for (const p of c.participants) rooms.add(`user:${p}`);
  io.to([...rooms]).except(`user:${user.id}`).emit("user:status", { userId: user.id, status });
}

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join([`user:${user.id}`, isStaff(user) ? "admins" : "users"]);
  const n = (online.get(user.id) ?? 0) + 1;
  online.set(user.id, n);
  if (n === 1) announce(user, "online");
  socket.on("disconnect", () => {
    const left = (online.get(user.id) ?? 1) - 1;
    if (left <= 0) {
      online.delete(user.id);
      announce(user, "offline");
    } else online.set(user.id, left);
  });

  // Every handler answers by ack, or with the `error` event when there is none.
  const handle = (event, fn) =>
    socket.on(event, (payload, ack) => {
      let out;
      try {
        out = fn(payload ?? {});
      } catch (e) {
        out = fail("VALIDATION", e.message);
      }
      if (typeof ack === "function") ack(out);
      else if (out && out.ok === false) socket.emit("error", { message: out.error.message, error: out.error.code, event });
    });
  const chatOf = (p) => {
    const chat = chats.get(p.chatId);
    if (!chat || !canSee(user, chat)) return null;
    return chat;
  };

  handle("message:send", (p) => {
    const chat = chatOf(p);
    if (!chat) return fail("NOT_FOUND", "no such chat");
    const content = String(p.message?.content ?? "").trim();
    if (!content || content.length > 5000) return fail("VALIDATION", "content");
    const cmid = p.clientMessageId;
    if (cmid && chat.byClientId.has(`${user.id}/${cmid}`)) return { ok: true, message: chat.byClientId.get(`${user.id}/${cmid}`) };
    const message = {
      id: oid(), chatId: chat.id, seq: chat.messages.length + 1, senderId: user.id, senderName: user.name, senderRole: user.role,
      content, type: "text", timestamp: new Date().toISOString(), status: "sent", ...(cmid ? { clientMessageId: cmid } : {}),
    };
    chat.messages.push(message);
    if (cmid) chat.byClientId.set(`${user.id}/${cmid}`, message);
    io.to(chatRooms(chat)).emit("message:new", { chatId: chat.id, message });
    return { ok: true, message };
  });
  handle("chat:sync", (p) => {
    const chat = chatOf(p);
    if (!chat) return fail("NOT_FOUND", "no such chat");
    const limit = Math.min(Number(p.limit ?? 100), 500);
    const rest = chat.messages.filter((m) => m.seq > Number(p.afterSeq ?? 0));
    return { ok: true, messages: rest.slice(0, limit), hasMore: rest.length > limit };
  });
  for (const [event, isTyping] of [["user:typing:start", true], ["user:typing:stop", false]]) {
    handle(event, (p) => {
      const chat = chatOf(p);
      if (!chat) return fail("NOT_FOUND", "no such chat");
      io.to(chatRooms(chat)).except(`user:${user.id}`).emit("user:typing", { chatId: chat.id, userId: user.id, userName: user.name, isTyping });
      return { ok: true };
    });
  }
  handle("message:read", (p) => {
    const chat = chatOf(p);
    if (!chat) return fail("NOT_FOUND", "no such chat");
    const upTo = chat.messages.find((m) => m.id === p.messageId);
    if (!upTo) return fail("NOT_FOUND", "no such message");
    for (const m of chat.messages) if (m.seq <= upTo.seq && m.senderId !== user.id) m.status = "read";
    io.to(chatRooms(chat)).emit("message:read", { chatId: chat.id, messageId: p.messageId, readBy: user.id, readAt: new Date().toISOString() });
    return { ok: true };
  });
  socket.on("sendReportMessage", (p, ack) => {
    let body;
    if (!isStaff(user)) body = { ok: false, success: false, error: { code: "FORBIDDEN", message: "staff only" } };
    else if (!p?.userId || !p?.title || !p?.message) body = { ok: false, success: false, error: { code: "VALIDATION", message: "userId, title, message" } };
    else {
      const report = {
        id: oid(), userId: String(p.userId), title: p.title, message: p.message, status: p.status ?? "Info",
        sentBy: user.id, sentByName: user.name, isRead: false, createdAt: new Date().toISOString(),
      };
      reports.set(report.id, report);
      io.to(`user:${report.userId}`).emit("receiveReportMessage", { success: true, message: report });
      body = { ok: true, success: true, message: report };
    }
    socket.emit("reportMessageSent", body);
    if (typeof ack === "function") ack(body);
  });
});

http.listen(PORT, HOST, () => console.log(`baseline listening on ${HOST}:${PORT} (adapter: ${ADAPTER})`));
const stop = () => {
  io.close();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
