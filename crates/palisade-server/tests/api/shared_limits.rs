//! Rate limits shared through a real Redis by two `palisade serve` processes, and what nodes do
//! when Redis goes away (fall back to local budgets and alert, or refuse when told to); Redis
//! over TLS (`rediss://`), verified.

use palisade_testkit::{RedisServer, TestApp};

use crate::support::{Server, call, certificate_authority, command, refused_start, scratch_dir, server_certificate};

/// What a node sharing `redis` needs: the test's database, keys, and an anonymous budget of 10.
fn node_envs(app: &TestApp, redis: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PALISADE_DATABASE_URL", app.db.runtime_dsn()),
        ("PALISADE_DATABASE_SIGNIN_URL", app.db.signin_dsn()),
        ("PALISADE_INSTANCE_KEY_FILE", app.instance_key_file.display().to_string()),
        ("PALISADE_KEK_FILE", app.key_envs()[1].1.clone()),
        ("PALISADE_KEY_STORE_FILE", app.key_envs()[2].1.clone()),
        ("PALISADE_REDIS_URL", redis.to_owned()),
        ("PALISADE_RATE_LIMITS__ANONYMOUS", "10".to_owned()),
    ]
}

fn node(app: &TestApp, redis: &str, extra: &[(&str, &str)]) -> Server {
    let envs = node_envs(app, redis);
    let mut refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    refs.extend_from_slice(extra);
    Server::start(&refs)
}

/// Sends `n` anonymous requests, alternating between the nodes; the statuses in order.
async fn alternate(nodes: &[&Server], n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        statuses.push(call(&nodes[i % nodes.len()].base_url, "GET", "/api/v1/me", None, None).await.0);
    }
    statuses
}

#[tokio::test]
async fn two_nodes_sharing_redis_never_allow_more_than_one_budget_together() {
    let app = TestApp::spawn().await;
    let mut redis = RedisServer::start();
    let (a, b) = (node(&app, &redis.url(), &[]), node(&app, &redis.url(), &[]));

    let statuses = alternate(&[&a, &b], 40).await;
    let allowed = statuses.iter().filter(|s| **s != 429).count();
    // The budget is 10 with all of it as burst; a request comes back every 6 s, and this takes
    // far less, so together the nodes allow 10 (11 if a refill lands): never the 20 two
    // separate counts would.
    assert!((10..=11).contains(&allowed), "allowed {allowed}: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s == 401), "the first ten go through: {statuses:?}");

    // Redis goes away: each node counts alone again (fresh local budgets) and raises an alert.
    redis.kill();
    let statuses = alternate(&[&a, &b], 30).await;
    let allowed = statuses.iter().filter(|s| **s != 429).count();
    assert!((20..=22).contains(&allowed), "local budgets of 10 per node: {allowed}: {statuses:?}");
    for server in [&a, &b] {
        assert!(server.output().contains("rate_limit_store_unreachable"), "an alert is logged: {}", server.output());
    }
}

#[tokio::test]
async fn a_node_told_to_fail_closed_refuses_while_redis_is_unreachable() {
    let app = TestApp::spawn().await;
    let mut redis = RedisServer::start();
    let closed = node(&app, &redis.url(), &[("PALISADE_RATE_LIMITS__ON_REDIS_FAILURE", "closed")]);
    assert_eq!(call(&closed.base_url, "GET", "/api/v1/me", None, None).await.0, 401);
    redis.kill();
    let (status, body) = call(&closed.base_url, "GET", "/api/v1/me", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "/problems/unavailable");
    // Probes stay exempt, so an orchestrator does not restart healthy nodes over Redis.
    assert_eq!(call(&closed.base_url, "GET", "/healthz", None, None).await.0, 200);
}

#[tokio::test]
async fn nodes_share_budgets_over_verified_tls_and_never_trust_a_redis_they_cannot_verify() {
    let app = TestApp::spawn().await;
    let dir = scratch_dir("redis-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, ca_file) = certificate_authority(&dir, "redis-ca");
    let (certificate, key) = server_certificate(&ca, "127.0.0.1");
    let (cert_file, key_file) = (dir.join("redis.crt"), dir.join("redis.key"));
    std::fs::write(&cert_file, certificate).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let redis = RedisServer::start_tls(&cert_file, &key_file, &ca_file);
    let ca_text = ca_file.display().to_string();

    // Trusting the CA: two nodes share one budget through the TLS connection.
    let trusting = [("PALISADE_REDIS_CA_FILE", ca_text.as_str())];
    let (a, b) = (node(&app, &redis.url(), &trusting), node(&app, &redis.url(), &trusting));
    let statuses = alternate(&[&a, &b], 30).await;
    let allowed = statuses.iter().filter(|s| **s != 429).count();
    assert!((10..=11).contains(&allowed), "one shared budget: allowed {allowed}: {statuses:?}");
    assert!(!a.output().contains("rate_limit_store_unreachable"), "{}", a.output());
    // `controls check` reports the link under E1.
    let mut envs = node_envs(&app, &redis.url());
    envs.push(("PALISADE_REDIS_CA_FILE", ca_text.clone()));
    let refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let check = command(&refs).args(["controls", "check", "--json"]).output().unwrap();
    let results: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let e1 = results.as_array().unwrap().iter().find(|r| r["id"] == "E1").unwrap();
    assert!(e1["evidence"].as_str().unwrap().contains("Redis at 127.0.0.1 over TLS"), "{e1}");

    // Not trusting it (the system's CAs): Redis is unreachable for this node, which refuses
    // (told to fail closed) and says why.
    let untrusting = node(&app, &redis.url(), &[("PALISADE_RATE_LIMITS__ON_REDIS_FAILURE", "closed")]);
    let (status, body) = call(&untrusting.base_url, "GET", "/api/v1/me", None, None).await;
    assert_eq!(status, 503, "{body}");
    // The reason is logged as the request fails; its line may reach the captured output a moment
    // after the answer does.
    for _ in 0..100 {
        if untrusting.output().contains("UnknownIssuer") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(untrusting.output().contains("UnknownIssuer"), "{}", untrusting.output());

    // Certificate checks cannot be turned off, and a CA file needs a TLS URL: both stop the start.
    let mut insecure = node_envs(&app, &format!("{}/#insecure", redis.url()));
    insecure.push(("PALISADE_REDIS_CA_FILE", ca_text.clone()));
    let refs: Vec<(&str, &str)> = insecure.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = refused_start(&refs, &scratch_dir("redis-insecure"));
    assert!(output.contains("#insecure"), "{output}");
    let mut plain = node_envs(&app, "redis://127.0.0.1:1");
    plain.push(("PALISADE_REDIS_CA_FILE", ca_text));
    let refs: Vec<(&str, &str)> = plain.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = refused_start(&refs, &scratch_dir("redis-plain-ca"));
    assert!(output.contains("not a rediss://"), "{output}");
}
