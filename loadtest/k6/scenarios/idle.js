// Idle connections held: VUS users connect, answer Engine.IO pings for HOLD_SECS, then leave.
//   k6 run -e JWT_SECRET=... -e BASE_URL=http://127.0.0.1:5001 -e VUS=1000 -e HOLD_SECS=60 scenarios/idle.js
import { check } from "k6";
import { Rate, Trend } from "k6/metrics";
import { connect, nodeFor, num, runId, token } from "../lib/sio.js";

const VUS = num("VUS", 100);
const HOLD = num("HOLD_SECS", 30);
const connected = new Rate("sio_connected");
const held = new Rate("sio_held");
const connectMs = new Trend("sio_connect_ms", true);

export const options = {
  scenarios: { idle: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: `${HOLD + 120}s` } },
  thresholds: {
    sio_connected: ["rate>0.99"],
    sio_held: ["rate>0.99"],
    sio_connect_ms: [`p(95)<${num("CONNECT_P95_MS", 2000)}`],
  },
};

export const setup = () => ({ run: runId() });

export default function (data) {
  let heldToEnd = false;
  const res = connect(nodeFor(__VU), token(`${data.run}-idle-${__VU}`, "user"), (sio) => {
    sio.setTimeout(() => {
      heldToEnd = true;
      sio.close();
    }, HOLD * 1000);
  }, { onConnect: (ms) => connectMs.add(ms) });
  connected.add(res.connected);
  held.add(heldToEnd);
  check(res, { "websocket upgraded (101)": (r) => r.status === 101, "socket.io connected": (r) => r.connected });
}
