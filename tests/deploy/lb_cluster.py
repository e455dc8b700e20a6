"""Three real Switchboard nodes behind the repository's nginx and HAProxy configs.

Starts, on free loopback ports: a `redis-server`, three `target/debug/switchboard` nodes, then
nginx (Debian's, not daemonized, with a temporary prefix) and HAProxy (foreground), each loading
the config from deploy/ with only its upstream list and listen address rewritten. Runs
tests/deploy/lb-test.mjs (the official socket.io-client) through each balancer, plus a negative
control for each balancer (nginx without its `hash` line; HAProxy with clients that drop its
cookie) must break polling sessions while WebSockets still work, or the test could not see missing
stickiness. Also runs deploy/docker/probe.sh (the image's health check) against a node.

The nodes run in cluster mode (REDIS_URL to a test redis-server), so lb-test.mjs asserts
cross-node delivery. They share one embedded-store DATA_DIR (SQLite in WAL mode is safe across
processes), so a chat created through any node exists on every node: a test arrangement only
(production refuses the embedded store behind several nodes and uses MongoDB).

Every wait has a deadline; every process started here is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(os.environ.get("SWITCHBOARD_ROOT", Path(__file__).resolve().parents[2]))
BINARY = ROOT / "target" / "debug" / "switchboard"
SECRET = "lb-test-secret-0123456789abcdef"
NODES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every process this test starts, each in its own process group, stopped in reverse order."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, wait: float = 10) -> None:
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self) -> None:
        for _, p in reversed(self.started):
            self.stop(p)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(what: str, cond, timeout: float = 30, proc: subprocess.Popen | None = None, exit_ok: bool = False):
    """Polls `cond` until it holds. If `proc` exits first: None when `exit_ok`, else an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            if exit_ok:
                return None
            raise RuntimeError(f"the process exited (status {proc.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def start_nodes(procs: Processes, tmp: Path, redis_url: str) -> list[int]:
    """Starts the cluster's nodes, one after the other; returns their ports."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    ports, nodes = [], []
    for i in range(1, NODES + 1):
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "NODE_ID": f"node-{i}",
            "JWT_SECRET": SECRET,
            "DATA_DIR": str(data),
            "CORS_ORIGINS": "*",
            "RATE_LIMIT_PER_SEC": "200",
            "LOG_FORMAT": "json",
            "SHUTDOWN_GRACE_SECS": "2",
            "RUST_LOG": "info",
            "REDIS_URL": redis_url,
        }
        name = f"node-{i}"
        p = procs.start(name, [str(BINARY)], env)
        nodes.append(p)
        ports.append(port)
        # One at a time: the nodes share one SQLite file, whose first opening (switching it to
        # WAL) must not race another node's.
        if not wait_for(f"{name} /readyz", lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 60, p, exit_ok=True):
            raise RuntimeError(f"{name} exited before it was ready:\n{procs.log(name)[-2000:]}")
    return ports


def render_nginx(tmp: Path, lb_port: int, node_ports: list[int], sticky: bool) -> Path:
    conf = (ROOT / "deploy/nginx/switchboard.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n" for p in node_ports)
    conf, n = re.subn(r"(# BEGIN switchboard upstreams\n).*?(\s*# END)", lambda m: m.group(1) + servers + m.group(2).lstrip("\n"), conf, flags=re.S)
    assert n == 1, "upstream markers not found in deploy/nginx/switchboard.conf"
    conf, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{lb_port};", conf)
    assert n == 1, "listen line not found"
    if not sticky:
        conf, n = re.subn(r"\n\s*hash \$remote_addr consistent;", "", conf)
        assert n == 1, "hash line not found"
    name = "nginx" if sticky else "nginx-nonsticky"
    prefix = tmp / name
    prefix.mkdir()
    os.chmod(prefix, 0o777)
    (prefix / "switchboard.conf").write_text(conf)
    main = prefix / "nginx.conf"
    main.write_text(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/switchboard.conf;
}}
"""
    )
    return main


def render_haproxy(tmp: Path, lb_port: int, node_ports: list[int]) -> Path:
    conf = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    servers = "".join(f"    server node-{i} 127.0.0.1:{p} cookie node-{i}\n" for i, p in enumerate(node_ports, 1))
    conf, n = re.subn(r"(# BEGIN switchboard servers\n).*?(\s*# END)", lambda m: m.group(1) + servers + m.group(2).lstrip("\n"), conf, flags=re.S)
    assert n == 1, "server markers not found in deploy/haproxy/haproxy.cfg"
    conf, n = re.subn(r"bind :8080\n", f"bind 127.0.0.1:{lb_port}\n", conf)
    assert n == 1, "bind line not found"
    path = tmp / "haproxy.cfg"
    path.write_text(conf)
    return path


def run_client_test(name: str, url: str, *extra: str) -> dict:
    argv = ["node", str(ROOT / "tests/deploy/lb-test.mjs"), "--url", url, "--secret", SECRET, *extra]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    last = (r.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        summary = json.loads(last)
    except json.JSONDecodeError:
        summary = {"ok": False, "failures": [r.stdout[-2000:]]}
    summary["ok"] = summary.get("ok", False) and r.returncode == 0
    if r.stderr.strip():
        summary["stderr"] = r.stderr[-2000:]
    print(f"  {name}: {json.dumps(summary)}", flush=True)
    return summary


def check_probe(port: int) -> list[str]:
    """The image's HEALTHCHECK script against a real node, and against a closed port."""
    probe = str(ROOT / "deploy/docker/probe.sh")
    errors = []
    for path in ("/healthz", "/readyz"):
        r = subprocess.run([probe, path], env={**os.environ, "PORT": str(port)}, timeout=10, capture_output=True)
        if r.returncode != 0:
            errors.append(f"probe.sh {path} on a healthy node exited {r.returncode}")
    r = subprocess.run([probe, "/nope"], env={**os.environ, "PORT": str(port)}, timeout=10, capture_output=True)
    if r.returncode == 0:
        errors.append("probe.sh succeeded on a 404")
    r = subprocess.run([probe], env={**os.environ, "PORT": str(free_port())}, timeout=10, capture_output=True)
    if r.returncode == 0:
        errors.append("probe.sh succeeded on a closed port")
    return errors


def main() -> int:
    if not BINARY.exists():
        print(f"missing {BINARY}: run cargo build", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-lb-"))
    os.chmod(tmp, 0o755)
    procs = Processes(tmp)
    failures: list[str] = []
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_for("redis", lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG", 20, redis)

        node_ports = start_nodes(procs, tmp, f"redis://127.0.0.1:{redis_port}")
        print(f"  cluster of {NODES} nodes ready on ports {node_ports}", flush=True)

        failures += check_probe(node_ports[0])
        print(f"  probe.sh against node-1: {'ok' if not failures else failures}", flush=True)

        # nginx, sticky by client address.
        lb = free_port()
        conf = render_nginx(tmp, lb, node_ports, sticky=True)
        t = subprocess.run(["nginx", "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")], capture_output=True, text=True)
        if t.returncode != 0 or "[warn]" in t.stderr:
            raise RuntimeError(f"nginx -t failed or warned: {t.stderr}")
        nginx = procs.start("nginx", ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log"), "-g", "daemon off;"])
        wait_for("nginx", lambda: http_status(f"http://127.0.0.1:{lb}/readyz") == 200, 20, nginx)
        if http_status(f"http://127.0.0.1:{lb}/metrics") != 404:
            failures.append("nginx serves /metrics to clients")
        s = run_client_test("nginx (hash $remote_addr consistent)", f"http://127.0.0.1:{lb}")
        failures += [f"nginx: {f}" for f in s.get("failures", [])] or ([] if s["ok"] else ["nginx: client test failed"])
        procs.stop(nginx)

        # Negative control: the same config without stickiness must break polling sessions.
        lb = free_port()
        conf = render_nginx(tmp, lb, node_ports, sticky=False)
        plain = procs.start("nginx-nonsticky", ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log"), "-g", "daemon off;"])
        wait_for("nginx (non-sticky)", lambda: http_status(f"http://127.0.0.1:{lb}/readyz") == 200, 20, plain)
        s = run_client_test("nginx without stickiness (negative control)", f"http://127.0.0.1:{lb}", "--expect-session-loss")
        failures += [f"negative control: {f}" for f in s.get("failures", [])] or ([] if s["ok"] else ["negative control failed"])
        procs.stop(plain)

        # HAProxy, sticky by inserted cookie.
        lb = free_port()
        cfg = render_haproxy(tmp, lb, node_ports)
        t = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        if t.returncode != 0 or "[WARNING]" in t.stdout + t.stderr:
            raise RuntimeError(f"haproxy -c failed or warned: {t.stdout}{t.stderr}")
        haproxy = procs.start("haproxy", ["haproxy", "-db", "-f", str(cfg)])
        wait_for("haproxy", lambda: http_status(f"http://127.0.0.1:{lb}/readyz") == 200, 20, haproxy)
        if http_status(f"http://127.0.0.1:{lb}/metrics") != 404:
            failures.append("haproxy serves /metrics to clients")
        s = run_client_test("haproxy (inserted cookie)", f"http://127.0.0.1:{lb}", "--cookies")
        failures += [f"haproxy: {f}" for f in s.get("failures", [])] or ([] if s["ok"] else ["haproxy: client test failed"])

        # Negative control: the same HAProxy, but the clients drop its cookie.
        s = run_client_test("haproxy, clients without cookies (negative control)", f"http://127.0.0.1:{lb}", "--expect-session-loss")
        failures += [f"haproxy negative control: {f}" for f in s.get("failures", [])] or ([] if s["ok"] else ["haproxy negative control failed"])
        procs.stop(haproxy)
    except Exception as e:  # noqa: BLE001 - report any harness failure as a test failure
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        procs.stop_all()
    if failures:
        print(f"load balancer tests FAILED (logs in {tmp}):", *failures, sep="\n  ")
        return 1
    print("load balancer tests passed")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
