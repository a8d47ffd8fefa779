//! Controls checks for tokens and brute-force protection: A3 (short-lived signed access tokens,
//! refresh tokens reachable only through the rotating function, sessions opened only by the
//! sign-in login and proven by a MAC) and A4 (the account lockout, and
//! with `--url` and the operator's connection, a live lock of a canary address).

use tokio_postgres::Client;

use crate::config::Config;
use crate::controls::{CheckResult, result};
use crate::controls_edge::probe_client;

const A3: &str = "Short-lived signed access tokens; refresh tokens stored hashed, rotated once, reuse detected";
const A4: &str = "Brute-force lockout: 6 failed attempts lock for 15 minutes, counted in the database, per address";

/// The catalog's promises, as shipped by default: checks fail when an install is laxer.
const MAX_ACCESS_TOKEN_MINUTES: i64 = 15;
const MAX_REFRESH_DAYS: i64 = 30;
const MAX_LOCKOUT_THRESHOLD: i32 = 6;
const MIN_LOCKOUT_MINUTES: i64 = 15;

/// What the runtime role may do with a table: any of these is a problem for a table only
/// SECURITY DEFINER functions may touch.
const TABLE_PRIVILEGES: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

pub async fn check_a3(runtime: &Client, url: Option<&str>, config: &Config) -> CheckResult {
    let mut problems = Vec::new();
    if config.access_token_minutes > MAX_ACCESS_TOKEN_MINUTES {
        problems.push(format!(
            "access tokens live {} minutes, more than the catalog's {MAX_ACCESS_TOKEN_MINUTES}",
            config.access_token_minutes
        ));
    }
    if config.refresh_lifetime_days > MAX_REFRESH_DAYS {
        problems.push(format!(
            "refresh-token families live {} days, more than the catalog's {MAX_REFRESH_DAYS}",
            config.refresh_lifetime_days
        ));
    }
    // The runtime role never reads a hash or changes a token: only palisade.rotate_refresh uses
    // one, once. Nor does it add one, or a session: only the sign-in login opens them (0036).
    problems.extend(
        only_through(
            runtime,
            "refresh_tokens",
            &TABLE_PRIVILEGES,
            "palisade.rotate_refresh(bytea, bytea, timestamptz, uuid, inet, text, text)",
        )
        .await,
    );
    problems.extend(session_forgery(runtime).await);
    let mut evidence = format!(
        "access tokens {} min, refresh families {} days; refresh tokens used only through rotate_refresh; \
         sessions opened only by the sign-in login, access-token sessions proven by a MAC",
        config.access_token_minutes, config.refresh_lifetime_days
    );
    if let Some(url) = url {
        match published_keys(url).await {
            Ok(count) => evidence.push_str(&format!("; live: {count} Ed25519 public key(s) at /.well-known/jwks.json")),
            Err(problem) => problems.push(problem),
        }
    }
    result("A3", A3, problems, evidence)
}

/// The keys a server publishes: Ed25519 public keys only, never a private member.
async fn published_keys(url: &str) -> Result<usize, String> {
    let jwks_url = format!("{}/.well-known/jwks.json", url.trim_end_matches('/'));
    let answer = probe_client().get(&jwks_url).send().await.map_err(|err| format!("cannot reach {url}: {err}"))?;
    let jwks: serde_json::Value =
        answer.json().await.map_err(|err| format!("{jwks_url} is not a JSON key set: {err}"))?;
    let keys = jwks["keys"].as_array().ok_or_else(|| format!("{jwks_url} has no \"keys\" array"))?;
    if keys.is_empty() {
        return Err(format!("{jwks_url} publishes no key: tokens cannot be verified"));
    }
    for key in keys {
        let kid = key["kid"].as_str().unwrap_or("(no kid)");
        if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
            return Err(format!("{jwks_url}: key {kid} is not an Ed25519 key"));
        }
        if key.get("d").is_some() {
            return Err(format!("{jwks_url}: key {kid} publishes its private part"));
        }
    }
    Ok(keys.len())
}

pub async fn check_a4(runtime: &Client, admin: Option<&Client>, url: Option<&str>, config: &Config) -> CheckResult {
    let mut problems = Vec::new();
    if !(1..=MAX_LOCKOUT_THRESHOLD).contains(&config.lockout_threshold) {
        problems.push(format!(
            "accounts lock after {} failures; the catalog allows at most {MAX_LOCKOUT_THRESHOLD}",
            config.lockout_threshold
        ));
    }
    if config.lockout_minutes < MIN_LOCKOUT_MINUTES {
        problems.push(format!(
            "a lock lasts {} minutes, less than the catalog's {MIN_LOCKOUT_MINUTES}",
            config.lockout_minutes
        ));
    }
    // The counter is the database's: reached only through the function that counts atomically
    // (200 concurrent attempts, at most `threshold` password checks), which only the sign-in
    // login may call (0044: it takes the time from its caller).
    match table_rights(runtime, "palisade.login_attempts", &TABLE_PRIVILEGES).await {
        Ok(held) if !held.is_empty() => {
            problems.push(format!("the runtime role holds {} on login_attempts", held.join(", ")))
        }
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read the runtime role's privileges: {err}")),
    }
    if let Err(problem) =
        sign_in_function(runtime, "palisade.count_login_attempt(text, timestamptz, integer, double precision)").await
    {
        problems.push(problem);
    }
    let mut evidence = format!(
        "{} failures lock for {} min, counted per address by count_login_attempt (the sign-in login's alone)",
        config.lockout_threshold, config.lockout_minutes
    );
    match (url, admin) {
        (Some(url), Some(admin)) => match live_lock(url, admin, config).await {
            Ok(seen) => evidence.push_str(&format!("; live: {seen}")),
            Err(problem) => problems.push(problem),
        },
        _ => evidence.push_str("; the live lock needs --url and the operator's connection"),
    }
    result("A4", A4, problems, evidence)
}

/// Signs in `threshold` times (never more than the catalog's 6: a laxer server must fail, not be
/// flooded) with a wrong password for a canary address no account can have, then reads the
/// address's counter: it must be locked for the configured time. The canary's counter is removed
/// afterwards; the refused sign-ins stay in the audit log, as any would.
async fn live_lock(url: &str, admin: &Client, config: &Config) -> Result<String, String> {
    let canary = format!("controls-check-{}@palisade.invalid", uuid::Uuid::new_v4().simple());
    let login = format!("{}/api/v1/auth/login", url.trim_end_matches('/'));
    let client = probe_client();
    let attempts = config.lockout_threshold.clamp(1, MAX_LOCKOUT_THRESHOLD);
    for attempt in 1..=attempts {
        let body = serde_json::json!({"email": canary, "password": "controls-check-wrong-password"});
        let answer =
            client.post(&login).json(&body).send().await.map_err(|err| format!("cannot reach {url}: {err}"))?;
        match answer.status().as_u16() {
            401 => {}
            429 => {
                return Ok(format!(
                    "the per-source throttle refused sign-in {attempt} (429) before the lock; run again in a minute \
                     to watch the lock itself"
                ));
            }
            other => return Err(format!("{login}: a wrong password answered {other}, not 401")),
        }
    }
    let digest = "sha256(convert_to($1, 'UTF8'))";
    let row = admin
        .query_opt(
            &format!(
                "SELECT failed, extract(epoch FROM locked_until - now())::float8 FROM palisade.login_attempts \
                 WHERE email_digest = {digest}"
            ),
            &[&canary],
        )
        .await
        .map_err(|err| format!("cannot read login_attempts: {err}"))?;
    let cleaned =
        admin.execute(&format!("DELETE FROM palisade.login_attempts WHERE email_digest = {digest}"), &[&canary]).await;
    let (failed, locked_for): (i32, Option<f64>) = match row {
        Some(row) => (row.get(0), row.get(1)),
        None => return Err(format!("{attempts} refused sign-ins for one address left no count")),
    };
    cleaned.map_err(|err| format!("cannot remove the canary's count: {err}"))?;
    let expected = (config.lockout_minutes * 60) as f64;
    match locked_for {
        // The server's clock and the database's may differ by a little; a minute is plenty.
        Some(seconds) if seconds > expected - 60.0 => {
            Ok(format!("{failed} refused sign-ins for a canary address locked it for {:.0} min", seconds / 60.0))
        }
        Some(seconds) => Err(format!(
            "{failed} refused sign-ins locked a canary address for {:.0} s only, not {} min",
            seconds.max(0.0),
            config.lockout_minutes
        )),
        None => Err(format!("{failed} refused sign-ins for a canary address did not lock it")),
    }
}

/// The problems with "the runtime role reaches `table` only through `function`": it holds none of
/// `privileges` on the table, and the function is SECURITY DEFINER and callable.
async fn only_through(runtime: &Client, table: &str, privileges: &[&str], function: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match table_rights(runtime, &format!("palisade.{table}"), privileges).await {
        Ok(held) if !held.is_empty() => problems.push(format!("the runtime role holds {} on {table}", held.join(", "))),
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read the runtime role's privileges: {err}")),
    }
    if let Err(problem) = definer_function(runtime, function).await {
        problems.push(problem);
    }
    problems
}

/// How the connected (runtime) role could act as a session nobody signed it into: open one
/// itself (INSERT on `sessions`, or the sign-in login's group, 0036), or prove any session id it
/// learned (reading the bearer key, 0037). Empty when it can do neither.
async fn session_forgery(runtime: &Client) -> Vec<String> {
    let mut problems = Vec::new();
    match table_rights(runtime, "palisade.bearer_key", &["SELECT"]).await {
        Ok(held) if !held.is_empty() => problems.push("the runtime role can read the bearer key".to_owned()),
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read the runtime role's privileges: {err}")),
    }
    match table_rights(runtime, "palisade.sessions", &["INSERT"]).await {
        Ok(held) if !held.is_empty() => problems.push("the runtime role holds INSERT on sessions".to_owned()),
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read the runtime role's privileges: {err}")),
    }
    let member = "SELECT pg_has_role(current_user, 'palisade_signin', 'MEMBER')";
    match runtime.query_one(member, &[]).await {
        Ok(row) if row.get::<_, bool>(0) => {
            problems.push("the runtime role is a member of palisade_signin (it could open sessions)".to_owned())
        }
        Ok(_) => {}
        Err(err) => problems.push(format!("cannot read the runtime role's memberships: {err}")),
    }
    problems
}

/// Which of `privileges` the connected role holds on `table`, on the whole table or on any of its
/// columns (a column grant on a hash column is as bad as a table grant).
async fn table_rights(
    runtime: &Client,
    table: &str,
    privileges: &[&str],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut held = Vec::new();
    for privilege in privileges {
        let sql = if *privilege == "DELETE" {
            "SELECT has_table_privilege(current_user, $1, $2)"
        } else {
            "SELECT has_any_column_privilege(current_user, $1, $2)"
        };
        let row = runtime.query_one(sql, &[&table, privilege]).await?;
        if row.get::<_, bool>(0) {
            held.push((*privilege).to_owned());
        }
    }
    Ok(held)
}

/// `signature` is SECURITY DEFINER and callable by the sign-in login (palisade_signin) but not by
/// the connected (runtime) role.
async fn sign_in_function(runtime: &Client, signature: &str) -> Result<(), String> {
    let row = runtime
        .query_opt(
            "SELECT p.prosecdef, has_function_privilege(current_user, p.oid, 'EXECUTE'),
                    has_function_privilege('palisade_signin', p.oid, 'EXECUTE')
               FROM pg_proc p WHERE p.oid = to_regprocedure($1)",
            &[&signature],
        )
        .await
        .map_err(|err| format!("cannot read the catalog: {err}"))?;
    match row {
        None => Err(format!("{signature} is missing: is the schema migrated?")),
        Some(row) if !row.get::<_, bool>(0) => Err(format!("{signature} is not SECURITY DEFINER")),
        Some(row) if row.get::<_, bool>(1) => {
            Err(format!("the runtime role can call {signature} (only the sign-in login may)"))
        }
        Some(row) if !row.get::<_, bool>(2) => Err(format!("the sign-in login cannot call {signature}")),
        Some(_) => Ok(()),
    }
}

/// The function exists, runs as its owner (SECURITY DEFINER) and the connected role may call it.
async fn definer_function(runtime: &Client, signature: &str) -> Result<(), String> {
    let row = runtime
        .query_opt(
            "SELECT p.prosecdef, has_function_privilege(current_user, p.oid, 'EXECUTE')
               FROM pg_proc p WHERE p.oid = to_regprocedure($1)",
            &[&signature],
        )
        .await
        .map_err(|err| format!("cannot read the catalog: {err}"))?;
    match row {
        None => Err(format!("{signature} is missing: is the schema migrated?")),
        Some(row) if !row.get::<_, bool>(0) => Err(format!("{signature} is not SECURITY DEFINER")),
        Some(row) if !row.get::<_, bool>(1) => Err(format!("the runtime role cannot call {signature}")),
        Some(_) => Ok(()),
    }
}
