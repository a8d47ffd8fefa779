//! Rate limits shared through a real Redis by two `palisade serve` processes, and what nodes do
//! when Redis goes away (fall back to local budgets and alert, or refuse when told to).

use palisade_testkit::{RedisServer, TestApp};

use crate::support::{Server, call};

fn node(app: &TestApp, redis: &str, extra: &[(&str, &str)]) -> Server {
    let (dsn, signin) = (app.db.runtime_dsn(), app.db.signin_dsn());
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let mut envs = vec![
        ("PALISADE_DATABASE_URL", dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin.as_str()),
        ("PALISADE_INSTANCE_KEY_FILE", key_file.as_str()),
        ("PALISADE_KEK_FILE", kek_file.as_str()),
        ("PALISADE_KEY_STORE_FILE", store_file.as_str()),
        ("PALISADE_REDIS_URL", redis),
        ("PALISADE_RATE_LIMITS__ANONYMOUS", "10"),
    ];
    envs.extend_from_slice(extra);
    Server::start(&envs)
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
