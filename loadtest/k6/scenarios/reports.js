// Report broadcast: a staff member sends a report to each of ONLINE connected users and OFFLINE
// users who are not connected. Online users must receive `receiveReportMessage` live; offline
// users' reports must be stored (GET /api/reports, Switchboard's REST API).
//   k6 run -e JWT_SECRET=... -e ONLINE=500 -e OFFLINE=500 scenarios/reports.js
import { check } from "k6";
import exec from "k6/execution";
import http from "k6/http";
import { Rate, Trend } from "k6/metrics";
import { connect, nodeFor, num, runId, token } from "../lib/sio.js";

const ONLINE = num("ONLINE", 20);
const OFFLINE = num("OFFLINE", 20);
const WARMUP = num("WARMUP_SECS", 5);
const HOLD = WARMUP + num("SEND_SECS", 10);

const received = new Rate("report_received_online");
const ackOk = new Rate("report_ack_ok");
const stored = new Rate("report_stored_offline");
const latency = new Trend("report_latency_ms", true);

export const options = {
  scenarios: {
    online: { executor: "per-vu-iterations", vus: ONLINE, iterations: 1, exec: "online", maxDuration: `${HOLD + 60}s` },
    // STAFF=0 on all but one host of a distributed run.
    ...(__ENV.STAFF === "0" ? {} : { staff: { executor: "per-vu-iterations", vus: 1, iterations: 1, exec: "staff", startTime: `${WARMUP}s`, maxDuration: `${HOLD + 60}s` } }),
  },
  thresholds: {
    report_received_online: ["rate>0.99"],
    report_ack_ok: ["rate>0.99"],
    report_stored_offline: ["rate>0.99"],
    checks: ["rate>0.99"],
  },
};

export const setup = () => ({ run: runId() });

export function online(data) {
  const me = exec.scenario.iterationInTest;
  let got = false;
  const res = connect(nodeFor(me), token(`${data.run}-rep-on-${me}`, "user"), (sio) => {
    sio.on("receiveReportMessage", (p) => {
      got = true;
      latency.add(Date.now() - Number(p.message.orderId));
      sio.close();
    });
    // A safety net, if the report never comes.
    sio.setTimeout(() => sio.close(), (HOLD + 30) * 1000);
  });
  check(res, { "user connected": (r) => r.connected });
  received.add(got);
}

export function staff(data) {
  const tok = token(`${data.run}-rep-staff`, "admin");
  const targets = [];
  for (let i = 0; i < ONLINE; i++) targets.push(`${data.run}-rep-on-${i}`);
  for (let i = 0; i < OFFLINE; i++) targets.push(`${data.run}-rep-off-${i}`);
  let answered = 0;
  const res = connect(nodeFor(0), tok, (sio) => {
    for (const userId of targets) {
      sio.emit("sendReportMessage", { userId, orderId: String(Date.now()), title: "Load test", message: "Your invoice is ready", status: "Info" }, (ack) => {
        ackOk.add(ack && ack.ok === true);
        if (++answered === targets.length) sio.close();
      });
    }
    sio.setTimeout(() => sio.close(), (HOLD - WARMUP) * 1000);
  });
  check(res, { "staff connected": (r) => r.connected, "every report answered": () => answered === targets.length });
  for (let i = 0; i < OFFLINE; i++) {
    const r = http.get(`${nodeFor(i)}/api/reports?userId=${data.run}-rep-off-${i}`, { headers: { Authorization: `Bearer ${tok}` } });
    stored.add(r.status === 200 && r.json().reports.length === 1);
  }
}
