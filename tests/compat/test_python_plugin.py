#!/usr/bin/env python3
"""Compatibility test: a plugin written for the original Python Vivified core.

It behaves like the example plugin of the Python design (runbook phase 1,
`plugins/user_management/main.py`): it registers by posting its manifest to
`POST /plugins/register` without a credential, keeps the token only in memory, sends
no heartbeats, and publishes events the way the Python core's messaging API took
them (`POST /messaging/events`, body `{event_type, payload, source_plugin,
data_traits}`, event types named like `NotificationSent`). A second plugin subscribed
to `NotificationSent` pulls the event. Then the first plugin "restarts" (forgets its
token) and registers again:

- dev mode: while its registration is live the core answers 409; once it is stale
  (heartbeat TTL passed) the registration goes through (a new token), and the old
  token is refused (401) on heartbeat and publish;
- production mode: the same restart after staleness is still 409.

Standard library only (Python 3.11). Starts its own cores (memory store, free ports)
and always stops them. The server binary is `VIVIFIED_SERVER_BIN` (default
`target/debug/vivified-server`). Prints one line per step and exits 1 if any failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_BIN = os.environ.get("VIVIFIED_SERVER_BIN", str(ROOT / "target" / "debug" / "vivified-server"))

# The example plugin's manifest, as the Python design's runbook gives it (MANIFEST in
# plugins/user_management/main.py), unchanged.
PLUGIN_ID = "user-management"
MANIFEST = {
    "id": PLUGIN_ID,
    "name": "User Management Plugin",
    "version": "1.0.0",
    "description": "Manages user profiles and extended attributes",
    "contracts": ["IdentityPlugin"],
    "traits": ["handles_pii", "audit_required"],
    "dependencies": [],
    "allowed_domains": [],
    "endpoints": {"health": "/health", "user_info": "/api/users/{id}"},
    "security": {"authentication_required": True, "data_classification": ["pii", "internal"]},
    "compliance": {"hipaa_controls": ["164.312(a)", "164.312(d)"], "audit_level": "detailed"},
}

# A second plugin in the same style that listens for notifications.
LISTENER_ID = "notification-listener"
LISTENER_MANIFEST = {
    "id": LISTENER_ID,
    "name": "Notification Listener",
    "version": "1.0.0",
    "description": "Receives NotificationSent events",
    "contracts": ["CommunicationPlugin"],
    "traits": ["handles_pii", "audit_required"],
    "dependencies": [],
    "allowed_domains": [],
    "endpoints": {"health": "/health"},
    "security": {"authentication_required": True, "data_classification": ["pii", "internal"]},
    "compliance": {"hipaa_controls": ["164.312(a)", "164.312(d)"], "audit_level": "detailed"},
    "subscriptions": ["NotificationSent"],
}

HEARTBEAT_INTERVAL = "1s"
HEARTBEAT_TTL = "3s"

# -- reporting ---------------------------------------------------------------------

failures: list[str] = []
notes: list[str] = []


def step(name: str, ok: bool, detail: str = "") -> bool:
    line = f"{'PASS' if ok else 'FAIL'}  {name}"
    if detail:
        line += f"  ({detail})"
    print(line, flush=True)
    if not ok:
        failures.append(name)
    return ok


def note(text: str) -> None:
    print(f"NOTE  {text}", flush=True)
    notes.append(text)


# -- HTTP, as a plugin would do it --------------------------------------------------


def http(base: str, method: str, path: str, body=None, bearer: str | None = None, timeout: float = 15):
    """(status, parsed JSON or raw text or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer is not None:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, f"connection failed: {e}"
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def show(status, body) -> str:
    if isinstance(body, dict) and "token" in body:
        body = dict(body, token="<redacted>")
    text = body if isinstance(body, str) else json.dumps(body)
    if isinstance(text, str) and len(text) > 300:
        text = text[:300] + "..."
    return f"got {status} {text}"


# -- the core under test --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCRUBBED = ("JWT_SECRET", "DATABASE_URL", "NATS_URL", "ALLOWED_ORIGINS", "LOG_LEVEL", "RUST_LOG")


class Core:
    def __init__(self, label: str, env: dict[str, str]):
        self.label = label
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix=f"vivified-compat-{label}-")
        full = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_") and k not in SCRUBBED}
        full.update({"VIVIFIED_STORE": "memory", "VIVIFIED_DATA_DIR": self.dir, "VIVIFIED_LOG_LEVEL": "warn"})
        full.update(env)
        self.log_path = Path(self.dir) / "core.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--bind", f"127.0.0.1:{self.port}"],
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            status, _ = http(self.base, "GET", "/health", timeout=2)
            if status == 200:
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def start(label: str, env: dict[str, str]) -> Core | None:
    core = Core(label, env)
    if not core.wait_ready():
        step(f"[{label}] the core starts and answers /health", False, f"exit code {core.proc.poll()}")
        print(core.log_tail(), flush=True)
        core.stop()
        return None
    step(f"[{label}] the core starts and answers /health", True, core.base)
    return core


def liveness(core: Core, admin: str, plugin_id: str) -> str | None:
    status, record = http(core.base, "GET", f"/plugins/{plugin_id}", bearer=admin)
    if status == 200 and isinstance(record, dict):
        return record.get("liveness") or record.get("status")
    return None


def wait_stale(core: Core, admin: str, plugin_id: str, limit: float = 15) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if liveness(core, admin, plugin_id) == "stale":
            return True
        time.sleep(0.2)
    return False


def register_as_seed_plugin(core: Core, manifest: dict, bearer: str | None = None):
    """What the Python example plugin does at start-up: post the manifest, take the token
    of a 200 answer and keep it in memory (the seed plugin accepts only 200)."""
    status, body = http(core.base, "POST", "/plugins/register", manifest, bearer=bearer)
    token = body.get("token") if isinstance(body, dict) and status in (200, 201) else None
    return status, body, token


def event_body(source: str) -> dict:
    return {
        "event_type": "NotificationSent",
        "payload": {"notification_id": "n-42", "channel": "email", "status": "sent"},
        "source_plugin": source,
        "data_traits": ["internal"],
    }


# -- dev mode -----------------------------------------------------------------------


def dev_mode() -> None:
    admin = secrets.token_hex(24)
    core = start(
        "dev",
        {
            "VIVIFIED_MODE": "dev",
            "VIVIFIED_ADMIN_TOKEN": admin,
            "VIVIFIED_HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
            "VIVIFIED_HEARTBEAT_TTL": HEARTBEAT_TTL,
            "VIVIFIED_SWEEP_INTERVAL": "200ms",
            # Two silent plugins: keep self-preservation out of the way.
            "VIVIFIED_SELF_PRESERVATION_MIN_PLUGINS": "100",
        },
    )
    if core is None:
        return
    try:
        dev_steps(core, admin)
    finally:
        core.stop()


def dev_steps(core: Core, admin: str) -> None:
    # 1. The example plugin registers, as the Python plugin does.
    status, body, token = register_as_seed_plugin(core, MANIFEST)
    if not step("[dev] the seed's example plugin registers with its manifest (200, a token)",
                status == 200 and token is not None, show(status, body) if status != 200 else ""):
        if status == 400 and isinstance(body, dict):
            for v in body.get("violations", []):
                note(f"the core refuses the seed manifest: {v.get('path')} {v.get('code')}: {v.get('message')}")
        return
    old_token = token

    # 2. A listener subscribed to NotificationSent registers.
    status, body, listener_token = register_as_seed_plugin(core, LISTENER_MANIFEST)
    step("[dev] a plugin with subscriptions [\"NotificationSent\"] registers",
         status in (200, 201) and listener_token is not None, "" if status in (200, 201) else show(status, body))

    # 3. The example plugin publishes through the Python core's messaging path.
    status, body = http(core.base, "POST", "/messaging/events", event_body(PLUGIN_ID), bearer=old_token)
    published = status == 202 and isinstance(body, dict)
    step("[dev] POST /messaging/events with event_type NotificationSent is accepted (202)",
         published, show(status, body) if not published else f"event_id {body.get('event_id')}")
    if published:
        step("[dev] the event is delivered to the one subscriber", body.get("delivered") == 1, show(status, body))

    # 4. The listener pulls it.
    if listener_token is not None:
        status, body = http(core.base, "GET", f"/plugins/{LISTENER_ID}/events?wait=5s", bearer=listener_token, timeout=20)
        events = body.get("events", []) if isinstance(body, dict) else []
        found = [e for e in events if e.get("event_type") == "NotificationSent"]
        ok = status == 200 and len(found) == 1
        step("[dev] the subscriber pulls the NotificationSent event (GET /plugins/{id}/events?wait=5s)",
             ok, show(status, body) if not ok else "")
        if ok:
            e = found[0]
            same = (e.get("source_plugin") == PLUGIN_ID
                    and e.get("payload") == event_body(PLUGIN_ID)["payload"]
                    and [t.lower() for t in e.get("data_traits", [])] == ["internal"])
            step("[dev] the pulled event has the publisher, payload and data traits sent", same, json.dumps(e))

    # 5. The plugin restarts: its token was only in memory. While the registration is
    #    live, registering again without a token is refused.
    before = liveness(core, admin, PLUGIN_ID)
    status, body, _ = register_as_seed_plugin(core, MANIFEST)
    after = liveness(core, admin, PLUGIN_ID)
    if before == "stale" or after == "stale":
        step("[dev] precondition: the registration is still live when it restarts", False,
             f"liveness {before} -> {after}; the steps above took longer than the {HEARTBEAT_TTL} TTL")
    else:
        step("[dev] a restart while the registration is live (no token) gets 409 already_registered",
             status == 409 and isinstance(body, dict) and body.get("error") == "already_registered",
             show(status, body) if status != 409 else f"liveness {after}")

    # 6. Once the registration is stale, the restarted plugin registers by itself.
    step("[dev] the silent plugin goes stale after the heartbeat TTL", wait_stale(core, admin, PLUGIN_ID),
         f"liveness {liveness(core, admin, PLUGIN_ID)}")
    status, body, new_token = register_as_seed_plugin(core, MANIFEST)
    ok = status in (200, 201) and new_token is not None and new_token != old_token
    step("[dev] a restart after staleness (no token) registers again with a new token",
         ok, show(status, body) if not ok else f"got {status}")
    if not ok:
        return
    # The seed's example plugin keeps the token only from a 200 answer
    # (`if response.status_code == 200`); registration answers 200, not 201, in every case.
    step("[dev] ... answered 200, the only status the seed's example plugin takes a token from",
         status == 200, show(status, body))
    liveness_now = liveness(core, admin, PLUGIN_ID)
    step("[dev] the replaced registration is live again", liveness_now in ("registered", "active"),
         f"liveness {liveness_now}")

    # 7. The old token is dead everywhere a plugin uses it.
    status, body = http(core.base, "POST", f"/plugins/{PLUGIN_ID}/heartbeat", {"health": "healthy"}, bearer=old_token)
    step("[dev] the old token gets 401 on heartbeat", status == 401, show(status, body))
    status, body = http(core.base, "POST", "/messaging/events", event_body(PLUGIN_ID), bearer=old_token)
    step("[dev] the old token gets 401 on POST /messaging/events", status == 401, show(status, body))
    status, body = http(core.base, "POST", "/events", event_body(PLUGIN_ID), bearer=old_token)
    step("[dev] the old token gets 401 on POST /events", status == 401, show(status, body))

    # 8. The new one works.
    status, body = http(core.base, "POST", f"/plugins/{PLUGIN_ID}/heartbeat", {"health": "healthy"}, bearer=new_token)
    step("[dev] the new token's heartbeat is accepted (200)", status == 200, show(status, body))
    status, body = http(core.base, "POST", "/messaging/events", event_body(PLUGIN_ID), bearer=new_token)
    step("[dev] the new token publishes through POST /messaging/events (202)", status == 202, show(status, body))


# -- production mode ----------------------------------------------------------------


def production_mode() -> None:
    admin = secrets.token_hex(24)
    registration = secrets.token_hex(24)
    core = start(
        "production",
        {
            "VIVIFIED_MODE": "production",
            "JWT_SECRET": secrets.token_hex(32),
            "VIVIFIED_ADMIN_TOKEN": admin,
            "VIVIFIED_REGISTRATION_SECRET": registration,
            "VIVIFIED_REGISTRATION_SECRET_ALLOWED": "true",
            "VIVIFIED_AUDIT_KEY": secrets.token_hex(32),
            # Production takes nothing under one second.
            "VIVIFIED_HEARTBEAT_INTERVAL": "1s",
            "VIVIFIED_HEARTBEAT_TTL": "2s",
            "VIVIFIED_SWEEP_INTERVAL": "1s",
            "VIVIFIED_SELF_PRESERVATION_MIN_PLUGINS": "100",
        },
    )
    if core is None:
        return
    try:
        production_steps(core, admin, registration)
    finally:
        core.stop()


def production_steps(core: Core, admin: str, registration: str) -> None:
    status, body, _ = register_as_seed_plugin(core, MANIFEST)
    step("[production] the seed plugin as written (no credential) is refused: 401 registration_secret_required",
         status == 401 and isinstance(body, dict) and body.get("reason") == "registration_secret_required",
         show(status, body))
    status, body, token = register_as_seed_plugin(core, MANIFEST, bearer=registration)
    if not step("[production] with the registration secret it registers (200, a token)",
                status == 200 and token is not None, show(status, body) if status != 200 else ""):
        return
    # Restart: the token is forgotten. Wait until the registration is stale.
    step("[production] the silent plugin goes stale after the heartbeat TTL", wait_stale(core, admin, PLUGIN_ID),
         f"liveness {liveness(core, admin, PLUGIN_ID)}")
    status, body, _ = register_as_seed_plugin(core, MANIFEST)
    step("[production] a restart after staleness without a credential still gets 409",
         status == 409, show(status, body))
    status, body, _ = register_as_seed_plugin(core, MANIFEST, bearer=registration)
    step("[production] a restart after staleness with the registration secret still gets 409",
         status == 409, show(status, body))
    status, body = http(core.base, "POST", f"/plugins/{PLUGIN_ID}/heartbeat", None, bearer=token)
    step("[production] the stale plugin's own token still works (heartbeat 200)", status == 200, show(status, body))


def main() -> int:
    if not os.access(SERVER_BIN, os.X_OK):
        print(f"FAIL  no server binary at {SERVER_BIN} (set VIVIFIED_SERVER_BIN)", flush=True)
        return 1
    print(f"compat: server binary {SERVER_BIN}", flush=True)
    dev_mode()
    production_mode()
    total = sum(1 for _ in failures)
    print(flush=True)
    if notes:
        print("notes:", flush=True)
        for n in notes:
            print(f"  - {n}", flush=True)
    if failures:
        print(f"compat: {total} step(s) failed:", flush=True)
        for f in failures:
            print(f"  - {f}", flush=True)
        return 1
    print("compat: every step passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
