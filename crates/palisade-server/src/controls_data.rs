//! Controls checks for data access and the audit trail: T3 (record scope in the database), Z1
//! (the permission matrix the database enforces is the published one) and L4 (every
//! organization's audit chain verifies).

use palisade_core::OrgRole;
use tokio_postgres::Client;

use crate::audit_cli::verify_org;
use crate::controls::{CheckResult, Status, result};

const T3: &str = "Role limits enforced in the database as well (records scope policy)";
const Z1: &str = "RBAC with fine-grained permissions; the database enforces the published matrix";
const L4: &str =
    "Audit log tamper-evident (hash chain + signed checkpoints); every org's chain and the instance chain verify";

pub async fn check_t3(runtime: &Client) -> CheckResult {
    let rows = runtime
        .query(
            "SELECT p.polname::text, p.polpermissive, p.polcmd::text,
                    coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
                    c.relrowsecurity, c.relforcerowsecurity
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_policy p ON p.polrelid = c.oid
              WHERE n.nspname = 'palisade' AND c.relname = 'records'",
            &[],
        )
        .await;
    let rows = match rows {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => {
            return result(
                "T3",
                T3,
                vec!["the records table is missing: is the schema migrated?".into()],
                String::new(),
            );
        }
        Err(err) => return result("T3", T3, vec![format!("cannot read the catalog: {err}")], String::new()),
    };
    let mut problems = Vec::new();
    if !rows[0].get::<_, bool>(5) || !rows[0].get::<_, bool>(6) {
        problems.push("records: row-level security is not enabled and forced".to_owned());
    }
    let scoped =
        |expr: &str| expr.contains("app.record_scope") && expr.contains("created_by") && expr.contains("assignees");
    let restrictive = rows.iter().any(|r| {
        let (permissive, cmd, qual, check): (Option<bool>, Option<String>, String, String) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        permissive == Some(false) && cmd.as_deref() == Some("*") && scoped(&qual) && scoped(&check)
    });
    if !restrictive {
        problems.push(
            "records: no RESTRICTIVE policy limits every command to the caller's records (app.record_scope, created_by, assignees)"
                .to_owned(),
        );
    }
    // Any other permissive policy would widen what a contractor sees.
    for r in &rows {
        let (name, permissive): (Option<String>, Option<bool>) = (r.get(0), r.get(1));
        if permissive == Some(true) && name.as_deref() != Some("tenant_isolation") {
            problems.push(format!("records: permissive policy {} widens access", name.unwrap_or_default()));
        }
    }
    result(
        "T3",
        T3,
        problems,
        "records: forced RLS; restrictive record_scope policy (own or assigned unless records.read_all) on every command"
            .into(),
    )
}

pub async fn check_z1(runtime: &Client) -> CheckResult {
    let rows = runtime.query("SELECT role, permission FROM palisade.role_permissions ORDER BY 1, 2", &[]).await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => return result("Z1", Z1, vec![format!("cannot read the permission matrix: {err}")], String::new()),
    };
    let mut stored: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    stored.sort();
    let mut published: Vec<(String, String)> = OrgRole::ALL
        .into_iter()
        .flat_map(|role| role.permissions().into_iter().map(move |p| (role.as_str().to_owned(), p.as_str().to_owned())))
        .collect();
    published.sort();
    let mut problems: Vec<String> = Vec::new();
    for extra in stored.iter().filter(|s| !published.contains(s)) {
        problems.push(format!("the database grants {} to {} but the published matrix does not", extra.1, extra.0));
    }
    for missing in published.iter().filter(|p| !stored.contains(p)) {
        problems.push(format!("the published matrix grants {} to {} but the database does not", missing.1, missing.0));
    }
    match runtime
        .query_one(
            "SELECT has_table_privilege(current_user, 'palisade.role_permissions', 'INSERT, UPDATE, DELETE, TRUNCATE')",
            &[],
        )
        .await
    {
        Ok(row) if row.get::<_, bool>(0) => problems.push("the server role may change the permission matrix".into()),
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read privileges: {err}")),
    }
    result(
        "Z1",
        Z1,
        problems,
        format!(
            "{} role × permission grants in the database equal the published matrix (6 built-in roles, {} permissions); read-only for the server",
            stored.len(),
            palisade_core::Permission::ALL.len()
        ),
    )
}

/// Needs the operator's connection: it reads every organization's chain.
pub async fn check_l4(admin: Option<&Client>) -> CheckResult {
    let Some(admin) = admin else {
        return CheckResult {
            id: "L4",
            control: L4,
            status: Status::Skip,
            evidence: "needs the admin connection".into(),
        };
    };
    if let Err(err) = admin.query_one("SELECT palisade.seal_audit_events(100000)", &[]).await {
        return result("L4", L4, vec![format!("cannot run the sequencer: {err}")], String::new());
    }
    let mut orgs = match admin.query("SELECT tenant_id FROM palisade.audit_chain_heads ORDER BY tenant_id", &[]).await {
        Ok(rows) => rows.iter().map(|r| palisade_core::OrgId::from_uuid(r.get(0))).collect::<Vec<_>>(),
        Err(err) => return result("L4", L4, vec![format!("cannot list chains: {err}")], String::new()),
    };
    // The instance chain is verified even when its head is gone (its events then stand out as
    // in no chain position).
    let instance_chain = palisade_store::repo::audit_chain::instance_chain();
    if !orgs.contains(&instance_chain) {
        orgs.insert(0, instance_chain);
    }
    let (mut problems, mut events, mut checkpoints) = (Vec::new(), 0, 0);
    for org in &orgs {
        let name = crate::audit_cli::chain_label(*org);
        match verify_org(admin, *org, &[]).await {
            Ok(report) if report.verdict.valid => {
                events += report.verdict.events;
                checkpoints += report.checkpoints_verified;
            }
            Ok(report) => problems.push(format!(
                "{name}: broken at position {} ({})",
                report.verdict.first_bad_seq.unwrap_or(0),
                report.verdict.reason.unwrap_or_default()
            )),
            Err(err) => problems.push(format!("{name}: cannot verify ({err})")),
        }
    }
    result(
        "L4",
        L4,
        problems,
        format!(
            "{} organization chain(s) and the instance chain (sign-ups, sign-ins, lockouts) verify: {events} events \
             recomputed, {checkpoints} signed checkpoint(s)",
            orgs.len() - 1
        ),
    )
}
