"""Schemathesis hooks for `.ci/contract`: which credential each request carries.

Loaded with `SCHEMATHESIS_HOOKS=schemathesis_hooks` (this directory on `PYTHONPATH`).
Reads `VIVIFIED_CONTRACT_URL` (the core's base URL) and `VIVIFIED_ADMIN_TOKEN`.

- An auth provider marks every request that needs a credential with a placeholder
  bearer, so schemathesis knows the credential is explicit (its `ignored_auth` check
  then replays the request without it, and with a bad one).
- `before_call` swaps the placeholder for a real credential: the admin token on admin
  routes; a plugin's own token on plugin routes (the token of the plugin named in the
  path when this run has one, else the token of a plugin kept registered for the run);
  on routes that take either, one or the other. Requests the checks replay without a
  credential, or with one of their own, are left alone.
- `after_call` remembers every token a registration or refresh answers, and forgets
  those of deregistered plugins, so the stateful phase's chains (register, then
  heartbeat, refresh, pull, deregister, ...) run with the plugin's current token.
- The kept plugin ("main") is repaired between requests: enabled again if a request
  disabled it (or refused its approval); replaced by a fresh id if a request
  deregistered it or revoked its token, so that a read after a deregistration never
  finds the id registered again. A revocation of every token empties the run's tokens.

Only the standard library is used besides schemathesis itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ.get("VIVIFIED_CONTRACT_URL", "http://127.0.0.1:8000").rstrip("/")
ADMIN = os.environ.get("VIVIFIED_ADMIN_TOKEN", "")
PLACEHOLDER = "Bearer vivified-contract-placeholder"
# Deterministic choices for a given schemathesis seed's sequence of requests.
_rng = random.Random(int(os.environ.get("VIVIFIED_CONTRACT_SEED", "0")))
_lock = threading.RLock()
VALID_ID = re.compile(r"[a-z0-9-]{1,63}")
_tokens: dict[str, str] = {}
_main = {"id": None, "n": 0}

PLUGIN_ONLY = {
    ("POST", "/plugins/{id}/heartbeat"),
    ("POST", "/plugins/{id}/token"),
    ("GET", "/plugins/{id}/events"),
    ("POST", "/events"),
    ("POST", "/messaging/events"),
}
EITHER = {
    ("GET", "/plugins/{id}"),
    ("DELETE", "/plugins/{id}"),
    ("POST", "/tokens/introspect"),
}
ADMIN_ONLY = {
    ("GET", "/plugins"),
    ("POST", "/plugins/{id}/disable"),
    ("POST", "/plugins/{id}/enable"),
    ("POST", "/plugins/{id}/approve"),
    ("POST", "/plugins/{id}/refuse"),
    ("POST", "/plugins/{id}/revoke-before"),
    ("POST", "/tokens/revoke-before"),
    ("POST", "/enrollments"),
    ("GET", "/enrollments"),
    ("DELETE", "/enrollments/{id}"),
    ("GET", "/audit"),
    ("GET", "/audit/verify"),
    ("GET", "/audit/export"),
}
# Admin actions that take the kept plugin out of service: pointed at it less often.
# (Refusing its approval is not one here: a dev core approves at once, so it answers
# 409 `nothing_pending`.)
DISRUPTIVE = {
    ("DELETE", "/plugins/{id}"),
    ("POST", "/plugins/{id}/disable"),
    ("POST", "/plugins/{id}/revoke-before"),
}


def main_manifest(plugin_id: str) -> dict:
    """A plugin that may publish anything the built-in policy knows, and hears everything."""
    return {
        "id": plugin_id,
        "name": "Contract test plugin",
        "version": "1.0.0",
        "description": "Kept registered while schemathesis runs",
        "contracts": ["CommunicationPlugin"],
        "traits": ["handles_phi", "handles_pii", "requires_encryption", "audit_required"],
        "dependencies": [],
        "allowed_domains": [],
        "subscriptions": ["*", "*.*", "*.*.*"],
        "endpoints": {"health": "/health"},
        "security": {
            "authentication_required": True,
            "data_classification": ["phi", "pii", "confidential", "internal", "public"],
        },
        "compliance": {"hipaa_controls": ["164.312(a)", "164.312(b)"], "audit_level": "complete"},
    }


def _call(method: str, path: str, bearer: str | None = None, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None


def _register(pid: str, manifest: dict) -> bool:
    status, body = _call("POST", "/plugins/register", body=manifest)
    if status in (200, 201):
        _tokens[pid] = body["token"]
        return True
    if status != 409:
        raise RuntimeError(f"cannot register the contract plugin {pid}: {status} {body}")
    return False


def _register_new_main() -> None:
    while True:
        _main["n"] += 1
        pid = f"contract-main-{_main['n']}"
        if _register(pid, main_manifest(pid)):
            _main["id"] = pid
            break
    # A peer publishes a few events, so that the main plugin's pulls have some to return.
    peer = "contract-peer"
    if peer not in _tokens:
        manifest = main_manifest(peer)
        manifest["subscriptions"] = []
        _register(peer, manifest)
    for event_type, traits in (("NotificationSent", ["internal"]), ("user.created", ["pii"]), ("patient.updated", ["phi"])):
        _call("POST", "/events", _tokens.get(peer), {
            "event_type": event_type,
            "payload": {"id": "x-1", "email": "someone@example.com"},
            "data_traits": traits,
            "metadata": {"origin": "contract"},
        })


def ensure_main() -> str:
    """The kept plugin's id, registered, enabled and with a current token."""
    with _lock:
        pid = _main["id"]
        if pid is None or pid not in _tokens:
            _register_new_main()
            return _main["id"]
        status, record = _call("GET", f"/plugins/{pid}", ADMIN)
        if status == 404:
            _register_new_main()
            return _main["id"]
        if status == 200 and record and not record.get("enabled", True):
            _call("POST", f"/plugins/{pid}/enable", ADMIN)
        status, answer = _call("POST", "/tokens/introspect", ADMIN, {"token": _tokens[pid]})
        if status != 200 or not (answer or {}).get("active"):
            _register_new_main()
        return _main["id"]


def main_token() -> str:
    pid = ensure_main()
    return _tokens[pid]


@schemathesis.auth()
class Placeholder:
    """Marks a request as carrying an explicit credential; `before_call` fills it in."""

    def get(self, case, ctx):
        return PLACEHOLDER

    def set(self, case, data, ctx):
        if case.operation.definition.raw.get("security", None) == []:
            return
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = data


def _key(case) -> tuple[str, str]:
    return case.method.upper(), case.path


def _plugin_token_for(case) -> str:
    pid = (case.path_parameters or {}).get("id")
    with _lock:
        if isinstance(pid, str) and pid in _tokens and pid != _main["id"]:
            return _tokens[pid]
    return main_token()


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    auth = None
    for name in list(headers):
        if name.lower() == "authorization":
            auth = headers[name]
            auth_name = name
    if auth != PLACEHOLDER:
        return  # no credential, or one a check chose: leave it
    key = _key(case)
    if key == ("POST", "/plugins/register"):
        # Re-registration with the plugin's own token when this run holds one.
        body = case.body if isinstance(case.body, dict) else {}
        pid = body.get("id")
        with _lock:
            token = _tokens.get(pid) if isinstance(pid, str) else None
        if token and _rng.random() < 0.5:
            headers[auth_name] = f"Bearer {token}"
        else:
            del headers[auth_name]
        return
    if key in ADMIN_ONLY:
        headers[auth_name] = f"Bearer {ADMIN}"
    elif key in PLUGIN_ONLY:
        headers[auth_name] = f"Bearer {_plugin_token_for(case)}"
    elif key in EITHER:
        if _rng.random() < 0.5:
            headers[auth_name] = f"Bearer {ADMIN}"
        else:
            headers[auth_name] = f"Bearer {_plugin_token_for(case)}"
    else:
        del headers[auth_name]


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    """Points half of the plugin-route requests at the kept plugin, so that they pass the
    credential checks and reach the handler (a drawn id is almost never registered)."""
    if not path_parameters or "id" not in path_parameters:
        return path_parameters
    op = ctx.operation
    key = (op.method.upper(), op.path)
    if key in PLUGIN_ONLY or key in EITHER or key in ADMIN_ONLY:
        share = 0.15 if key in DISRUPTIVE else 0.5
        drawn = path_parameters.get("id")
        # Only a drawn id that is itself valid is replaced: a negative case stays negative.
        if isinstance(drawn, str) and VALID_ID.fullmatch(drawn) and _rng.random() < share:
            path_parameters = dict(path_parameters)
            path_parameters["id"] = ensure_main()
    return path_parameters


@schemathesis.hook
def after_call(ctx, case, response):
    try:
        body = response.json()
    except Exception:
        body = None
    key = _key(case)
    with _lock:
        if (
            key in {("POST", "/plugins/register"), ("POST", "/plugins/{id}/token")}
            and response.status_code in (200, 201)
            and isinstance(body, dict)
            and isinstance(body.get("token"), str)
        ):
            _tokens[body["plugin_id"]] = body["token"]
        elif key == ("DELETE", "/plugins/{id}") and response.status_code == 204:
            pid = (case.path_parameters or {}).get("id")
            _tokens.pop(pid, None)
        elif key == ("POST", "/plugins/{id}/revoke-before") and response.status_code == 200:
            if isinstance(body, dict) and body.get("revoked"):
                _tokens.pop((case.path_parameters or {}).get("id"), None)
        elif key == ("POST", "/tokens/revoke-before") and response.status_code == 200:
            if isinstance(body, dict) and body.get("revoked"):
                # Every token this run holds may be gone: register anew when needed
                # (a held id whose tokens were all revoked is taken back in dev mode).
                _tokens.clear()


@schemathesis.hook
def filter_body(ctx, body):
    """Drops registrations whose manifest names itself in `dependencies`: the core refuses
    them (400 `self_dependency`), and no JSON schema can compare one member with another,
    so the document cannot mark them invalid. Everything else is left to the document."""
    op = ctx.operation
    if op is None or (op.method.upper(), op.path) != ("POST", "/plugins/register"):
        return True
    if isinstance(body, dict) and isinstance(body.get("id"), str) and isinstance(body.get("dependencies"), list):
        return body["id"] not in body["dependencies"]
    return True
