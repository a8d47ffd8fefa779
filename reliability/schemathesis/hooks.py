"""Schemathesis hooks for reliability/suites/schemathesis.sh (issue #10, item 1).

The suite runs schemathesis once per identity (SCH_IDENTITY = alpha or bravo); SCH_IDENTITIES
names a JSON file the suite wrote with both identities' credentials and objects:

    {"base_url": ..., "alpha": {"email", "password", "org", "collection", "record", "api_key",
     "secret", "role", "invitation", "user", "sessions": [...], "markers": [...]}, "bravo": {...}}

What this file adds to schemathesis:
- an auth provider that signs in as the identity (and signs in again whenever an answer is 401,
  so logout, revoking its own sessions and the like keep coverage instead of ending the run);
- a before_call hook that puts real ids into the path: for a deterministic share of the cases
  the identity's own objects (so the fuzzer reaches real rows), for another share the *other*
  identity's objects (cross-tenant probes, which must answer 404 or another error);
- the check `no_cross_tenant_access`: a 2xx answer to a request naming the other identity's
  object, or a 2xx body that contains any id or name of the other identity's objects, fails.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re

import requests
import schemathesis

_IDENTITIES = json.load(open(os.environ["SCH_IDENTITIES"]))
_ME_NAME = os.environ["SCH_IDENTITY"]
_OTHER_NAME = "bravo" if _ME_NAME == "alpha" else "alpha"
ME = _IDENTITIES[_ME_NAME]
OTHER = _IDENTITIES[_OTHER_NAME]
BASE = _IDENTITIES["base_url"]
# SCH_AUTH: "session" (an access token from sign-in) or "api_key" (an org API key).
AUTH = os.environ.get("SCH_AUTH", "session")

# Path parameter name -> key of the identity's object that fills it. `org` and the others are
# the names the OpenAPI document uses (GET /api/v1/openapi.json).
_PARAM_SOURCE = {
    "org": "org",
    "name": None,  # a collection's or a secret's name, chosen by path below
    "record": "record",
    "key": "api_key",
    "user": "user",
    "role": "role",
    "invitation": "invitation",
    "session": "session",
}


def _value(identity: dict, param: str, path: str) -> str | None:
    if param == "name":
        return identity["secret"] if "/secrets/" in path else identity["collection"]
    if param == "session":
        return identity["sessions"][0] if identity["sessions"] else None
    key = _PARAM_SOURCE.get(param)
    return identity.get(key) if key else None


def _bucket(case) -> int:
    """A deterministic number 0..99 from the case's generated values (same seed, same choice)."""
    material = json.dumps(
        [case.operation.label, case.path_parameters, case.query, case.body], sort_keys=True, default=str
    )
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:4], "big") % 100


# Foreign values that must never earn a 2xx, and strings that must never appear in one.
FOREIGN_PATH_VALUES = {
    v for v in [OTHER["org"], OTHER["record"], OTHER["api_key"], OTHER["user"], OTHER["role"], OTHER["invitation"]]
    if v
} | set(OTHER["sessions"])
FOREIGN_MARKERS = sorted(set(OTHER["markers"]), key=len, reverse=True)

# Counts for the suite's report, written when schemathesis exits.
STATS = {"foreign_cases": 0}
if os.environ.get("SCH_STATS"):
    atexit.register(lambda: json.dump(STATS, open(os.environ["SCH_STATS"], "w")))


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.operation.path == "/api/v1/auth/step-up" and isinstance(body, dict) and isinstance(body.get("password"), str):
        # Wrong passwords here count toward the account lockout (6 in a row lock it for 15
        # minutes, by design: the brute_force suite tests that); with the right one step-up
        # succeeds, which opens password change and org deletion to the fuzzer (tracked below).
        case.body["password"] = ME["password"]
    params = case.path_parameters
    if not params:
        return
    path = case.operation.path
    bucket = _bucket(case)
    # The stateful phase fills ids from earlier answers (links): those are kept, except for the
    # cross-tenant share.
    stateful = case._meta is not None and case._meta.phase.name == "stateful"
    if bucket < 20:
        source = {p: OTHER for p in params}  # the other identity's objects, org included
    elif bucket < 30 and len(params) > 1:
        source = {p: (ME if p == "org" else OTHER) for p in params}  # own org, the other's object
    elif bucket < 80 and not stateful:
        source = {p: ME for p in params}
    else:
        return  # keep what schemathesis generated (random ids, stateful links)
    if case.method.upper() == "DELETE":
        # Deleting the fixtures would leave the rest of the run with 404s: DELETE reaches its own
        # org, and objects the stateful phase created (or random ids), never the fixtures.
        source = {p: i for p, i in source.items() if i is OTHER or p == "org"}
    for param, identity in source.items():
        value = _value(identity, param, path)
        if value:
            params[param] = value
    if any(v in FOREIGN_PATH_VALUES for v in params.values()):
        STATS["foreign_cases"] += 1


@schemathesis.hook
def after_call(context, case, response):
    """Keeps the identity usable after operations that change it (with full coverage kept)."""
    if not 200 <= response.status_code < 300:
        return
    path, method = case.operation.path, case.method.upper()
    if path == "/api/v1/me/password" and method == "POST" and isinstance(case.body, dict):
        # The auth provider signs in with the new password from now on, and so do the next runs.
        ME["password"] = case.body["password"]
        with open(os.environ["SCH_IDENTITIES"], "w") as file:
            json.dump(_IDENTITIES, file)
    elif path == "/api/v1/orgs/{org}" and method == "DELETE" and case.path_parameters.get("org") == ME["org"]:
        # Deletion was scheduled: cancel it at once so the rest of the run keeps its org.
        requests.delete(
            f"{BASE}/api/v1/orgs/{ME['org']}/deletion",
            headers={"Authorization": case.headers["Authorization"]},
            timeout=30,
        ).raise_for_status()


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Drops one false alarm: DELETE /api/v1/orgs/{org} answers 202 (deletion *scheduled*, with
    a grace period, and cancelled again by after_call), so the org is meant to stay readable."""
    free = getattr(failure, "free", "") or ""
    return not (failure.code == "ST301" and re.fullmatch(r"DELETE /api/v1/orgs/[^/]+", free))


@schemathesis.auth(refresh_interval=3000, retry_on=[401])
class SignIn:
    """Signs in as the identity (and with SCH_AUTH=api_key issues an org API key); schemathesis
    calls it again after any 401 and replays the request."""

    def get(self, case, ctx):
        answer = requests.post(
            f"{BASE}/api/v1/auth/login", json={"email": ME["email"], "password": ME["password"]}, timeout=30
        )
        if answer.status_code != 200:
            raise RuntimeError(f"sign-in as {ME['email']} answered {answer.status_code}: {answer.text[:300]}")
        token = answer.json()["access_token"]
        if AUTH != "api_key":
            return token
        # An organization API key with every permission the owner holds, issued afresh whenever
        # the one in use stops working (the fuzzer revoked or rotated it).
        bearer = {"Authorization": f"Bearer {token}"}
        roles = requests.get(f"{BASE}/api/v1/orgs/{ME['org']}/roles", headers=bearer, timeout=30)
        roles.raise_for_status()
        permissions = next(r["permissions"] for r in roles.json()["items"] if r["name"] == "owner")
        key = requests.post(
            f"{BASE}/api/v1/orgs/{ME['org']}/api-keys",
            headers=bearer,
            json={"name": f"{_ME_NAME} fuzzing key", "permissions": permissions},
            timeout=30,
        )
        if key.status_code != 201:
            raise RuntimeError(f"issuing an API key answered {key.status_code}: {key.text[:300]}")
        return key.json()["secret"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _request_text(case) -> str:
    return json.dumps([case.query, case.body, case.headers], default=str)


@schemathesis.check
def no_cross_tenant_access(ctx, response, case):
    """No 2xx for the other identity's objects; no id or name of them in any 2xx body."""
    if not 200 <= response.status_code < 300:
        return None
    named = sorted(v for v in (case.path_parameters or {}).values() if v in FOREIGN_PATH_VALUES)
    if named:
        raise AssertionError(
            f"{_ME_NAME} got {response.status_code} for {_OTHER_NAME}'s object(s) {named} "
            f"({case.method} {case.formatted_path}); expected 404"
        )
    body = response.text or ""
    sent = _request_text(case)
    leaked = [m for m in FOREIGN_MARKERS if m in body and m not in sent]
    if leaked:
        raise AssertionError(
            f"{_ME_NAME}'s {response.status_code} answer to {case.method} {case.formatted_path} "
            f"contains {_OTHER_NAME}'s {leaked}"
        )
    return None
