//! What org B's caller must get from every path × method of the OpenAPI document.

use palisade_testkit::PASSWORD;
use serde_json::{Value, json};

use super::world::{World, schema};

/// What a request must answer: a status and, for problems, the problem `type` slug.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expect {
    pub(super) status: u16,
    pub(super) problem: Option<&'static str>,
}

pub(super) const fn answer(status: u16, problem: Option<&'static str>) -> Expect {
    Expect { status, problem }
}

/// The only answer a tenant-bound route may give another tenant: the one for a missing id.
pub(super) const NOT_FOUND: Expect = answer(404, Some("not-found"));
/// API keys work only on organization routes (/api/v1/orgs/{org}/…): refused before any lookup.
pub(super) const KEY_REFUSED: Expect = answer(401, Some("unauthenticated"));
/// API keys never manage API keys: refused before any lookup, the same for every organization.
pub(super) const KEYS_NEED_A_PERSON: Expect = answer(403, Some("forbidden"));

pub(super) type Body = fn(&World) -> Option<Value>;

pub(super) fn no_body(_: &World) -> Option<Value> {
    None
}

/// One path × method of the OpenAPI document and what org B's caller must get from it.
pub(super) struct Entry {
    pub(super) method: &'static str,
    pub(super) route: &'static str,
    pub(super) body: Body,
    /// The answer to B's session (a bearer access token).
    pub(super) session: Expect,
    /// The answer to B's API key (every permission).
    pub(super) api_key: Expect,
    /// Sign B in again just for this request (it ends the session it is sent with).
    pub(super) fresh_session: bool,
    /// A query string the route needs to be a valid request (without `?`).
    pub(super) query: &'static str,
}

impl Entry {
    pub(super) fn query(self, query: &'static str) -> Self {
        Entry { query, ..self }
    }
}

/// A tenant-bound route (an organization's own path): 404 to B's session and to B's key.
pub(super) fn tenant(method: &'static str, route: &'static str, body: Body) -> Entry {
    Entry { method, route, body, session: NOT_FOUND, api_key: NOT_FOUND, fresh_session: false, query: "" }
}

/// A route that is not tenant-bound, with the answers it gives B (which must not carry A's data).
pub(super) fn other(method: &'static str, route: &'static str, body: Body, session: Expect, api_key: Expect) -> Entry {
    Entry { method, route, body, session, api_key, fresh_session: false, query: "" }
}

/// Every path × method of the OpenAPI document. The order is the order of the probe (some
/// account routes change B's own state, e.g. TOTP enrolment before its confirmation).
pub(super) fn table() -> Vec<Entry> {
    let ok = answer(200, None);
    vec![
        // ---- Organizations: A's org id in the path. ----
        tenant("GET", "/api/v1/orgs/{org}", no_body),
        tenant("PATCH", "/api/v1/orgs/{org}", |_| Some(json!({"name": "Renamed by B", "session_idle_minutes": 30}))),
        tenant("DELETE", "/api/v1/orgs/{org}", no_body),
        tenant("DELETE", "/api/v1/orgs/{org}/deletion", no_body),
        tenant("GET", "/api/v1/orgs/{org}/access-review", no_body),
        tenant("GET", "/api/v1/orgs/{org}/keys", no_body),
        // ---- Members and invitations. ----
        tenant("GET", "/api/v1/orgs/{org}/members", no_body),
        tenant("PATCH", "/api/v1/orgs/{org}/members/{user}", |_| Some(json!({"role": "viewer"}))),
        tenant("DELETE", "/api/v1/orgs/{org}/members/{user}", no_body),
        tenant("POST", "/api/v1/orgs/{org}/members/{user}/revoke-sessions", no_body),
        tenant("GET", "/api/v1/orgs/{org}/invitations", no_body),
        tenant("POST", "/api/v1/orgs/{org}/invitations", |_| {
            Some(json!({"email": "b-invitee@bravo.example", "role": "viewer"}))
        }),
        tenant("DELETE", "/api/v1/orgs/{org}/invitations/{invitation}", no_body),
        // ---- Roles. ----
        tenant("GET", "/api/v1/orgs/{org}/roles", no_body),
        tenant("POST", "/api/v1/orgs/{org}/roles", |_| {
            Some(json!({"name": "b_probe_role", "description": "made by B", "permissions": ["org.read"]}))
        }),
        tenant("PUT", "/api/v1/orgs/{org}/roles/{role}", |_| {
            Some(json!({"name": "b_probe_role", "description": "changed by B", "permissions": ["org.read"]}))
        }),
        tenant("DELETE", "/api/v1/orgs/{org}/roles/{role}", no_body),
        // ---- Collections and records. ----
        tenant("GET", "/api/v1/orgs/{org}/collections", no_body),
        tenant("POST", "/api/v1/orgs/{org}/collections", |_| Some(json!({"name": "b_probe", "schema": schema()}))),
        tenant("GET", "/api/v1/orgs/{org}/collections/{name}", no_body),
        tenant("PUT", "/api/v1/orgs/{org}/collections/{name}", |_| Some(json!({"schema": schema()}))),
        tenant("DELETE", "/api/v1/orgs/{org}/collections/{name}", no_body),
        tenant("GET", "/api/v1/orgs/{org}/collections/{name}/records", no_body),
        tenant("POST", "/api/v1/orgs/{org}/collections/{name}/records", |_| {
            Some(json!({"data": {"title": "written by B", "status": "open"}}))
        }),
        tenant("GET", "/api/v1/orgs/{org}/collections/{name}/records/{record}", no_body),
        tenant("PUT", "/api/v1/orgs/{org}/collections/{name}/records/{record}", |_| {
            Some(json!({"data": {"title": "replaced by B", "status": "done"}}))
        }),
        tenant("PATCH", "/api/v1/orgs/{org}/collections/{name}/records/{record}", |_| {
            Some(json!({"data": {"status": "done"}}))
        }),
        tenant("DELETE", "/api/v1/orgs/{org}/collections/{name}/records/{record}", no_body),
        // ---- Audit. ----
        tenant("GET", "/api/v1/orgs/{org}/audit-events", no_body),
        tenant("GET", "/api/v1/orgs/{org}/audit-events/export", no_body).query("format=jsonl"),
        tenant("GET", "/api/v1/orgs/{org}/audit-events/verify", no_body),
        tenant("POST", "/api/v1/orgs/{org}/audit-events/verify", |w| Some(json!({"checkpoint": w.checkpoint}))),
        tenant("GET", "/api/v1/orgs/{org}/audit-checkpoints", no_body),
        tenant("GET", "/api/v1/orgs/{org}/audit-checkpoints/latest", no_body),
        // ---- Secrets. ----
        tenant("GET", "/api/v1/orgs/{org}/secrets", no_body),
        tenant("POST", "/api/v1/orgs/{org}/secrets", |_| Some(json!({"name": "B_PROBE", "value": "b-value-1"}))),
        tenant("PUT", "/api/v1/orgs/{org}/secrets/{name}", |_| Some(json!({"value": "b-value-2"}))),
        tenant("DELETE", "/api/v1/orgs/{org}/secrets/{name}", no_body),
        // ---- API keys: tenant-bound for a session; an API key is refused before any lookup. ----
        other("GET", "/api/v1/orgs/{org}/api-keys", no_body, NOT_FOUND, KEYS_NEED_A_PERSON),
        other(
            "POST",
            "/api/v1/orgs/{org}/api-keys",
            |_| Some(json!({"name": "b probe key", "permissions": ["org.read"]})),
            NOT_FOUND,
            KEYS_NEED_A_PERSON,
        ),
        other("DELETE", "/api/v1/orgs/{org}/api-keys/{key}", no_body, NOT_FOUND, KEYS_NEED_A_PERSON),
        other(
            "POST",
            "/api/v1/orgs/{org}/api-keys/{key}/rotate",
            |_| Some(json!({"overlap_minutes": 60})),
            NOT_FOUND,
            KEYS_NEED_A_PERSON,
        ),
        // ---- Instance administration: B is no instance administrator. ----
        other(
            "PUT",
            "/api/v1/admin/orgs/{org}/plan",
            |_| Some(json!({"plan": "enterprise"})),
            answer(403, Some("forbidden")),
            KEY_REFUSED,
        ),
        // ---- The caller's own account, addressed with A's ids: not B's, so not found. ----
        other("DELETE", "/api/v1/me/sessions/{session}", no_body, NOT_FOUND, KEY_REFUSED),
        other("DELETE", "/api/v1/me/webauthn/{id}", no_body, NOT_FOUND, KEY_REFUSED),
        // ---- An invitation of A's (its real link token, sent to someone else): refused like an
        // unknown token. ----
        other(
            "POST",
            "/api/v1/invitations/accept",
            |w| Some(json!({"token": w.invitation_token})),
            answer(400, Some("invalid-token")),
            KEY_REFUSED,
        ),
        // ---- The caller's own account without ids: B's own data only. ----
        other("GET", "/api/v1/me", no_body, ok, KEY_REFUSED),
        other("GET", "/api/v1/me/sessions", no_body, ok, KEY_REFUSED),
        // Ends B's other sessions, the browser session of the 404 probes above included.
        other("POST", "/api/v1/me/sessions/revoke-others", no_body, ok, KEY_REFUSED),
        other("GET", "/api/v1/me/webauthn", no_body, ok, KEY_REFUSED),
        other("POST", "/api/v1/me/webauthn/register/start", no_body, ok, KEY_REFUSED),
        other(
            "POST",
            "/api/v1/me/webauthn/register/finish",
            |_| Some(json!({"name": "b key", "state": "not-a-ceremony", "credential": {}})),
            answer(422, Some("validation")),
            KEY_REFUSED,
        ),
        other("POST", "/api/v1/me/mfa/totp", no_body, answer(201, None), KEY_REFUSED),
        other(
            "POST",
            "/api/v1/me/mfa/totp/confirm",
            |_| Some(json!({"code": "000000"})),
            answer(422, Some("validation")),
            KEY_REFUSED,
        ),
        // Removes the enrolment B just started.
        other("DELETE", "/api/v1/me/mfa/totp", no_body, answer(204, None), KEY_REFUSED),
        other("POST", "/api/v1/me/password", |_| Some(json!({"password": PASSWORD})), answer(204, None), KEY_REFUSED),
        other(
            "POST",
            "/api/v1/me/email",
            |_| Some(json!({"email": "b-new-address@bravo.example"})),
            answer(202, None),
            KEY_REFUSED,
        ),
        other("GET", "/api/v1/orgs", no_body, ok, KEY_REFUSED),
        other("POST", "/api/v1/orgs", |_| Some(json!({"name": "Bravo Second"})), answer(201, None), KEY_REFUSED),
        other("POST", "/api/v1/auth/step-up", |_| Some(json!({"password": PASSWORD})), answer(204, None), KEY_REFUSED),
        other("POST", "/api/v1/auth/step-up/webauthn", no_body, answer(422, Some("validation")), KEY_REFUSED),
        Entry {
            method: "POST",
            route: "/api/v1/auth/logout",
            body: no_body,
            session: answer(204, None),
            api_key: KEY_REFUSED,
            fresh_session: true,
            query: "",
        },
        // ---- Public routes (no caller; a credential sent along is ignored): B's own address. ----
        other(
            "POST",
            "/api/v1/auth/signup",
            |_| Some(json!({"email": "b-signup@bravo.example", "password": PASSWORD, "name": "B Signup"})),
            answer(202, None),
            answer(202, None),
        ),
        other("POST", "/api/v1/auth/login", |w| Some(json!({"email": w.b_email, "password": PASSWORD})), ok, ok),
        other(
            "POST",
            "/api/v1/auth/refresh",
            |_| Some(json!({"refresh_token": "prf_not-a-refresh-token"})),
            answer(401, Some("unauthenticated")),
            answer(401, Some("unauthenticated")),
        ),
        other(
            "POST",
            "/api/v1/auth/mfa",
            |_| Some(json!({"challenge_token": "not-a-challenge", "code": "000000"})),
            answer(400, Some("invalid-token")),
            answer(400, Some("invalid-token")),
        ),
        other(
            "POST",
            "/api/v1/auth/verify-email",
            |_| Some(json!({"token": "not-a-token"})),
            answer(400, Some("invalid-token")),
            answer(400, Some("invalid-token")),
        ),
        other(
            "POST",
            "/api/v1/auth/confirm-email-change",
            |_| Some(json!({"token": "not-a-token"})),
            answer(400, Some("invalid-token")),
            answer(400, Some("invalid-token")),
        ),
        other(
            "POST",
            "/api/v1/auth/forgot-password",
            |w| Some(json!({"email": w.b_email})),
            answer(202, None),
            answer(202, None),
        ),
        other(
            "POST",
            "/api/v1/auth/reset-password",
            |_| Some(json!({"token": "not-a-token", "password": "a-fresh-long-passphrase-42"})),
            answer(400, Some("invalid-token")),
            answer(400, Some("invalid-token")),
        ),
        other("POST", "/api/v1/auth/passkey/start", |w| Some(json!({"email": w.b_email})), ok, ok),
        other(
            "POST",
            "/api/v1/auth/webauthn",
            |_| Some(json!({"challenge_token": "not-a-challenge", "credential": {}})),
            answer(401, Some("invalid-credentials")),
            answer(401, Some("invalid-credentials")),
        ),
        other("GET", "/healthz", no_body, ok, ok),
        other("GET", "/readyz", no_body, ok, ok),
        other("GET", "/problems/{slug}", no_body, ok, ok),
        other("GET", "/.well-known/jwks.json", no_body, ok, ok),
    ]
}
