//! Cross-tenant probe of every route (issue #10, the reliability suite `cross_tenant`).
//!
//! Org A holds one of every object the API addresses by id. Org B's owner — once as a session
//! (bearer access token), once as an API key with every permission, and on the routes that must
//! answer 404 also as a browser session (cookie + CSRF token) — calls every path × method
//! of the OpenAPI document with A's real ids and bodies that are valid, so nothing can pass by
//! failing validation before the tenant check. Tenant-bound routes must answer exactly 404
//! `not-found` (the answer for an id that does not exist); the routes that are not tenant-bound
//! answer what `table()` says and why. No answer may carry any of A's ids or names, and a
//! snapshot of everything of A's in the database (every tenant table's rows of A's tenant, A's
//! users' rows in the instance tables) is the same after the probe as before it.
//!
//! Also probed: B's own organization with A's object ids in the path (and A's record id inside a
//! collection of B's with the same name), A's ids and A's sealed cursors in the query of B's
//! lists, and every method a path does not document (405). Controls show that the ids are real
//! (A's owner reads every tenant-bound GET route with them) and that B's credentials work on B's
//! own organization, so the 404s cannot come from ids or credentials that work nowhere.
//!
//! Every path × method of the document needs an entry in `table()`: a new route without one
//! fails here, and so does an entry whose route is gone. With `PALISADE_RELIABILITY_REPORT` set,
//! `{"cases", "failures", "failed"}` is written to that file for
//! `reliability/suites/cross_tenant.sh` before the test asserts.

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::{OrgId, Permission, UserId};
use palisade_testkit::{Answer, PASSWORD, TestApp, link_token};
use serde_json::{Value, json};
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::collections::member_with_role;

/// What a request must answer: a status and, for problems, the problem `type` slug.
#[derive(Clone, Copy, Debug)]
struct Expect {
    status: u16,
    problem: Option<&'static str>,
}

const fn answer(status: u16, problem: Option<&'static str>) -> Expect {
    Expect { status, problem }
}

/// The only answer a tenant-bound route may give another tenant: the one for a missing id.
const NOT_FOUND: Expect = answer(404, Some("not-found"));
/// API keys work only on organization routes (/api/v1/orgs/{org}/…): refused before any lookup.
const KEY_REFUSED: Expect = answer(401, Some("unauthenticated"));
/// API keys never manage API keys: refused before any lookup, the same for every organization.
const KEYS_NEED_A_PERSON: Expect = answer(403, Some("forbidden"));

type Body = fn(&World) -> Option<Value>;

fn no_body(_: &World) -> Option<Value> {
    None
}

/// One path × method of the OpenAPI document and what org B's caller must get from it.
struct Entry {
    method: &'static str,
    route: &'static str,
    body: Body,
    /// The answer to B's session (a bearer access token).
    session: Expect,
    /// The answer to B's API key (every permission).
    api_key: Expect,
    /// Sign B in again just for this request (it ends the session it is sent with).
    fresh_session: bool,
    /// A query string the route needs to be a valid request (without `?`).
    query: &'static str,
}

impl Entry {
    fn query(self, query: &'static str) -> Self {
        Entry { query, ..self }
    }
}

/// A tenant-bound route (an organization's own path): 404 to B's session and to B's key.
fn tenant(method: &'static str, route: &'static str, body: Body) -> Entry {
    Entry { method, route, body, session: NOT_FOUND, api_key: NOT_FOUND, fresh_session: false, query: "" }
}

/// A route that is not tenant-bound, with the answers it gives B (which must not carry A's data).
fn other(method: &'static str, route: &'static str, body: Body, session: Expect, api_key: Expect) -> Entry {
    Entry { method, route, body, session, api_key, fresh_session: false, query: "" }
}

/// Every path × method of the OpenAPI document. The order is the order of the probe (some
/// account routes change B's own state, e.g. TOTP enrolment before its confirmation).
fn table() -> Vec<Entry> {
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

/// The collection schema of A's collection (and of B's attempts to make or change one).
fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "status": {"type": "string", "enum": ["open", "done"]}
        },
        "required": ["title", "status"],
        "additionalProperties": false
    })
}

/// A's objects, B's credentials, and what must never reach B.
struct World {
    org: String,
    collection: String,
    record: String,
    role: String,
    invitation: String,
    invitation_token: String,
    member: String,
    api_key: String,
    secret: String,
    session: String,
    credential: String,
    checkpoint: Value,
    owner: String,
    audit_cursor: String,
    record_cursor: String,
    tenant: uuid::Uuid,
    users: Vec<uuid::Uuid>,
    /// A's ids, names, addresses and tokens: none may appear in an answer to B.
    secrets: Vec<String>,
    a_owner: String,
    b_email: String,
    b_org: String,
    b_session: String,
    b_key: String,
    /// B's browser session: the `Cookie` header and the CSRF token that goes with it.
    b_cookie: String,
    b_csrf: String,
}

impl World {
    /// The route with its parameters filled from A's ids.
    fn fill(&self, route: &str) -> Result<String, String> {
        self.fill_in(route, &self.org)
    }

    /// The route with `org` for {org} and A's ids for every other parameter.
    fn fill_in(&self, route: &str, org: &str) -> Result<String, String> {
        let mut path = String::new();
        let mut rest = route;
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            let close = rest[open..].find('}').ok_or_else(|| format!("{route}: unclosed parameter"))? + open;
            let value = match &rest[open + 1..close] {
                "org" => org,
                "name" if route.contains("/secrets/") => &self.secret,
                "name" if route.contains("/collections/") => &self.collection,
                "record" => &self.record,
                "role" => &self.role,
                "invitation" => &self.invitation,
                "user" => &self.member,
                "key" => &self.api_key,
                "session" => &self.session,
                "id" if route.starts_with("/api/v1/me/webauthn/") => &self.credential,
                "slug" => "not-found",
                other => return Err(format!("{route}: no value of A's for the parameter {{{other}}}")),
            };
            path.push_str(value);
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        Ok(path)
    }
}

fn origin() -> Url {
    Url::parse("http://localhost:8080").unwrap()
}

#[track_caller]
fn created(answer: &Answer, what: &str) -> String {
    assert!(matches!(answer.status, 200 | 201), "{what}: {}", answer.text);
    answer.body["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in {}", answer.text)).to_owned()
}

/// Org A with one of every object the API addresses by id; org B's owner with a session and an
/// API key with every permission.
async fn world(app: &TestApp) -> World {
    let (a_owner, org) = app.owner_of("alpha-owner@alpha.example", "Alpha Holdings Q7X").await;
    let base = format!("/api/v1/orgs/{org}");
    let send = |method: &'static str, path: String, body: Value| {
        let token = a_owner.clone();
        async move { app.send(method, &path, Some(&token), Some(body)).await }
    };
    let collection = "alpha_ledger_q7x".to_owned();
    let made = send("POST", format!("{base}/collections"), json!({"name": collection, "schema": schema()})).await;
    assert_eq!(made.status, 201, "collection: {}", made.text);
    let record = created(
        &send(
            "POST",
            format!("{base}/collections/{collection}/records"),
            json!({"data": {"title": "Alpha roof q7x", "status": "open"}}),
        )
        .await,
        "record",
    );
    let second = send(
        "POST",
        format!("{base}/collections/{collection}/records"),
        json!({"data": {"title": "Alpha gutter q7x", "status": "done"}}),
    )
    .await;
    assert_eq!(second.status, 201, "second record: {}", second.text);
    let role = created(
        &send(
            "POST",
            format!("{base}/roles"),
            json!({"name": "alpha_auditor_q7x", "description": "Alpha's own", "permissions": ["org.read", "audit.read"]}),
        )
        .await,
        "custom role",
    );
    let (a_member_token, member) = member_with_role(app, &org, "alpha-member@alpha.example", "member").await;
    let invitation = created(
        &send("POST", format!("{base}/invitations"), json!({"email": "alpha-invitee@alpha.example", "role": "viewer"}))
            .await,
        "invitation",
    );
    let invitation_token =
        link_token(&app.wait_for_mail("alpha-invitee@alpha.example", "You are invited").await, "/accept-invite")
            .expect("invitation link");
    let key = send(
        "POST",
        format!("{base}/api-keys"),
        json!({"name": "alpha-key-q7x", "permissions": ["org.read", "collections.read"]}),
    )
    .await;
    let api_key = created(&key, "A's API key");
    let secret = "ALPHA_VAULT_Q7X".to_owned();
    let made =
        send("POST", format!("{base}/secrets"), json!({"name": secret, "value": "alpha-secret-value-q7x"})).await;
    assert_eq!(made.status, 201, "secret: {}", made.text);
    let secret_id = made.body["id"].as_str().unwrap().to_owned();

    // A security key of A's owner (a software authenticator does the client's side).
    let mut passkey = SoftPasskey::new(true);
    let start = app.send("POST", "/api/v1/me/webauthn/register/start", Some(&a_owner), None).await;
    assert_eq!(start.status, 200, "{}", start.text);
    let options = serde_json::from_value(start.body["options"].clone()).unwrap();
    let registration = passkey.do_registration(origin(), options).expect("the authenticator registers");
    let credential = created(
        &app.send(
            "POST",
            "/api/v1/me/webauthn/register/finish",
            Some(&a_owner),
            Some(json!({"name": "alpha-yubikey-q7x", "state": start.body["state"], "credential": registration})),
        )
        .await,
        "security key",
    );

    let sessions = app.get("/api/v1/me/sessions", Some(&a_owner)).await;
    let session = sessions.body["items"][0]["id"].as_str().expect("A's session").to_owned();
    let me = app.get("/api/v1/me", Some(&a_owner)).await;
    let owner_id = me.body["id"].as_str().unwrap().to_owned();

    // A signed audit checkpoint (the sequencer's work, driven by hand; an hour has "passed").
    let tenant = org.parse::<OrgId>().unwrap().as_uuid();
    app.app.seal_audit().await.unwrap();
    app.admin()
        .await
        .execute(
            "UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '61 minutes'
             WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1, "A's checkpoint");
    let checkpoint = app.get(&format!("{base}/audit-checkpoints/latest"), Some(&a_owner)).await;
    assert_eq!(checkpoint.status, 200, "{}", checkpoint.text);
    let checkpoint = checkpoint.body;
    // Cursors of A's (sealed positions in A's lists), to be replayed inside B's organization.
    let page = app.get(&format!("{base}/audit-events?limit=1"), Some(&a_owner)).await;
    let audit_cursor = page.body["next_cursor"].as_str().expect("A's audit cursor").to_owned();
    let page = app.get(&format!("{base}/collections/{collection}/records?limit=1"), Some(&a_owner)).await;
    let record_cursor = page.body["next_cursor"].as_str().expect("A's record cursor").to_owned();
    drop(a_member_token);

    let secrets = vec![
        org.clone(),
        tenant.to_string(),
        "Alpha Holdings Q7X".into(),
        "alpha-owner@alpha.example".into(),
        "alpha-member@alpha.example".into(),
        "alpha-invitee@alpha.example".into(),
        "alpha_auditor_q7x".into(),
        "alpha-key-q7x".into(),
        "alpha-yubikey-q7x".into(),
        "Alpha roof q7x".into(),
        "Alpha gutter q7x".into(),
        "alpha-secret-value-q7x".into(),
        secret.clone(),
        collection.clone(),
        record.clone(),
        role.clone(),
        invitation.clone(),
        invitation_token.clone(),
        member.clone(),
        owner_id.clone(),
        api_key.clone(),
        key.body["prefix"].as_str().unwrap().to_owned(),
        secret_id,
        session.clone(),
        credential.clone(),
    ];
    // Long enough that random text in an answer (a challenge, a token) cannot match by chance.
    assert!(secrets.iter().all(|s| s.len() >= 12), "{secrets:?}");
    let users = [&owner_id, &member].iter().map(|id| id.parse::<UserId>().unwrap().as_uuid()).collect();

    // Org B: its owner signed in (a fresh sign-in counts as a recent authentication, so step-up
    // checks cannot answer before the tenant check) and an API key with every permission.
    let b_email = "bravo-owner@bravo.example".to_owned();
    let (b_session, b_org) = app.owner_of(&b_email, "Bravo Works").await;
    let all: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    let b_key = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{b_org}/api-keys"),
            Some(&b_session),
            Some(json!({"name": "bravo every scope", "permissions": all})),
        )
        .await;
    assert_eq!(b_key.status, 201, "B's API key: {}", b_key.text);
    // A collection of B's with the same name as A's, so that A's record id is looked up inside
    // a collection that exists.
    let same_name = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{b_org}/collections"),
            Some(&b_session),
            Some(json!({"name": collection, "schema": schema()})),
        )
        .await;
    assert_eq!(same_name.status, 201, "B's collection: {}", same_name.text);
    let b_key = b_key.body["secret"].as_str().unwrap().to_owned();

    let b_cookie = app.login_cookie(&b_email).await;
    let b_csrf =
        b_cookie.split("; ").find_map(|c| c.strip_prefix("palisade_csrf=")).expect("the CSRF cookie").to_owned();

    World {
        org,
        collection,
        record,
        role,
        invitation,
        invitation_token,
        member,
        api_key,
        secret,
        session,
        credential,
        checkpoint,
        owner: owner_id,
        audit_cursor,
        record_cursor,
        tenant,
        users,
        secrets,
        a_owner,
        b_email,
        b_org,
        b_session,
        b_key,
        b_cookie,
        b_csrf,
    }
}

/// Instance tables that hold nothing of any one organization or person.
const NOT_A_PERSONS_OR_ORGS: &[&str] =
    &["schema_migrations", "role_permissions", "audit_sealer", "signing_keys", "instance_data_keys", "settings_key"];

/// Tables in which A's setup leaves rows (a snapshot without them would compare nothing).
const SNAPSHOT_MUST_HOLD: &[&str] = &[
    "orgs",
    "memberships",
    "collections",
    "records",
    "custom_roles",
    "invitations",
    "api_keys",
    "secrets",
    "audit_events",
    "audit_checkpoints",
    "users",
    "sessions",
    "refresh_tokens",
    "webauthn_credentials",
    "tenants",
    "audit_events (no tenant)",
];

/// Everything of A's in the database, seen by the superuser: every tenant table's rows of A's
/// tenant, A's users' rows (and their sessions' rows) in the instance tables, A's tenant entry.
async fn snapshot(app: &TestApp, w: &World) -> Result<BTreeMap<String, Vec<String>>, String> {
    let admin = app.admin().await;
    let tables = palisade_store::catalog::table_facts(&admin).await.map_err(|e| format!("table facts: {e:?}"))?;
    let mut out = BTreeMap::new();
    for table in tables {
        let name = &table.name;
        let columns: Vec<String> = admin
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'palisade'
                 AND table_name = $1",
                &[name],
            )
            .await
            .map_err(|e| format!("columns of {name}: {e}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let has = |c: &str| columns.iter().any(|x| x == c);
        let select = format!("SELECT t::text FROM palisade.\"{name}\" t WHERE");
        let rows = if table.has_tenant_id {
            admin.query(&format!("{select} t.tenant_id = $1 ORDER BY 1"), &[&w.tenant]).await
        } else if name == "users" {
            admin.query(&format!("{select} t.id = ANY($1) ORDER BY 1"), &[&w.users]).await
        } else if name == "tenants" {
            admin.query(&format!("{select} t.id = $1 ORDER BY 1"), &[&w.tenant]).await
        } else if has("user_id") {
            admin.query(&format!("{select} t.user_id = ANY($1) ORDER BY 1"), &[&w.users]).await
        } else if has("session_id") {
            let sql = format!(
                "{select} t.session_id IN (SELECT id FROM palisade.sessions WHERE user_id = ANY($1)) ORDER BY 1"
            );
            admin.query(&sql, &[&w.users]).await
        } else if NOT_A_PERSONS_OR_ORGS.contains(&name.as_str()) {
            continue;
        } else {
            return Err(format!(
                "snapshot: the instance table {name} has no rule here (which of its rows are A's?): add one"
            ));
        };
        let rows = rows.map_err(|e| format!("rows of {name}: {e}"))?;
        out.insert(name.clone(), rows.iter().map(|r| r.get::<_, String>(0)).collect());
    }
    // Instance-level audit events (no tenant) by or about A's people, their sessions and keys.
    let rows = admin
        .query(
            "SELECT t::text FROM palisade.audit_events t WHERE t.tenant_id IS NULL AND (t.actor_id = ANY($1)
               OR t.target_id = ANY($1) OR t.target_id = $2
               OR t.target_id IN (SELECT id FROM palisade.sessions WHERE user_id = ANY($1))
               OR t.target_id IN (SELECT id FROM palisade.webauthn_credentials WHERE user_id = ANY($1)))
             ORDER BY 1",
            &[&w.users, &w.tenant],
        )
        .await
        .map_err(|e| format!("instance audit events: {e}"))?;
    out.insert("audit_events (no tenant)".into(), rows.iter().map(|r| r.get::<_, String>(0)).collect());
    Ok(out)
}

/// The path × method pairs of the served OpenAPI document.
async fn documented(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let mut out = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

struct Probe {
    cases: usize,
    failed: Vec<String>,
}

impl Probe {
    fn check(&mut self, what: String, got: &Answer, expect: Expect, secrets: &[String]) {
        self.cases += 1;
        let mut wrong = Vec::new();
        if got.status != expect.status {
            wrong.push(format!("status {} (expected {})", got.status, expect.status));
        }
        if let Some(slug) = expect.problem
            && got.body["type"] != format!("/problems/{slug}")
        {
            wrong.push(format!("problem type {} (expected /problems/{slug})", got.body["type"]));
        }
        let lower = got.text.to_lowercase();
        for secret in secrets {
            if lower.contains(&secret.to_lowercase()) {
                wrong.push(format!("the answer contains A's {secret:?}"));
            }
        }
        if !wrong.is_empty() {
            let body: String = got.text.chars().take(300).collect();
            self.failed.push(format!("{what}: {}; body: {body}", wrong.join(", ")));
        }
    }
}

#[tokio::test]
async fn cross_tenant_probe_of_every_route_finds_nothing_of_another_org() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let mut probe = Probe { cases: 0, failed: Vec::new() };

    // The table and the document describe the same routes.
    let doc = documented(&app).await;
    let table = table();
    let entries: BTreeSet<(String, String)> = table.iter().map(|e| (e.method.to_owned(), e.route.to_owned())).collect();
    assert_eq!(entries.len(), table.len(), "the table has an entry twice");
    probe.cases += doc.union(&entries).count();
    for (method, path) in doc.difference(&entries) {
        probe
            .failed
            .push(format!("{method} {path}: no entry in cross_tenant.rs table(): a new route needs an entry here"));
    }
    for (method, path) in entries.difference(&doc) {
        probe.failed.push(format!("{method} {path}: in cross_tenant.rs table() but not in the OpenAPI document"));
    }

    let before = snapshot(&app, &w).await;
    let before = match before {
        Ok(snapshot) => {
            // The snapshot must hold A's objects, or comparing it proves nothing.
            probe.cases += 1;
            let empty: Vec<&str> = SNAPSHOT_MUST_HOLD
                .iter()
                .copied()
                .filter(|t| snapshot.get(*t).is_none_or(|rows| rows.is_empty()))
                .collect();
            if !empty.is_empty() {
                probe.failed.push(format!("the snapshot of A holds no rows of {empty:?}"));
            }
            Some(snapshot)
        }
        Err(why) => {
            probe.failed.push(why);
            None
        }
    };

    // Control: B's browser session works on B's own organization (it is revoked later on, by
    // POST /api/v1/me/sessions/revoke-others).
    let headers = [("cookie", w.b_cookie.as_str())];
    let got = app.send_with("GET", &format!("/api/v1/orgs/{}/members", w.b_org), None, &headers, None).await;
    probe.check("control: B's browser session on B's own organization".into(), &got, answer(200, None), &w.secrets);

    for entry in table.iter().filter(|e| doc.contains(&(e.method.to_owned(), e.route.to_owned()))) {
        let path = match w.fill(entry.route) {
            Ok(path) if entry.query.is_empty() => path,
            Ok(path) => format!("{path}?{}", entry.query),
            Err(why) => {
                probe.failed.push(why);
                continue;
            }
        };
        let session = if entry.fresh_session { app.login(&w.b_email).await } else { w.b_session.clone() };
        for (who, token, expect) in [("session", &session, entry.session), ("API key", &w.b_key, entry.api_key)] {
            let got = app.send(entry.method, &path, Some(token), (entry.body)(&w)).await;
            probe.check(format!("{} {} as B's {who}", entry.method, entry.route), &got, expect, &w.secrets);
        }
        // Routes that must not find A's objects are also tried with B's browser session (the
        // cookie and its CSRF token), the console's credential.
        if entry.session.status == 404 {
            let headers = [("cookie", w.b_cookie.as_str()), ("x-csrf-token", w.b_csrf.as_str())];
            let got = app.send_with(entry.method, &path, None, &headers, (entry.body)(&w)).await;
            let what = format!("{} {} as B's browser session", entry.method, entry.route);
            probe.check(what, &got, entry.session, &w.secrets);
        }
    }

    // B's own organization with A's object ids (the ids of another tenant's member, role,
    // invitation, API key, record — the record inside a collection of B's with the same name as
    // A's): a lookup by id that forgets the tenant would find them.
    for entry in table.iter().filter(|e| {
        e.route.starts_with("/api/v1/orgs/{org}/")
            && ["{record}", "{role}", "{invitation}", "{user}", "{key}"].iter().any(|p| e.route.contains(p))
            && doc.contains(&(e.method.to_owned(), e.route.to_owned()))
    }) {
        let Ok(path) = w.fill_in(entry.route, &w.b_org) else { continue };
        for (who, token, expect) in [("session", &w.b_session, NOT_FOUND), ("API key", &w.b_key, entry.api_key)] {
            let got = app.send(entry.method, &path, Some(token), (entry.body)(&w)).await;
            let what = format!("{} {} in B's org with A's ids as B's {who}", entry.method, entry.route);
            probe.check(what, &got, expect, &w.secrets);
        }
    }

    // A's ids and A's cursors in the query of B's own lists: filters must select nothing of
    // A's, and a cursor sealed for A's list must not page into it.
    let b = format!("/api/v1/orgs/{}", w.b_org);
    let records = format!("{b}/collections/{}/records", w.collection);
    let queries = [
        format!("{b}/audit-events?actor={}", w.owner),
        format!("{b}/audit-events?actor={}", w.api_key),
        format!("{b}/audit-events?target={}", w.record),
        format!("{b}/audit-events?target={}", w.member),
        format!("{b}/audit-events?cursor={}", w.audit_cursor),
        format!("{b}/audit-events/export?format=jsonl&actor={}", w.owner),
        format!("{b}/audit-events/export?format=csv&target={}", w.record),
        format!("{records}?cursor={}", w.record_cursor),
        format!("{records}?filter[title]=Alpha%20roof%20q7x"),
    ];
    for query in &queries {
        for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
            let got = app.get(query, Some(token)).await;
            let what = format!("GET {} as B's {who}", query.replace(&w.b_org, "{B's org}"));
            let expect = if query.contains("cursor=") {
                // A cursor is sealed for one organization's list.
                answer(400, Some("invalid-query"))
            } else if query.contains("/export") && who == "API key" {
                // An export needs a person's recent authentication, which a key never has.
                answer(403, Some("step-up-required"))
            } else {
                answer(200, None)
            };
            probe.check(what, &got, expect, &w.secrets);
        }
    }

    // Every method a path does not document is refused the same way for everyone.
    let paths: BTreeSet<&String> = doc.iter().map(|(_, path)| path).collect();
    for route in paths {
        let Ok(path) = w.fill(route) else { continue };
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if doc.contains(&(method.to_owned(), route.clone())) {
                continue;
            }
            for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
                let got = app.send(method, &path, Some(token), None).await;
                let what = format!("{method} {route} (undocumented method) as B's {who}");
                probe.check(what, &got, answer(405, None), &w.secrets);
            }
        }
    }

    // Nothing of A's changed.
    probe.cases += 1;
    match (before, snapshot(&app, &w).await) {
        (Some(before), Ok(after)) if before == after => {}
        (Some(before), Ok(after)) => {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|t| before.get(*t) != after.get(*t))
                .map(|t| {
                    let (b, a) =
                        (before.get(t).cloned().unwrap_or_default(), after.get(t).cloned().unwrap_or_default());
                    let gone: Vec<_> = b.iter().filter(|r| !a.contains(r)).collect();
                    let new: Vec<_> = a.iter().filter(|r| !b.contains(r)).collect();
                    format!("{t}: before {gone:?} after {new:?}")
                })
                .collect();
            probe.failed.push(format!("A's rows changed during the probe: {}", changed.join("; ")));
        }
        (_, Err(why)) => probe.failed.push(why),
        (None, Ok(_)) => probe.failed.push("no snapshot before the probe".into()),
    }

    // Controls, so that the 404s above cannot come from ids that address nothing or from
    // credentials that work nowhere: A's owner reads every tenant-bound GET route with the same
    // ids (after the snapshot: A's own requests move A's session), and B's credentials work on
    // B's own organization.
    for entry in table.iter().filter(|e| e.method == "GET" && e.session.status == 404 && e.api_key.status == 404) {
        let Ok(path) = w.fill(entry.route) else { continue };
        let path = if entry.query.is_empty() { path } else { format!("{path}?{}", entry.query) };
        let got = app.send("GET", &path, Some(&w.a_owner), None).await;
        probe.check(format!("control: GET {} as A's owner", entry.route), &got, answer(200, None), &[]);
    }
    for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
        let got = app.get(&format!("/api/v1/orgs/{}/members", w.b_org), Some(token)).await;
        probe.check(format!("control: B's {who} on B's own organization"), &got, answer(200, None), &w.secrets);
    }

    if let Ok(report) = std::env::var("PALISADE_RELIABILITY_REPORT") {
        let json = json!({"cases": probe.cases, "failures": probe.failed.len(), "failed": probe.failed});
        std::fs::write(&report, serde_json::to_vec_pretty(&json).unwrap()).expect("write the report");
    }
    assert!(
        probe.failed.is_empty(),
        "{} of {} cases failed:\n{}",
        probe.failed.len(),
        probe.cases,
        probe.failed.join("\n")
    );
}
