// Socket.IO v5 / Engine.IO v4 over k6/ws, and HS256 tokens minted with k6/crypto.
//
// Framing: Engine.IO packets are a digit then data (`0` open, `2` ping, `3` pong, `4` message);
// a Socket.IO packet rides in an Engine.IO message: `40{auth}` connect, `41` disconnect,
// `42[event,data]` event, `42<id>[event,data]` event with ack, `43<id>[data]` ack, `44{...}`
// connect error.
import ws from "k6/ws";
import crypto from "k6/crypto";
import encoding from "k6/encoding";

/** Reads a setting from the environment, with a default. */
export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === "" ? fallback : v;
}
export const num = (name, fallback) => Number(env(name, fallback));

/** HS256 JWT with the claims of PROTOCOL.md. */
export function token(id, role, ttlSecs = 3600) {
  const secret = env("JWT_SECRET", "");
  if (!secret) throw new Error("JWT_SECRET is not set");
  const now = Math.floor(Date.now() / 1000);
  const header = encoding.b64encode(JSON.stringify({ alg: "HS256", typ: "JWT" }), "rawurl");
  const body = encoding.b64encode(JSON.stringify({ id, role, name: id, iat: now, exp: now + ttlSecs }), "rawurl");
  const sig = crypto.hmac("sha256", secret, `${header}.${body}`, "base64rawurl");
  return `${header}.${body}.${sig}`;
}

/** `BASE_URL` (http://host:port) as the WebSocket URL of Socket.IO. */
export function wsUrl(base) {
  return `${base.replace(/^http/, "ws").replace(/\/$/, "")}/socket.io/?EIO=4&transport=websocket`;
}

/** The nodes (`BASE_URLS`, comma-separated, or `BASE_URL`); VUs are spread over them. */
export function nodes() {
  return env("BASE_URLS", env("BASE_URL", "http://127.0.0.1:5001")).split(",").map((s) => s.trim()).filter(Boolean);
}
export const nodeFor = (i) => nodes()[i % nodes().length];

/**
 * Connects as `tok` and runs `session(sio)` once the Socket.IO connect succeeded. Blocks until
 * the socket closes (k6 semantics). `sio` offers emit(event, data, ackFn?), on(event, fn),
 * setTimeout, setInterval, close(). Returns the k6 response plus `connected` and `refused`.
 */
export function connect(base, tok, session, hooks = {}) {
  const handlers = {};
  const acks = {};
  let nextAck = 1;
  let connected = false;
  let refused = null;
  let t0 = Date.now();
  const res = ws.connect(wsUrl(base), {}, (socket) => {
    const sio = {
      emit(event, data, ack) {
        if (ack) {
          const id = nextAck++;
          acks[id] = ack;
          socket.send(`42${id}${JSON.stringify([event, data])}`);
        } else socket.send(`42${JSON.stringify([event, data])}`);
      },
      on(event, fn) {
        handlers[event] = fn;
      },
      setTimeout: (fn, ms) => socket.setTimeout(fn, ms),
      setInterval: (fn, ms) => socket.setInterval(fn, ms),
      close() {
        socket.send("41");
        socket.close();
      },
      get connected() {
        return connected;
      },
    };
    socket.on("message", (msg) => {
      if (msg === "2") return socket.send("3");
      if (msg[0] === "0") return socket.send(`40${JSON.stringify({ token: tok })}`);
      if (msg.startsWith("40")) {
        connected = true;
        if (hooks.onConnect) hooks.onConnect(Date.now() - t0);
        return session(sio);
      }
      if (msg.startsWith("44")) {
        refused = msg.slice(2);
        return socket.close();
      }
      if (msg.startsWith("41") || msg === "1") return socket.close();
      if (msg.startsWith("42")) {
        const arr = JSON.parse(msg.slice(msg.indexOf("[")));
        const fn = handlers[arr[0]];
        if (fn) fn(arr[1], msg);
        return;
      }
      if (msg.startsWith("43")) {
        const i = msg.indexOf("[");
        const id = Number(msg.slice(2, i));
        const fn = acks[id];
        delete acks[id];
        if (fn) fn(JSON.parse(msg.slice(i))[0]);
      }
    });
    socket.on("error", (e) => {
      if (hooks.onError) hooks.onError(e && e.error ? e.error() : String(e));
    });
    // Nothing in a scenario may run forever.
    socket.setTimeout(() => socket.close(), num("SESSION_MAX_SECS", 300) * 1000);
  });
  return Object.assign({}, res, { status: res && res.status, connected, refused });
}

/** Opens a support chat over REST: a user their own, staff one with `participantId`. */
export function openChat(http, base, tok, participantId) {
  const body = participantId ? { participantId } : {};
  const r = http.post(`${base}/api/chats`, JSON.stringify(body), {
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${tok}` },
  });
  if (r.status !== 201 && r.status !== 200) throw new Error(`POST /api/chats: ${r.status} ${r.body}`);
  return r.json().id;
}

/** A run-unique prefix for user ids (call it in setup(): each VU evaluates the init code anew). */
export const runId = () => env("RUN_ID", `k6${Date.now().toString(36)}`);
