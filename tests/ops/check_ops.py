#!/usr/bin/env python3
"""Checks the monitoring files against a real node and a real Prometheus server.

1. Every metric name the Grafana dashboard or the alert rules mention is one the node really
   exports: the real `target/debug/switchboard` runs on a free port with a temporary DATA_DIR
   and JWT_SECRET, gets some REST and Socket.IO traffic, and its /metrics is read. A histogram's
   `_bucket`, `_sum` and `_count` series count as exported.
2. A real Prometheus server scrapes that node every second, with deploy/prometheus/alerts.yml
   loaded: through its HTTP query API, `switchboard_messages_saved_total` and the handled
   `message:send` events move after more traffic, every dashboard query is valid PromQL that
   Prometheus runs, and every alert rule evaluates without error.

Standard library only. Every wait has a deadline; every process started here is stopped at
the end, whatever happens.

    python3 tests/ops/check_ops.py [--binary target/debug/switchboard] [--prometheus prometheus]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "switchboard.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
METRIC = re.compile(r"\bswitchboard_[a-z0-9_]+")
JWT_SECRET = "ops-check-secret-0123456789abcdef"


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, check, timeout, every=0.2):
    """Polls `check` until it returns something truthy, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError) as e:
            last_error = e
        time.sleep(every)
    fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, timeout=10):
    """Returns (status, body text)."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json" if not isinstance(body, bytes) else "text/plain;charset=UTF-8"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# --- What the dashboard and the alerts name -------------------------------------------------


def dashboard_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    queries.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    # Template variables use Grafana functions (label_values), not PromQL: their metric names
    # are checked, their syntax is not.
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            queries.append((f"variable {v['name']}", q))
    return queries


def exported_names(exposition):
    """Metric names in a Prometheus text exposition, with histogram and summary suffixes."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


# --- A node and some traffic ---------------------------------------------------------------


class Node:
    """The real binary on a free port, its JSON log lines collected."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.env = dict(
            os.environ,
            HOST="127.0.0.1",
            PORT="0",
            DATA_DIR=data_dir,
            JWT_SECRET=JWT_SECRET,
            NODE_ID="ops-check",
            LOG_FORMAT="json",
            RUST_LOG="info",
            CORS_ORIGINS="*",
            # An endpoint nobody answers: the webhook series exist and move (retries).
            WEBHOOK_URL="http://127.0.0.1:9/hook",
            WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        self.lines = []
        self.proc = subprocess.Popen([binary], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.port = wait_for("the node's 'listening' log line", self._listening_port, 60)
        self.base = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def _listening_port(self):
        if self.proc.poll() is not None:
            fail(f"the node exited with {self.proc.returncode}:\n{''.join(self.lines)}")
        for line in list(self.lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "listening":
                return int(entry["addr"].rsplit(":", 1)[1])
        return None

    def token(self, user_id, role):
        out = subprocess.run(
            [self.binary, "token", "--id", user_id, "--role", role],
            env=self.env, capture_output=True, text=True, timeout=60, check=True,
        )
        return out.stdout.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Polling:
    """A minimal Socket.IO client over Engine.IO v4 HTTP long-polling (no WebSocket in the
    standard library): connect with a token, emit with an ack, read the ack."""

    def __init__(self, base, token):
        self.url = f"{base}/socket.io/?EIO=4&transport=polling"
        status, body = http("GET", self.url)
        if status != 200 or not body.startswith("0"):
            fail(f"engine.io open failed: {status} {body}")
        self.url += "&sid=" + json.loads(body[1:])["sid"]
        self._post("40" + json.dumps({"token": token}))
        packets = self._until(lambda p: p.startswith("40") or p.startswith("44"))
        if not packets.startswith("40"):
            fail(f"socket.io connect refused: {packets}")
        self.next_ack = 1

    def _post(self, packet):
        status, body = http("POST", self.url, packet.encode())
        if status != 200:
            fail(f"engine.io post failed: {status} {body}")

    def _until(self, wanted, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = http("GET", self.url, timeout=timeout)
            if status != 200:
                fail(f"engine.io poll failed: {status} {body}")
            for packet in body.split("\x1e"):
                if packet == "2":
                    self._post("3")
                elif wanted(packet):
                    return packet
        fail("no expected socket.io packet in time")

    def ack(self, event, data):
        ack_id = self.next_ack
        self.next_ack += 1
        self._post(f"42{ack_id}" + json.dumps([event, data]))
        packet = self._until(lambda p: p.startswith(f"43{ack_id}["))
        return json.loads(packet[len(f"43{ack_id}"):])[0]

    def close(self):
        try:
            self._post("41")
        except SystemExit:
            pass


def traffic(node, token, chat_id, messages):
    """REST and Socket.IO traffic: saves `2 * messages` chat messages."""
    for i in range(messages):
        status, body = http("POST", f"{node.base}/api/chats/{chat_id}/messages", {"message": {"content": f"rest {i}"}}, token)
        if status != 201:
            fail(f"REST message not saved: {status} {body}")
    client = Polling(node.base, token)
    for i in range(messages):
        ack = client.ack("message:send", {"chatId": chat_id, "message": {"content": f"socket {i}"}})
        if ack.get("ok") is not True:
            fail(f"message:send not acked ok: {ack}")
    client.ack("chat:sync", {"chatId": chat_id, "afterSeq": 0})
    client.close()
    http("GET", f"{node.base}/api/chats/{chat_id}/messages?afterSeq=0", token=token)
    http("GET", f"{node.base}/readyz")
    http("GET", f"{node.base}/no-such-route")


# --- Prometheus ------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, binary, workdir, target_port):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"rule_files:\n  - {json.dumps(ALERTS)}\n"
                "scrape_configs:\n  - job_name: switchboard\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{target_port}']\n"
            )
        self.log = open(os.path.join(workdir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for("Prometheus to be ready", self._ready, 90)

    def _ready(self):
        if self.proc.poll() is not None:
            fail(f"prometheus exited with {self.proc.returncode}; see {self.log.name}")
        return http("GET", f"{self.base}/-/ready", timeout=2)[0] == 200

    def api(self, path, **params):
        status, body = http("GET", f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            raise ValueError(f"{path} {params}: {status} {body}")
        return reply["data"]

    def value(self, query):
        """The single value of an instant query, or None while it has no result."""
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "switchboard"))
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    args = parser.parse_args()
    # A hard bound on the whole check, whatever hangs.
    signal.signal(signal.SIGALRM, lambda *_: fail("the whole check took over 300 s"))
    signal.alarm(300)

    queries = dashboard_queries()
    with open(ALERTS) as f:
        alert_names = set(METRIC.findall(f.read()))
    dashboard_names = {n for _, q in queries for n in METRIC.findall(q)}
    if len(dashboard_names) < 10 or len(alert_names) < 5:
        fail(f"too few metric names found (dashboard {len(dashboard_names)}, alerts {len(alert_names)}): is the parsing broken?")

    workdir = tempfile.mkdtemp(prefix="switchboard-ops-")
    node = prom = None
    try:
        node = Node(args.binary, os.path.join(workdir, "data"))
        user = node.token("ops-user", "user")
        status, body = http("POST", f"{node.base}/api/chats", {}, user)
        if status != 201:
            fail(f"chat not created: {status} {body}")
        chat_id = json.loads(body)["id"]
        traffic(node, user, chat_id, 2)

        # 1. Every name used is exported.
        status, exposition = http("GET", f"{node.base}/metrics")
        if status != 200:
            fail(f"/metrics answered {status}")
        exported = exported_names(exposition)
        build = re.search(r'^switchboard_build_info\{[^}]*commit="([^"]+)"', exposition, re.M)
        if not build:
            fail("no switchboard_build_info series with a commit label")
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0 and build.group(1) == "unknown":
            fail("build_info says commit unknown in a git checkout: build.rs did not embed it")
        if head.returncode == 0 and build.group(1) != head.stdout.strip():
            # Not a failure: a binary built before the last commit is stale, not broken.
            print(f"note: build_info says commit {build.group(1)}, the checkout is at {head.stdout.strip()}")
        print(f"ok: build_info names commit {build.group(1)}")
        for source, names in (("dashboard", dashboard_names), ("alerts", alert_names)):
            missing = sorted(names - exported)
            if missing:
                fail(f"the {source} names metrics the node does not export: {missing}")
            print(f"ok: all {len(names)} metric names of the {source} are exported")

        # 2. A real Prometheus scrapes the node and sees counters move.
        prom = Prometheus(args.prometheus, workdir, node.port)
        saved = 'switchboard_messages_saved_total{job="switchboard"}'
        acked = 'switchboard_events_received_total{job="switchboard", event="message:send", outcome="ok"}'
        before = wait_for("a first scrape", lambda: prom.value(saved), 60)
        acked_before = prom.value(acked)
        if prom.value('up{job="switchboard"}') != 1:
            fail("Prometheus does not see the node up")
        traffic(node, user, chat_id, 3)
        after = wait_for("messages_saved_total to move", lambda: (v := prom.value(saved)) is not None and v >= before + 6 and v, 60)
        acked_after = wait_for("message:send events to move", lambda: (v := prom.value(acked)) is not None and v >= acked_before + 3 and v, 60)
        print(f"ok: Prometheus saw switchboard_messages_saved_total go {before:g} -> {after:g}, "
              f"message:send ok {acked_before:g} -> {acked_after:g}")

        panel_queries = [(t, q) for t, q in queries if not t.startswith("variable ")]
        for title, query in panel_queries:
            q = query.replace("$__rate_interval", "1m").replace("$node", ".*")
            try:
                prom.api("query", query=q)
            except ValueError as e:
                fail(f"dashboard panel '{title}': Prometheus refuses its query: {e}")
        print(f"ok: Prometheus runs all {len(panel_queries)} dashboard panel queries")

        def rules_evaluated():
            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
            if bad:
                fail(f"alert rules fail to evaluate: {bad}")
            return len(rules) if rules and all(r.get("health") == "ok" for r in rules) else None

        n = wait_for("every alert rule to be evaluated", rules_evaluated, 60)
        print(f"ok: Prometheus loaded and evaluated all {n} alert rules without error")
        firing = [a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]]
        if firing:
            fail(f"alerts pending or firing on a healthy node: {firing}")
        print("ok: no alert is pending on a healthy node")
    finally:
        if prom:
            prom.stop()
        if node:
            node.stop()
        signal.alarm(0)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
