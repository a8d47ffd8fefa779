//! `palisade controls check`: live checks of the control catalog against the database (and, with
//! `--url`, a running server). Each check would fail if its control broke; tests prove that by
//! breaking each control and watching its check fail.

use serde::Serialize;
use tokio_postgres::Client;

use palisade_store::catalog;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: &'static str,
    pub control: &'static str,
    pub status: Status,
    pub evidence: String,
}

pub(crate) fn result(id: &'static str, control: &'static str, problems: Vec<String>, ok: String) -> CheckResult {
    if problems.is_empty() {
        CheckResult { id, control, status: Status::Pass, evidence: ok }
    } else {
        CheckResult { id, control, status: Status::Fail, evidence: problems.join("; ") }
    }
}

/// The connections a check run uses.
#[derive(Clone, Copy)]
pub struct CheckConnections<'a> {
    /// As the runtime role: what a request's connection can see and do.
    pub runtime: &'a Client,
    /// The operator's connection: enables the checks that read every organization.
    pub admin: Option<&'a Client>,
    /// The key jobs' `_keys` login: every organization's data keys (E4).
    pub keys: Option<&'a Client>,
}

/// Runs every check over `connections`; `url` is a running server; `config` the configuration
/// the server runs with.
pub async fn run_all(
    connections: CheckConnections<'_>,
    url: Option<&str>,
    config: &crate::config::Config,
) -> Vec<CheckResult> {
    let CheckConnections { runtime, admin, keys } = connections;
    vec![
        check_t1(runtime).await,
        check_t2(runtime).await,
        crate::controls_data::check_t3(runtime).await,
        crate::controls_data::check_z1(runtime).await,
        check_a1(runtime).await,
        crate::controls_auth::check_a3(runtime, url, config).await,
        crate::controls_auth::check_a4(runtime, admin, url, config).await,
        check_l1(runtime).await,
        crate::controls_data::check_l4(admin).await,
        crate::controls_edge::add_network_links(crate::controls_edge::check_e1(url).await, runtime, config).await,
        crate::controls_edge::check_p1(&config.rate_limits, url).await,
        check_p2(url).await,
        crate::controls_edge::check_p4(url).await,
        crate::controls_keys::check_e2(admin).await,
        crate::controls_keys::check_e3(runtime, admin).await,
        crate::controls_keys::check_e4(runtime, keys, config).await,
        crate::controls_keys::check_e5(runtime, admin, url, config).await,
    ]
}

const T1: &str = "Tenant tables: tenant_id, RLS enabled and forced, policy on the tenant setting";
const T2: &str = "Tenant set per transaction by a verifying function; runtime role owns nothing, no BYPASSRLS";
const A1: &str = "Passwords stored with argon2id; imported bcrypt hashes upgraded at first sign-in";
const L1: &str = "Audit log written with every security action; append-only for the server";
const P2: &str = "Input validated on every endpoint: clear problem+json error, nothing written";

pub async fn check_t1(runtime: &Client) -> CheckResult {
    let tables = match catalog::table_facts(runtime).await {
        Ok(tables) => tables,
        Err(err) => return result("T1", T1, vec![format!("cannot read the catalog: {err}")], String::new()),
    };
    let mut problems: Vec<String> = tables.iter().filter_map(catalog::TableFacts::problem).collect();
    let tenant_tables: Vec<&str> = tables.iter().filter(|t| t.has_tenant_id).map(|t| t.name.as_str()).collect();
    if tenant_tables.is_empty() {
        problems.push("no tenant tables found: is the schema migrated?".into());
    }
    // With no tenant set, the runtime role must see no tenant row at all.
    for table in &tenant_tables {
        let sql = format!("SELECT count(*) FROM palisade.\"{table}\"");
        match runtime.query_one(&sql, &[]).await {
            Ok(row) if row.get::<_, i64>(0) == 0 => {}
            Ok(row) => problems.push(format!("{table}: {} row(s) visible with no tenant set", row.get::<_, i64>(0))),
            Err(err) => problems.push(format!("{table}: cannot probe ({err})")),
        }
    }
    result(
        "T1",
        T1,
        problems,
        format!(
            "{} tenant tables forced, 0 rows visible without a tenant: {}",
            tenant_tables.len(),
            tenant_tables.join(", ")
        ),
    )
}

/// Sets `app.tenant_id` by hand, as injected SQL would, and reads it back through the verifying
/// reader: anything but PA401 is a problem. Rolled back either way.
async fn forged_tenant_problem(runtime: &Client) -> Option<String> {
    if let Err(err) = runtime.batch_execute("BEGIN").await {
        return Some(format!("cannot open a transaction for the forged-tenant probe: {err}"));
    }
    let forged = runtime
        .query_one(
            "SELECT palisade.setting('app.tenant_id', true)
               FROM (SELECT set_config('app.tenant_id', gen_random_uuid()::text, true)) AS forged",
            &[],
        )
        .await;
    let _ = runtime.batch_execute("ROLLBACK").await;
    match forged {
        Err(err) if err.code().map(|c| c.code()) == Some("PA401") => None,
        Err(err) => Some(format!("a tenant set by hand failed oddly: {err}")),
        Ok(_) => Some("a tenant set by hand with set_config was accepted by palisade.setting".into()),
    }
}

pub async fn check_t2(runtime: &Client) -> CheckResult {
    let facts = match catalog::current_role_facts(runtime).await {
        Ok(facts) => facts,
        Err(err) => return result("T2", T2, vec![format!("cannot read role attributes: {err}")], String::new()),
    };
    let mut problems = facts.problems();
    // The tenant-entering function must refuse an unknown session, inside the database.
    let probe = runtime
        .query_one(
            "SELECT palisade.enter_tenant(sha256(gen_random_uuid()::text::bytea), now(), gen_random_uuid())",
            &[],
        )
        .await;
    match probe {
        Err(err) if err.code().map(|c| c.code()) == Some("PA401") => {}
        Err(err) => problems.push(format!("enter_tenant with an unknown session failed oddly: {err}")),
        Ok(_) => problems.push("enter_tenant accepted an unknown session".into()),
    }
    let definer = runtime
        .query_opt(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'palisade' AND p.proname = 'enter_tenant' AND p.prosecdef",
            &[],
        )
        .await;
    if !matches!(definer, Ok(Some(_))) {
        problems.push("palisade.enter_tenant is missing or not SECURITY DEFINER".into());
    }
    // The caller settings are verified where they are read: a tenant set by hand is refused.
    match catalog::caller_settings_problems(runtime).await {
        Ok(found) => problems.extend(found),
        Err(err) => problems.push(format!("cannot read the caller-settings facts: {err}")),
    }
    // No temporary object can stand in for a name a definer function uses.
    match catalog::definer_problems(runtime).await {
        Ok(found) => problems.extend(found),
        Err(err) => problems.push(format!("cannot read the definer-function facts: {err}")),
    }
    // Nor can it make itself any account, or change the keys (0042, 0043).
    match catalog::wall_problems(runtime).await {
        Ok(found) => problems.extend(found),
        Err(err) => problems.push(format!("cannot read the account-write facts: {err}")),
    }
    if let Some(problem) = forged_tenant_problem(runtime).await {
        problems.push(problem);
    }
    result(
        "T2",
        T2,
        problems,
        format!(
            "role {}: not superuser, no BYPASSRLS, owns nothing; enter_tenant refuses an unknown session (PA401); \
             caller settings are read only through palisade.setting, which refuses a tenant set by hand (PA401); \
             every SECURITY DEFINER function searches pg_temp last and palisade's logins cannot create temporary objects; \
             it can neither read nor replace password hashes, create accounts, mint email tokens or sign-in challenges, \
             publish or revoke signing keys, nor rewrite the instance data keys",
            facts.role
        ),
    )
}

pub async fn check_a1(runtime: &Client) -> CheckResult {
    let row = runtime
        // Counted by the database (0042): the runtime role cannot read the hashes themselves.
        .query_one("SELECT * FROM palisade.password_hash_census()", &[])
        .await;
    match row {
        Err(err) => result("A1", A1, vec![format!("cannot read password hashes: {err}")], String::new()),
        Ok(row) => {
            let (argon, bcrypt, other): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let problems = if other > 0 {
                vec![format!("{other} account(s) with a hash that is neither argon2id nor bcrypt")]
            } else {
                vec![]
            };
            result(
                "A1",
                A1,
                problems,
                format!("{argon} argon2id (m=19 MiB, t=2, p=1), {bcrypt} imported bcrypt awaiting first sign-in"),
            )
        }
    }
}

pub async fn check_l1(runtime: &Client) -> CheckResult {
    let row = runtime
        .query_one(
            "SELECT has_table_privilege(current_user, 'palisade.audit_events', 'INSERT'),
                    has_table_privilege(current_user, 'palisade.audit_events', 'UPDATE'),
                    has_table_privilege(current_user, 'palisade.audit_events', 'DELETE'),
                    has_table_privilege(current_user, 'palisade.audit_events', 'TRUNCATE'),
                    (SELECT count(*) FROM information_schema.column_privileges
                      WHERE table_schema = 'palisade' AND table_name = 'audit_events'
                        AND grantee = current_user AND privilege_type = 'UPDATE'),
                    (SELECT count(*) FROM unnest(ARRAY['audit_chain', 'audit_chain_heads', 'audit_checkpoints']) t
                      WHERE has_table_privilege(current_user, 'palisade.' || t, 'INSERT, UPDATE, DELETE, TRUNCATE'))",
            &[],
        )
        .await;
    match row {
        Err(err) => result("L1", L1, vec![format!("cannot read privileges: {err}")], String::new()),
        Ok(row) => {
            let mut problems = Vec::new();
            if !row.get::<_, bool>(0) {
                problems.push("the server cannot write audit events".to_owned());
            }
            for (i, what) in [(1, "UPDATE"), (2, "DELETE"), (3, "TRUNCATE")] {
                if row.get::<_, bool>(i) {
                    problems.push(format!("the server role may {what} audit events"));
                }
            }
            if row.get::<_, i64>(4) > 0 {
                problems.push("the server role may UPDATE columns of audit events".to_owned());
            }
            if row.get::<_, i64>(5) > 0 {
                problems.push("the server role may write the audit chain directly".to_owned());
            }
            result(
                "L1",
                L1,
                problems,
                "runtime role may INSERT and SELECT audit events, never UPDATE, DELETE or TRUNCATE; the chain is written only by the sequencer".into(),
            )
        }
    }
}

pub async fn check_p2(url: Option<&str>) -> CheckResult {
    let Some(url) = url else {
        return CheckResult {
            id: "P2",
            control: P2,
            status: Status::Skip,
            evidence: "needs --url of a running server".into(),
        };
    };
    let client = reqwest::Client::new();
    let endpoint = format!("{}/api/v1/auth/signup", url.trim_end_matches('/'));
    let cases: [(&str, u16, &str); 3] = [
        ("{\"email\":", 400, "/problems/invalid-json"),
        (
            "{\"email\":\"x@example.com\",\"password\":\"p\",\"name\":\"n\",\"is_admin\":true}",
            422,
            "/problems/validation",
        ),
        ("{\"email\":\"not-an-email\",\"password\":\"short\",\"name\":\"\"}", 422, "/problems/validation"),
    ];
    let mut problems = Vec::new();
    for (body, status, problem_type) in cases {
        let response = client.post(&endpoint).header("content-type", "application/json").body(body).send().await;
        match response {
            Ok(r) => {
                let got_status = r.status().as_u16();
                let content_type =
                    r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let json: serde_json::Value = r.json().await.unwrap_or_default();
                if got_status != status || content_type != "application/problem+json" || json["type"] != problem_type {
                    problems.push(format!(
                        "{body:?} → {got_status} {content_type} {}, expected {status} {problem_type}",
                        json["type"]
                    ));
                }
            }
            Err(err) => problems.push(format!("cannot reach {endpoint}: {err}")),
        }
    }
    result(
        "P2",
        P2,
        problems,
        format!("{endpoint}: malformed → 400, unknown field → 422, invalid values → 422, all problem+json"),
    )
}

/// The table `palisade controls check` prints.
pub fn render_table(results: &[CheckResult]) -> String {
    let mut out = format!("{:<4} {:<6} {:<70} {}\n", "ID", "STATUS", "CONTROL", "EVIDENCE");
    for r in results {
        let status = match r.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        out.push_str(&format!("{:<4} {:<6} {:<70} {}\n", r.id, status, r.control, r.evidence));
    }
    out
}
