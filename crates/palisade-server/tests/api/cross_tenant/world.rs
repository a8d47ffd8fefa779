//! Org A's objects, org B's credentials, and the snapshot of everything of A's in the database.

use std::collections::BTreeMap;

use palisade_core::{OrgId, Permission, UserId};
use palisade_testkit::{Answer, TestApp, link_token};
use serde_json::{Value, json};
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::collections::member_with_role;

/// The collection schema of A's collection (and of B's attempts to make or change one).
pub(super) fn schema() -> Value {
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
pub(super) struct World {
    pub(super) org: String,
    pub(super) collection: String,
    pub(super) record: String,
    pub(super) role: String,
    pub(super) invitation: String,
    pub(super) invitation_token: String,
    pub(super) member: String,
    pub(super) api_key: String,
    pub(super) secret: String,
    pub(super) session: String,
    pub(super) credential: String,
    pub(super) checkpoint: Value,
    pub(super) owner: String,
    pub(super) audit_cursor: String,
    pub(super) record_cursor: String,
    pub(super) tenant: uuid::Uuid,
    pub(super) users: Vec<uuid::Uuid>,
    /// A's ids, names, addresses and tokens: none may appear in an answer to B.
    pub(super) secrets: Vec<String>,
    pub(super) a_owner: String,
    pub(super) b_email: String,
    pub(super) b_org: String,
    pub(super) b_session: String,
    pub(super) b_key: String,
    /// B's browser session: the `Cookie` header and the CSRF token that goes with it.
    pub(super) b_cookie: String,
    pub(super) b_csrf: String,
}

impl World {
    /// The route with its parameters filled from A's ids.
    pub(super) fn fill(&self, route: &str) -> Result<String, String> {
        self.fill_in(route, &self.org)
    }

    /// The route with `org` for {org} and A's ids for every other parameter.
    pub(super) fn fill_in(&self, route: &str, org: &str) -> Result<String, String> {
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

pub(super) fn origin() -> Url {
    Url::parse("http://localhost:8080").unwrap()
}

#[track_caller]
pub(super) fn created(answer: &Answer, what: &str) -> String {
    assert!(matches!(answer.status, 200 | 201), "{what}: {}", answer.text);
    answer.body["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in {}", answer.text)).to_owned()
}

/// Org A with one of every object the API addresses by id; org B's owner with a session and an
/// API key with every permission.
pub(super) async fn world(app: &TestApp) -> World {
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
pub(super) const NOT_A_PERSONS_OR_ORGS: &[&str] = &[
    "schema_migrations",
    "role_permissions",
    "audit_sealer",
    "signing_keys",
    "instance_data_keys",
    "settings_key",
    "bearer_key",
    "instance_audit",
];

/// Tables in which A's setup leaves rows (a snapshot without them would compare nothing).
pub(super) const SNAPSHOT_MUST_HOLD: &[&str] = &[
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
pub(super) async fn snapshot(app: &TestApp, w: &World) -> Result<BTreeMap<String, Vec<String>>, String> {
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
        } else if name == "login_attempts" {
            // Keyed by the address's digest: the runs of A's users' addresses.
            let sql = format!(
                "{select} t.email_digest IN (SELECT sha256(convert_to(u.email, 'UTF8')) FROM palisade.users u \
                 WHERE u.id = ANY($1)) ORDER BY 1"
            );
            admin.query(&sql, &[&w.users]).await
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
