// `k6/ws`: ws.connect blocks until the socket closes and runs the callback's handlers and
// timers in between, as k6 does. `socket.on` may register several handlers per event.
import { add, limits, newId, post, take } from "../runtime.mjs";

export function connect(url, params, callback) {
  if (typeof params === "function") [callback, params] = [params, {}];
  const id = newId();
  const handlers = {};
  let timers = [];
  let closed = false;
  let closing = false;
  let status = 0;
  let error = "";
  const started = Date.now();
  const socket = {
    on(ev, fn) {
      (handlers[ev] ??= []).push(fn);
    },
    send(data) {
      post({ op: "ws-send", id, data });
    },
    close() {
      closing = true;
      post({ op: "ws-close", id });
    },
    ping() {},
    setTimeout(fn, ms) {
      timers.push({ at: Date.now() + Number(ms), fn });
    },
    setInterval(fn, ms) {
      timers.push({ at: Date.now() + Number(ms), fn, every: Math.max(1, Number(ms)) });
    },
  };
  const fire = (ev, ...args) => {
    for (const fn of handlers[ev] ?? []) fn(...args);
  };
  callback(socket);
  post({ op: "ws-open", id, url, headers: params?.headers });
  let forcedAt = 0;
  while (!closed) {
    const now = Date.now();
    if (now > limits.hardDeadline && !closing) socket.close();
    if (closing && !forcedAt) forcedAt = now;
    if (forcedAt && now - forcedAt > 3000) break; // the close handshake never finished
    for (const t of timers.filter((t) => t.at <= now)) {
      if (closed || closing) break;
      if (t.every) t.at += t.every;
      else timers = timers.filter((x) => x !== t);
      t.fn();
    }
    const next = timers.length ? Math.min(...timers.map((t) => t.at)) - Date.now() : 200;
    for (const e of take(id, Math.max(1, Math.min(next, 200)))) {
      if (e.ev === "upgrade") status = e.status;
      else if (e.ev === "open") {
        status ||= 101;
        add("ws_sessions", "counter", 1);
        add("ws_connecting", "trend", Date.now() - started, true);
        fire("open");
      } else if (e.ev === "message") fire("message", e.data);
      else if (e.ev === "error") {
        error = e.error;
        fire("error", { error: () => e.error });
      } else if (e.ev === "close") {
        closed = true;
        fire("close", e.code);
      }
    }
  }
  add("ws_session_duration", "trend", Date.now() - started, true);
  return { url, status, error, headers: {}, body: "" };
}
export default { connect };
