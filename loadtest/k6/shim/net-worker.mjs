// The network thread of one VU: owns its WebSocket and HTTP requests, so the VU thread can block
// the way k6's API does (ws.connect, http.post and sleep are synchronous in k6). Every event is
// posted back on the port, then the shared counter is bumped and notified to wake the VU.
import { workerData } from "node:worker_threads";
import WebSocket from "ws";

const { port, sab } = workerData;
const flag = new Int32Array(sab);
const emit = (m) => {
  port.postMessage(m);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
};
const sockets = new Map();
// Tell the VU thread we are ready (it waits for the counter to move).
emit({ ev: "ready", id: 0 });

port.on("message", async (m) => {
  if (m.op === "ws-open") {
    const ws = new WebSocket(m.url, { headers: m.headers ?? {}, perMessageDeflate: false, handshakeTimeout: 15000 });
    sockets.set(m.id, ws);
    ws.on("upgrade", (res) => emit({ ev: "upgrade", id: m.id, status: res.statusCode }));
    ws.on("open", () => emit({ ev: "open", id: m.id }));
    ws.on("message", (data, isBinary) => emit({ ev: "message", id: m.id, data: isBinary ? data : data.toString() }));
    ws.on("error", (e) => emit({ ev: "error", id: m.id, error: String(e?.message ?? e) }));
    ws.on("close", (code) => {
      sockets.delete(m.id);
      emit({ ev: "close", id: m.id, code });
    });
  } else if (m.op === "ws-send") {
    const ws = sockets.get(m.id);
    if (ws?.readyState === WebSocket.OPEN) ws.send(m.data);
  } else if (m.op === "ws-close") {
    const ws = sockets.get(m.id);
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  } else if (m.op === "http") {
    const t0 = performance.now();
    try {
      const r = await fetch(m.url, { method: m.method, headers: m.headers, body: m.body ?? undefined, signal: AbortSignal.timeout(m.timeout ?? 60000) });
      const body = await r.text();
      emit({ ev: "http", id: m.id, status: r.status, body, headers: Object.fromEntries(r.headers), duration: performance.now() - t0 });
    } catch (e) {
      emit({ ev: "http", id: m.id, status: 0, body: "", error: String(e?.message ?? e), headers: {}, duration: performance.now() - t0 });
    }
  }
});
