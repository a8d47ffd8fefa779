//! Control checks of the edge, against a running server (`--url`) and the configuration: E1
//! (TLS 1.2+ only, a certificate valid now and for the host, HSTS; the database and Redis reached
//! over TLS unless on this machine), P1 (request budgets on and no looser than the catalog's
//! tiers, headers on answers), P4 (security headers on every kind of answer, body size limit).

use std::process::{Command, Stdio};

use secrecy::ExposeSecret;

use crate::config::{RateLimits, Switch};
use crate::controls::{CheckResult, Status, result};

const E1: &str = "TLS 1.2+ only (1.3 preferred), HSTS, modern ciphers";
const P1: &str =
    "Tiered rate limits per minute (anonymous 10, standard 100, professional 500, enterprise 2000), headers, 429";
const P4: &str = "Security headers on every response; body size and time limits; safe behind a reverse proxy";

/// The catalog's budgets: a configuration may be stricter, never looser.
const CATALOG_TIERS: [(&str, u32); 4] =
    [("anonymous", 10), ("standard", 100), ("professional", 500), ("enterprise", 2000)];

/// E1 for the links to the database and Redis, added to the listener's result: a connection to
/// another machine must be TLS (for the database: what the runtime connection of this check run
/// negotiated, from `pg_stat_ssl`; for Redis: what `redis_url` asks for).
pub async fn add_network_links(
    mut e1: CheckResult,
    runtime: &tokio_postgres::Client,
    config: &crate::config::Config,
) -> CheckResult {
    let negotiated = runtime
        .query_opt("SELECT ssl, coalesce(version, '') FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .ok()
        .flatten()
        .map(|row| (row.get::<_, bool>(0), row.get::<_, String>(1)));
    let redis = config.redis_url.as_ref().map(|url| palisade_api::rate_limit::judge_redis_link(url.expose_secret()));
    // The other logins' URLs too (the runtime one is judged by what it negotiated).
    let plaintext = crate::database::configured_urls(config)
        .into_iter()
        .filter(|(what, _)| *what != "PALISADE_DATABASE_URL")
        .filter_map(|(what, url)| crate::database::plaintext_to_another_machine(&url, what))
        .map(Err);
    let links =
        std::iter::once(database_transport(config.database_is_local(), negotiated)).chain(plaintext).chain(redis);
    for link in links {
        match link {
            Ok(evidence) => e1.evidence = format!("{}; {evidence}", e1.evidence),
            Err(problem) if e1.status == Status::Fail => e1.evidence = format!("{}; {problem}", e1.evidence),
            Err(problem) => {
                e1.status = Status::Fail;
                e1.evidence = problem;
            }
        }
    }
    e1
}

/// Judges the database link: `negotiated` is (TLS in use, its version) for the runtime connection.
fn database_transport(local: bool, negotiated: Option<(bool, String)>) -> Result<String, String> {
    match negotiated {
        Some((true, version)) => Ok(format!("database connection over {version}, certificate verified")),
        Some((false, _)) if local => Ok("database on this machine (Unix socket or loopback): no TLS needed".into()),
        Some((false, _)) => Err("the database connection reaches another machine without TLS (sslmode=disable in \
                                 PALISADE_DATABASE_URL): remove it, and set PALISADE_DATABASE_CA_FILE if its CA is private"
            .into()),
        None => Err("cannot tell how the database connection is protected (pg_stat_ssl unreadable)".into()),
    }
}

fn skip(id: &'static str, control: &'static str) -> CheckResult {
    CheckResult { id, control, status: Status::Skip, evidence: "needs --url of a running server".into() }
}

/// A client for probing: certificates are judged by E1 itself, not by this client.
pub(crate) fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// `host:port` of an https URL.
fn authority(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_matches(|c| c == '[' || c == ']').to_owned();
    let port = parsed.port_or_known_default()?;
    let connect = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Some((connect, host))
}

/// `openssl s_client` offering exactly one protocol version (at security level 0, so a refusal
/// comes from the server, not from Debian's client defaults): the certificate PEM when a
/// handshake completed.
fn handshake(connect: &str, host: &str, version_flag: &str) -> Result<Option<String>, String> {
    let output = Command::new("openssl")
        .args(["s_client", "-connect", connect, "-servername", host, version_flag, "-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run openssl ({err}): install it (apt-get install openssl) to probe TLS"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let completed = output.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
    Ok(completed.then(|| {
        let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
        let end = text.find("-----END CERTIFICATE-----").map_or(text.len(), |e| e + "-----END CERTIFICATE-----".len());
        text[start..end].to_owned()
    }))
}

/// Runs `openssl x509` with `args` over a certificate PEM: (success, output).
fn x509(pem: &str, args: &[&str]) -> (bool, String) {
    use std::io::Write;
    let child = Command::new("openssl").arg("x509").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let Ok(mut child) = child else { return (false, "cannot run openssl".into()) };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(pem.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        Err(err) => (false, err.to_string()),
    }
}

pub async fn check_e1(url: Option<&str>) -> CheckResult {
    let Some(url) = url else { return skip("E1", E1) };
    if !url.starts_with("https://") {
        return result(
            "E1",
            E1,
            vec![format!("{url} is not an https URL: the listener must speak TLS")],
            String::new(),
        );
    }
    let Some((connect, host)) = authority(url) else {
        return result("E1", E1, vec![format!("{url} has no host")], String::new());
    };
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    for (flag, name) in [("-ssl3", "SSL 3"), ("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")] {
        match handshake(&connect, &host, flag) {
            Ok(Some(_)) => problems.push(format!("{connect} accepts {name}")),
            Ok(None) => {}
            Err(why) => return result("E1", E1, vec![why], String::new()),
        }
    }
    let certificate = match handshake(&connect, &host, "-tls1_2") {
        Ok(Some(pem)) => Some(pem),
        Ok(None) => {
            problems.push(format!("{connect} completes no TLS 1.2 handshake: cannot tell what it accepts"));
            None
        }
        Err(why) => return result("E1", E1, vec![why], String::new()),
    };
    if matches!(handshake(&connect, &host, "-tls1_3"), Ok(Some(_))) {
        evidence.push("TLS 1.3 and 1.2 accepted, 1.1/1.0/SSL 3 refused".to_owned());
    } else {
        evidence.push("TLS 1.2 accepted (no 1.3), 1.1/1.0/SSL 3 refused".to_owned());
    }
    if let Some(pem) = certificate {
        let (current, end) = x509(&pem, &["-noout", "-enddate", "-checkend", "0"]);
        if !current {
            problems.push(format!("the certificate has expired ({end})"));
        }
        let (_, matches) = x509(&pem, &["-noout", "-checkhost", &host]);
        if !matches.contains("does match") {
            problems.push(format!("the certificate does not name {host} ({matches})"));
        }
        let (_, issuer) = x509(&pem, &["-noout", "-issuer", "-subject"]);
        let self_signed = issuer.lines().map(|l| l.split_once('=').map_or("", |(_, v)| v.trim())).collect::<Vec<_>>();
        evidence.push(format!(
            "certificate for {host}, {}{}",
            end.trim_start_matches("notAfter=").to_owned().replace('\n', " "),
            if self_signed.len() == 2 && self_signed[0] == self_signed[1] {
                " (self-signed: fine on localhost, replace it for production)"
            } else {
                ""
            }
        ));
    }
    match probe_client().get(format!("{}/healthz", url.trim_end_matches('/'))).send().await {
        Ok(answer) => match answer.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()) {
            Some(hsts) if hsts.contains("max-age=") && !hsts.contains("max-age=0") => {
                evidence.push(format!("HSTS {hsts}"))
            }
            other => problems.push(format!("no usable Strict-Transport-Security header ({other:?})")),
        },
        Err(err) => problems.push(format!("cannot reach {url}: {err}")),
    }
    result("E1", E1, problems, evidence.join("; "))
}

pub async fn check_p1(limits: &RateLimits, url: Option<&str>) -> CheckResult {
    let mut problems = Vec::new();
    if limits.mode == Switch::Off {
        problems.push("rate limits are off (PALISADE_RATE_LIMITS=off / [rate_limits] mode)".to_owned());
    }
    let configured = [limits.anonymous, limits.standard, limits.professional, limits.enterprise];
    for ((tier, catalog), value) in CATALOG_TIERS.iter().zip(configured) {
        if value > *catalog {
            problems.push(format!("{tier} allows {value} a minute, more than the catalog's {catalog}"));
        }
    }
    if limits.auth > limits.anonymous {
        problems.push(format!(
            "credential routes allow {} a minute, more than anonymous callers ({})",
            limits.auth, limits.anonymous
        ));
    }
    let mut evidence = format!(
        "per minute: anonymous {}, standard {}, professional {}, enterprise {}, credential routes {}",
        limits.anonymous, limits.standard, limits.professional, limits.enterprise, limits.auth
    );
    if let Some(url) = url {
        match probe_client().get(format!("{}/api/v1/me", url.trim_end_matches('/'))).send().await {
            Ok(answer) => match answer.headers().get("ratelimit-policy").and_then(|v| v.to_str().ok()) {
                Some(policy) => evidence.push_str(&format!("; live: RateLimit-Policy {policy}")),
                None => problems.push(format!("{url}: an anonymous answer carries no RateLimit-Policy header")),
            },
            Err(err) => problems.push(format!("cannot reach {url}: {err}")),
        }
    }
    result("P1", P1, problems, evidence)
}

/// Headers every answer must carry (HSTS only over https).
const REQUIRED_HEADERS: [(&str, Option<&str>); 6] = [
    ("content-security-policy", Some("frame-ancestors 'none'")),
    ("x-content-type-options", Some("nosniff")),
    ("referrer-policy", None),
    ("permissions-policy", None),
    ("cross-origin-opener-policy", None),
    ("cross-origin-resource-policy", None),
];

/// Sends `request`, up to three times if the connection fails. A server that refuses an
/// oversized body answers 413 and closes before the client has finished sending it; the client
/// may then see a broken connection instead of the answer, which is a race, not a failed
/// control. An unreachable server still fails all three.
async fn send_with_retries(request: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
    for _ in 1..3 {
        let Some(attempt) = request.try_clone() else { break };
        if let Ok(answer) = attempt.send().await {
            return Ok(answer);
        }
    }
    request.send().await
}

pub async fn check_p4(url: Option<&str>) -> CheckResult {
    let Some(url) = url else { return skip("P4", P4) };
    let base = url.trim_end_matches('/');
    let client = probe_client();
    let probes = [
        ("GET /healthz", client.get(format!("{base}/healthz"))),
        ("GET unknown path (404)", client.get(format!("{base}/no-such-path"))),
        (
            "POST malformed JSON (400)",
            client.post(format!("{base}/api/v1/auth/signup")).header("content-type", "application/json").body("{"),
        ),
        (
            "POST 2 MiB body (413)",
            client.post(format!("{base}/api/v1/auth/signup")).header("content-type", "application/json").body(vec![
                b' ';
                2 * 1024
                    * 1024
            ]),
        ),
    ];
    let mut problems = Vec::new();
    for (name, request) in probes {
        let answer = match send_with_retries(request).await {
            Ok(answer) => answer,
            Err(err) => {
                problems.push(format!("{name}: cannot reach {url}: {err}"));
                continue;
            }
        };
        let headers = answer.headers();
        for (header, must_contain) in REQUIRED_HEADERS {
            match (headers.get(header).and_then(|v| v.to_str().ok()), must_contain) {
                (None, _) => problems.push(format!("{name}: no {header}")),
                (Some(value), Some(part)) if !value.contains(part) => {
                    problems.push(format!("{name}: {header} is {value:?}, lacks {part:?}"))
                }
                _ => {}
            }
        }
        if url.starts_with("https://") && !headers.contains_key("strict-transport-security") {
            problems.push(format!("{name}: no strict-transport-security"));
        }
        if name.contains("413") && answer.status().as_u16() != 413 {
            problems.push(format!("{name}: answered {} instead of 413", answer.status()));
        }
    }
    result(
        "P4",
        P4,
        problems,
        "CSP, nosniff, Referrer-Policy, Permissions-Policy, COOP, CORP (and HSTS over https) on success, 404, 400 and 413 answers; bodies over 1 MiB refused".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::database_transport;

    #[test]
    fn a_database_on_another_machine_must_be_reached_over_tls() {
        assert!(database_transport(false, Some((true, "TLSv1.3".into()))).unwrap().contains("TLSv1.3"));
        assert!(database_transport(true, Some((false, String::new()))).unwrap().contains("this machine"));
        assert!(database_transport(false, Some((false, String::new()))).unwrap_err().contains("without TLS"));
        assert!(database_transport(false, None).is_err(), "unknown is not a pass");
    }
}
