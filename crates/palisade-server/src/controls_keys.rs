//! Control checks of encryption at rest: E2 (records and secrets are envelopes under their own
//! organization's data keys, no sensitive field in clear), E3 (instance secrets sealed, API keys
//! only as keyed hashes), E4 (the key provider holds every wrapping key, rotation on time), E5
//! (no secret in clear in the database, the key files or the API).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use palisade_core::{DataKeyId, OrgId, RecordId, SecretId};
use palisade_store::catalog;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::{Config, KeyProviderKind};
use crate::controls::{CheckResult, Status, result};

const E2: &str = "AES-256 at rest for sensitive data and backups: envelope encryption, per-tenant data keys";
const E3: &str =
    "API keys, connector credentials, OAuth tokens, TOTP secrets encrypted with AES-256-GCM at application level";
const E4: &str =
    "Keys held by a KMS/HSM provider (local key file, PKCS#11); scheduled rotation (default yearly) and rewrap";
const E5: &str = "Secrets never in plaintext in the database, files or logs; write-only through the API";

/// Rows read per organization and table: the newest ones.
const SAMPLE_PER_ORG: i64 = 1000;
/// Problems listed in the evidence, at most.
const SHOWN: i64 = 20;

/// The data key of a value shaped as an envelope (`[0xE1][key id][nonce][ciphertext‖tag]`), else
/// NULL; `{v}` is the column.
const KEY_OF: &str = "CASE WHEN length({v}) >= 45 AND substring({v} FROM 1 FOR 1) = decode('e1', 'hex')
                        THEN palisade.envelope_key({v}) END";

fn key_of(column: &str) -> String {
    KEY_OF.replace("{v}", column)
}

fn fail(id: &'static str, control: &'static str, why: String) -> CheckResult {
    result(id, control, vec![why], String::new())
}

/// What is wrong with an envelope found in `org`: not an envelope, or under someone else's key.
fn misplaced(org: Uuid, what: String, key: Option<Uuid>, owner: Option<Uuid>) -> String {
    let org = OrgId::from_uuid(org);
    match (key, owner) {
        (None, _) => format!("{org}: {what} is not an envelope"),
        (Some(key), Some(owner)) => format!(
            "{org}: {what} is sealed under data key {} of {}",
            DataKeyId::from_uuid(key),
            OrgId::from_uuid(owner)
        ),
        (Some(key), None) => {
            format!("{org}: {what} is sealed under data key {}, which is no organization's", DataKeyId::from_uuid(key))
        }
    }
}

/// Needs the operator's connection: it reads every organization's records, secrets and keys.
pub async fn check_e2(admin: Option<&Client>) -> CheckResult {
    let Some(admin) = admin else {
        return CheckResult {
            id: "E2",
            control: E2,
            status: Status::Skip,
            evidence: "needs the admin connection".into(),
        };
    };
    match e2_problems(admin).await {
        Ok((problems, evidence)) => result("E2", E2, problems, evidence),
        Err(err) => fail("E2", E2, format!("cannot read the sealed values: {err}")),
    }
}

async fn e2_problems(admin: &Client) -> Result<(Vec<String>, String), tokio_postgres::Error> {
    let sampled = format!(
        "WITH sampled AS (
            SELECT 'record' AS kind, r.tenant_id, r.id, r.sealed, cardinality(r.sealed_fields) > 0 AS named,
                   ARRAY(SELECT p.key FROM palisade.collections c
                          CROSS JOIN LATERAL jsonb_each(CASE jsonb_typeof(c.schema -> 'properties')
                                                        WHEN 'object' THEN c.schema -> 'properties' ELSE '{{}}' END) p
                          WHERE c.tenant_id = r.tenant_id AND c.name = r.collection
                            AND p.value @> '{{\"x-palisade-sensitive\": true}}' AND r.data ? p.key ORDER BY 1) AS clear
              FROM palisade.orgs o
             CROSS JOIN LATERAL (SELECT * FROM palisade.records r WHERE r.tenant_id = o.tenant_id
                                  ORDER BY r.updated_at DESC LIMIT $1) r
            UNION ALL
            SELECT 'secret', s.tenant_id, s.id, s.sealed, true, '{{}}'
              FROM palisade.orgs o
             CROSS JOIN LATERAL (SELECT * FROM palisade.secrets s WHERE s.tenant_id = o.tenant_id
                                  ORDER BY s.updated_at DESC LIMIT $1) s
        ), judged AS (SELECT *, {} AS key_id FROM sampled)
        SELECT j.kind, j.tenant_id, j.id, j.sealed IS NOT NULL, j.named, j.key_id,
               (SELECT k.tenant_id FROM palisade.org_data_keys k WHERE k.id = j.key_id LIMIT 1), j.clear
          FROM judged j
         WHERE (j.sealed IS NOT NULL AND NOT EXISTS (SELECT 1 FROM palisade.org_data_keys k
                                                      WHERE k.tenant_id = j.tenant_id AND k.id = j.key_id))
            OR (j.sealed IS NOT NULL) <> j.named OR cardinality(j.clear) > 0
         LIMIT $2",
        key_of("sealed")
    );
    let mut problems = Vec::new();
    for row in admin.query(&sampled, &[&SAMPLE_PER_ORG, &SHOWN]).await? {
        let (kind, org, id, is_sealed, named): (&str, Uuid, Uuid, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let (key, owner, clear): (Option<Uuid>, Option<Uuid>, Vec<String>) = (row.get(5), row.get(6), row.get(7));
        let what = match kind {
            "record" => format!("record {}", RecordId::from_uuid(id)),
            _ => format!("secret {}", SecretId::from_uuid(id)),
        };
        if is_sealed && (key.is_none() || owner != Some(org)) {
            problems.push(misplaced(org, what.clone(), key, owner));
        }
        if is_sealed != named {
            problems.push(format!("{}: {what}: sealed_fields does not match sealed", OrgId::from_uuid(org)));
        }
        if !clear.is_empty() {
            let fields = clear.join(", ");
            problems
                .push(format!("{}: {what} holds sensitive field(s) {fields} in clear in data", OrgId::from_uuid(org)));
        }
    }
    // Each organization's data keys are wrapped by a wrapping key named for it, never shared.
    let mut holders: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    let keys = admin.query("SELECT tenant_id, id, wrapping_key FROM palisade.org_data_keys ORDER BY 1, 2", &[]).await?;
    for row in &keys {
        let (org, id, wrapping): (Uuid, Uuid, String) = (row.get(0), row.get(1), row.get(2));
        let prefix = format!("{}.v", OrgId::from_uuid(org));
        let named =
            wrapping.strip_prefix(&prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !named {
            problems.push(format!(
                "{}: data key {} is wrapped by {wrapping}, not by {prefix}<n>",
                OrgId::from_uuid(org),
                DataKeyId::from_uuid(id)
            ));
        }
        holders.entry(wrapping).or_default().insert(org);
    }
    for (wrapping, orgs) in holders.iter().filter(|(_, orgs)| orgs.len() > 1) {
        let orgs: Vec<String> = orgs.iter().map(|o| OrgId::from_uuid(*o).to_string()).collect();
        problems.push(format!("wrapping key {wrapping} is shared by {}", orgs.join(", ")));
    }
    let totals = admin
        .query_one(
            "SELECT (SELECT count(*) FROM palisade.orgs), (SELECT count(*) FROM palisade.records WHERE sealed IS NOT NULL),
                    (SELECT count(*) FROM palisade.secrets)",
            &[],
        )
        .await?;
    let (orgs, sealed, secrets): (i64, i64, i64) = (totals.get(0), totals.get(1), totals.get(2));
    let evidence = format!(
        "{orgs} organization(s): {sealed} sealed record(s) and {secrets} secret(s) (newest {SAMPLE_PER_ORG} per organization read) are envelopes under their own organization's data keys; no sensitive field in clear in data; {} data key(s), each wrapped by its organization's own wrapping key",
        keys.len()
    );
    Ok((problems, evidence))
}

/// Counts of one sealed column: (values, envelopes, under an instance data key, legacy
/// instance-key format `[1][nonce][ciphertext‖tag]`).
async fn instance_sealed(client: &Client, table: &str, column: &str) -> Result<[i64; 4], tokio_postgres::Error> {
    let sql = format!(
        "SELECT count(*), count(v.key_id),
                count(*) FILTER (WHERE EXISTS (SELECT 1 FROM palisade.instance_data_keys k WHERE k.id = v.key_id)),
                count(*) FILTER (WHERE v.key_id IS NULL AND length(v.sealed) >= 29
                                   AND substring(v.sealed FROM 1 FOR 1) = decode('01', 'hex'))
           FROM (SELECT t.{column} AS sealed, {} AS key_id FROM palisade.{table} t WHERE t.{column} IS NOT NULL) v",
        key_of(&format!("t.{column}"))
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok([row.get(0), row.get(1), row.get(2), row.get(3)])
}

/// The instance tables alone need no more than the runtime role; TOTP seeds, WebAuthn
/// credentials, API keys and secrets are only visible to the operator's connection.
pub async fn check_e3(runtime: &Client, admin: Option<&Client>) -> CheckResult {
    let (mut problems, mut counts, mut legacy) = (Vec::new(), Vec::new(), 0);
    let mut columns = vec![("signing keys", "signing_keys", "sealed_private", runtime)];
    if let Some(admin) = admin {
        columns.push(("TOTP seeds", "totp_factors", "secret_sealed", admin));
        columns.push(("WebAuthn credentials", "webauthn_credentials", "passkey_sealed", admin));
    }
    for (what, table, column, client) in columns {
        let [total, envelopes, instance, old] = match instance_sealed(client, table, column).await {
            Ok(found) => found,
            Err(err) => {
                problems.push(format!("cannot read {table}.{column}: {err}"));
                continue;
            }
        };
        if envelopes > instance {
            problems.push(format!("{what}: {} sealed under a key that is no instance data key", envelopes - instance));
        }
        if total - envelopes - old > 0 {
            let clear = total - envelopes - old;
            problems.push(format!("{what}: {clear} neither an envelope nor AES-256-GCM under the instance key"));
        }
        legacy += old;
        counts.push(format!("{what} {instance}"));
    }
    let runtime_view = runtime
        .query_one(
            "SELECT (SELECT array_agg(wrapping_key) FROM palisade.instance_data_keys WHERE wrapping_key !~ '^instance\\.v[0-9]+$'),
                    has_column_privilege(current_user, 'palisade.api_keys', 'secret_hash', 'SELECT')",
            &[],
        )
        .await;
    match runtime_view {
        Ok(row) => {
            for name in row.get::<_, Option<Vec<String>>>(0).unwrap_or_default() {
                problems.push(format!("an instance data key is wrapped by {name}, not by instance.v<n>"));
            }
            if row.get::<_, bool>(1) {
                problems.push("the server role may read API key hashes".into());
            }
        }
        Err(err) => problems.push(format!("cannot read instance data keys and privileges: {err}")),
    }
    let mut summary = format!("envelopes under an instance data key: {}", counts.join(", "));
    if legacy > 0 {
        summary.push_str(&format!(
            "; {legacy} legacy value(s) sealed before envelopes (AES-256-GCM under the older instance key)"
        ));
    }
    summary.push_str("; the server role cannot read API key hashes");
    let Some(admin) = admin else {
        summary.push_str(
            "; not checked without the admin connection: TOTP seeds, WebAuthn credentials, API key hashes, secrets",
        );
        return result("E3", E3, problems, summary);
    };
    let others = format!(
        "SELECT (SELECT count(*) FROM palisade.webauthn_credentials WHERE passkey IS NOT NULL), (SELECT count(*) FROM palisade.api_keys),
                (SELECT count(*) FROM palisade.api_keys
                  WHERE length(secret_hash) <> 32 OR substring(secret_hash FROM 1 FOR 4) = convert_to('pal_', 'UTF8')),
                (SELECT count(*) FROM palisade.secrets), (SELECT count(*) FROM palisade.secrets WHERE ({}) IS NULL)",
        key_of("sealed")
    );
    match admin.query_one(&others, &[]).await {
        Ok(row) => {
            let [clear, keys, bad_keys, secrets, bad_secrets]: [i64; 5] = std::array::from_fn(|i| row.get(i));
            for (n, what) in [
                (clear, "WebAuthn credential(s) still stored in clear (passkey column)"),
                (bad_keys, "API key(s) stored as something other than a 32-byte keyed hash"),
                (bad_secrets, "secret(s) not sealed as envelopes"),
            ] {
                if n > 0 {
                    problems.push(format!("{n} {what}"));
                }
            }
            summary.push_str(&format!(
                "; no WebAuthn credential in clear; {keys} API key(s) stored only as 32-byte keyed hashes; {secrets} secret(s) sealed as envelopes"
            ));
        }
        Err(err) => problems.push(format!("cannot read API keys, credentials and secrets: {err}")),
    }
    result("E3", E3, problems, summary)
}

/// Opens the configured provider (a local one only if its files exist: a check creates nothing)
/// and asks it for every wrapping key the database names; no active data key may be overdue.
/// The keys are read over the key jobs' login (`keys`), the only one that may see every
/// organization's; the runtime role must not be able to do that login's work.
pub async fn check_e4(runtime: &Client, keys: Option<&Client>, config: &Config) -> CheckResult {
    if config.key_provider == KeyProviderKind::Local
        && let Some(file) = [config.kek_file(), config.key_store_file()].into_iter().find(|f| !f.exists())
    {
        let why = format!("{} does not exist: nothing wrapped by the local provider opens", file.display());
        return fail("E4", E4, why);
    }
    let (mut problems, mut users) = (Vec::new(), BTreeMap::<String, BTreeSet<String>>::new());
    match catalog::key_job_problems(runtime).await {
        Ok(found) => problems.extend(found),
        Err(err) => problems.push(format!("cannot read the runtime role's privileges: {err}")),
    }
    let Some(keys) = keys else {
        if !problems.is_empty() {
            return result("E4", E4, problems, String::new());
        }
        let evidence = "the runtime role cannot do the key jobs' work; set PALISADE_DATABASE_KEYS_URL (the `_keys` login) to check every organization's data keys".into();
        return CheckResult { id: "E4", control: E4, status: Status::Skip, evidence };
    };
    let days = config.data_key_rotation_days.clamp(1, 3650) as i32;
    let (mut orgs, mut oldest) = (BTreeSet::new(), 0i64);
    let keys = keys
        .query(
            "SELECT o.tenant_id, k.wrapping_key, k.retired_at IS NULL, k.created_at < now() - make_interval(days => $1),
                    greatest(0, floor(extract(epoch FROM now() - k.created_at) / 86400))::bigint
               FROM palisade.orgs_with_keys() o CROSS JOIN LATERAL palisade.org_key_rows(o.tenant_id) k",
            &[&(days + 1)],
        )
        .await;
    match keys {
        Ok(keys) => {
            for key in keys {
                let (org, wrapping, active, overdue, age): (Uuid, String, bool, bool, i64) =
                    (key.get(0), key.get(1), key.get(2), key.get(3), key.get(4));
                let org = OrgId::from_uuid(org);
                if active && overdue {
                    problems
                        .push(format!("{org}: active data key is {age} days old, rotation is due every {days} days"));
                }
                oldest = if active { oldest.max(age) } else { oldest };
                orgs.insert(org.to_string());
                users.entry(wrapping).or_default().insert(org.to_string());
            }
        }
        Err(err) => problems.push(format!("cannot read the organizations' data keys: {err}")),
    }
    match runtime.query("SELECT wrapping_key FROM palisade.instance_data_keys", &[]).await {
        Ok(rows) => rows.iter().for_each(|r| _ = users.entry(r.get(0)).or_default().insert("the instance".into())),
        Err(err) => problems.push(format!("cannot read instance data keys: {err}")),
    }
    // Provider calls may block (file locks, an HSM round trip).
    let (owned, names) = (config.clone(), users.keys().cloned().collect::<Vec<_>>());
    let asked = tokio::task::spawn_blocking(move || {
        let provider = owned.key_provider()?;
        anyhow::Ok((provider.info(), names.into_iter().map(|n| (provider.has_key(&n), n)).collect::<Vec<_>>()))
    });
    let (info, answers) = match asked.await {
        Ok(Ok(asked)) => asked,
        Ok(Err(err)) => return fail("E4", E4, format!("the key provider does not open: {err:#}")),
        Err(err) => return fail("E4", E4, format!("the key provider does not open: {err}")),
    };
    for (answer, name) in answers {
        let whose = users[&name].iter().cloned().collect::<Vec<_>>().join(", ");
        match answer {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "wrapping key {name} of {whose} is not in the {} provider: data under it is unreadable",
                info.kind
            )),
            Err(err) => problems.push(format!("cannot ask the provider for {name} ({whose}): {err}")),
        }
    }
    let evidence = format!(
        "{} provider (master key {}) holds all {} wrapping key(s) of {} organization(s) and the instance; oldest active organization data key {oldest} days old (rotation every {days} days)",
        info.kind,
        info.master_key_id,
        users.len(),
        orgs.len()
    );
    result("E4", E4, problems, evidence)
}

/// Mode bits of `path`, if it exists.
fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// Fetches the published API description and looks for an operation that returns a secret.
async fn api_returns_secrets(url: &str, problems: &mut Vec<String>) {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let address = format!("{}/api/v1/openapi.json", url.trim_end_matches('/'));
    let doc: serde_json::Value = match client.get(&address).send().await {
        Ok(answer) if answer.status().is_success() => match answer.json().await {
            Ok(doc) => doc,
            Err(err) => return problems.push(format!("{address} is not JSON: {err}")),
        },
        Ok(answer) => return problems.push(format!("{address} answered {}", answer.status())),
        Err(err) => return problems.push(format!("cannot reach {address}: {err}")),
    };
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    if !paths.contains_key("/api/v1/orgs/{org}/secrets") {
        problems.push("the API description lists no secrets endpoint: cannot tell what it returns".into());
    }
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/api/v1/orgs/{org}/secrets/")) {
        if item.get("get").is_some() {
            problems.push(format!("GET {path} exists: an operation reads a single secret"));
        }
    }
    match doc["components"]["schemas"].get("SecretResponse") {
        None => problems.push("the API description has no SecretResponse schema".into()),
        Some(schema) if schema["properties"].get("value").is_some() => {
            problems.push("the SecretResponse schema has a value property".into())
        }
        Some(_) => {}
    }
}

pub async fn check_e5(runtime: &Client, admin: Option<&Client>, url: Option<&str>, config: &Config) -> CheckResult {
    let (mut problems, mut evidence) = (Vec::new(), Vec::new());
    // The database keeps both sealed columns envelopes; the operator's connection reads every secret too.
    let unguarded = runtime
        .query(
            "SELECT t FROM unnest(ARRAY['secrets', 'records']) t
              WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = ('palisade.' || t)::regclass
                                   AND k.contype = 'c' AND pg_get_constraintdef(k.oid) LIKE '%get_byte(sealed, 0) = 225%')",
            &[],
        )
        .await;
    match unguarded {
        Ok(rows) => rows.iter().for_each(|r| {
            problems.push(format!("{}.sealed has no CHECK that keeps it an envelope", r.get::<_, String>(0)))
        }),
        Err(err) => problems.push(format!("cannot read the catalog: {err}")),
    }
    if let Some(admin) = admin {
        let sql =
            format!("SELECT count(*), count(*) FILTER (WHERE ({}) IS NULL) FROM palisade.secrets", key_of("sealed"));
        match admin.query_one(&sql, &[]).await {
            Ok(row) if row.get::<_, i64>(1) > 0 => {
                problems.push(format!("{} secret(s) stored in clear (not an envelope)", row.get::<_, i64>(1)))
            }
            Ok(row) => evidence.push(format!("{} secret(s), every one an envelope", row.get::<_, i64>(0))),
            Err(err) => problems.push(format!("cannot read secrets: {err}")),
        }
    } else {
        evidence.push(
            "secrets.sealed and records.sealed constrained to envelopes (rows read with the admin connection only)"
                .into(),
        );
    }
    let mut private = vec![config.instance_key_file.clone().unwrap_or_else(|| config.data_dir.join("instance.key"))];
    if config.key_provider == KeyProviderKind::Local {
        for file in [config.kek_file(), config.key_store_file()] {
            if !file.exists() {
                problems.push(format!("{} does not exist", file.display()));
            }
            private.push(file);
        }
    }
    private.retain(|f| f.exists());
    for file in &private {
        if let Some(m) = mode(file).filter(|m| m & 0o077 != 0) {
            problems.push(format!("{} is mode {m:o}: other users may read it (chmod 600)", file.display()));
        }
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Some(m) = mode(dir).filter(|m| m & 0o002 != 0) {
            problems.push(format!("{} is mode {m:o}: anyone may replace {} in it", dir.display(), file.display()));
        }
    }
    let files: Vec<String> = private.iter().map(|f| f.display().to_string()).collect();
    evidence.push(format!("{} readable by their owner only, in directories no other user may write", files.join(", ")));
    match mode(&config.data_dir) {
        Some(m) if m & 0o077 != 0 => {
            problems.push(format!("data directory {} is mode {m:o}, not 700", config.data_dir.display()))
        }
        Some(_) => evidence.push(format!("data directory {} mode 700", config.data_dir.display())),
        None => evidence.push(format!("no data directory at {}", config.data_dir.display())),
    }
    match url {
        Some(url) => {
            api_returns_secrets(url, &mut problems).await;
            evidence.push(
                "live API: no operation returns a secret's value (no GET of one secret, SecretResponse has no value)"
                    .into(),
            );
        }
        None => evidence.push("live API not checked (needs --url)".into()),
    }
    result("E5", E5, problems, evidence.join("; "))
}
