#!/usr/bin/env python3
"""A webhook receiver for the integration tests: verifies every request with the official
`standardwebhooks` library (PyPI) and records it.

    webhook_receiver.py PORT SECRET

POST /hook      a webhook: verified, recorded, answered as the current mode says
POST /control   {"mode": "ok" | "fail" | "slow", "slow_secs": N}: how to answer from now on
GET  /received  every request so far: [{id, type, data, valid, answered, at}]
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
WEBHOOK = Webhook(sys.argv[2])
LOCK = threading.Lock()
RECEIVED = []
MODE = {"mode": "ok", "slow_secs": 5}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            body = json.dumps(RECEIVED).encode()
        self.reply(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            with LOCK:
                MODE.update(json.loads(body))
            return self.reply(204)
        headers = {k: v for k, v in self.headers.items()}
        try:
            payload = WEBHOOK.verify(body, headers)
            valid = True
        except WebhookVerificationError as e:
            payload, valid = {"error": str(e)}, False
        with LOCK:
            mode = dict(MODE)
        answered = {"ok": 200, "fail": 500, "slow": 200}.get(mode["mode"], 200)
        if not valid:
            answered = 400
        with LOCK:
            RECEIVED.append({
                "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
                "type": payload.get("type"),
                "timestamp": payload.get("timestamp"),
                "data": payload.get("data"),
                "valid": valid,
                "error": payload.get("error"),
                "signatures": len((headers.get("webhook-signature") or "").split(" ")),
                "answered": answered,
                "mode": mode["mode"],
                "at": time.time(),
            })
        if mode["mode"] == "slow":
            time.sleep(float(mode["slow_secs"]))
        try:
            self.reply(answered, b"{}")
        except (BrokenPipeError, ConnectionResetError):
            pass


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
