// Reconnect storm: VUS clients all drop their connection at the same wall-clock instant every
// PERIOD_SECS and reconnect at once, ROUNDS times. Every reconnect must succeed, quickly.
//   k6 run -e JWT_SECRET=... -e VUS=2000 -e ROUNDS=5 -e PERIOD_SECS=10 scenarios/reconnect-storm.js
import { check } from "k6";
import { Rate, Trend } from "k6/metrics";
import { connect, nodeFor, num, runId, token } from "../lib/sio.js";

const VUS = num("VUS", 50);
const ROUNDS = num("ROUNDS", 3);
const PERIOD = num("PERIOD_SECS", 3);

const connected = new Rate("storm_connected");
const connectMs = new Trend("storm_connect_ms", true);

export const options = {
  scenarios: { storm: { executor: "per-vu-iterations", vus: VUS, iterations: ROUNDS, maxDuration: `${ROUNDS * PERIOD * 2 + 60}s` } },
  thresholds: {
    storm_connected: ["rate>0.99"],
    storm_connect_ms: [`p(95)<${num("STORM_P95_MS", 3000)}`],
  },
};

export const setup = () => ({ run: runId() });

export default function (data) {
  const res = connect(nodeFor(__VU), token(`${data.run}-storm-${__VU}`, "user"), (sio) => {
    // Everyone drops at the next multiple of PERIOD_SECS: a synchronized storm.
    const period = PERIOD * 1000;
    sio.setTimeout(() => sio.close(), period - (Date.now() % period));
  }, { onConnect: (ms) => connectMs.add(ms) });
  connected.add(res.connected);
  check(res, { "reconnected": (r) => r.connected });
}
