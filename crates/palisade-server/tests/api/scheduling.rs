//! CPU scheduling: a server in a session of its own lowers its scheduling group (autogroup) while
//! it hashes passwords, so a sign-in flood yields to the database's backends, and raises it again
//! once the flood is over; one sharing its session leaves the group alone.

use palisade_testkit::TestApp;

use crate::support::Server;

/// The `nice N` of a process's autogroup, or None where the kernel has none.
fn autogroup_nice(pid: &str) -> Option<i32> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/autogroup")).ok()?;
    line.trim().rsplit(' ').next()?.parse().ok()
}

/// Polls the group's nice for up to 15 s until it is `want`; what it was last.
async fn wait_for_nice(pid: &str, want: i32) -> Option<i32> {
    let mut seen = None;
    for _ in 0..150 {
        seen = autogroup_nice(pid);
        if seen == Some(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    seen
}

/// Wrong passwords for an unknown address, `n` at once: each one a (dummy) hash.
async fn failed_sign_ins(base: &str, n: usize) {
    let attempts = (0..n).map(|i| {
        crate::support::call(
            base,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"email": format!("nobody{i}@example.com"), "password": "wrong-password-123"})),
        )
    });
    for (status, _) in futures::future::join_all(attempts).await {
        assert_eq!(status, 401);
    }
}

#[tokio::test]
async fn a_server_leading_its_own_session_lowers_its_scheduling_group_while_it_hashes_and_one_sharing_a_session_does_not()
 {
    let Some(ours) = autogroup_nice("self") else {
        eprintln!("SKIP: this kernel has no autogroup (/proc/self/autogroup); nice values already rank every thread");
        return;
    };
    let app = TestApp::spawn().await;
    let (dsn, signin) = (app.db.runtime_dsn(), app.db.signin_dsn());
    let keys = app.key_envs();
    let mut envs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.push(("PALISADE_DATABASE_URL", &dsn));
    envs.push(("PALISADE_DATABASE_SIGNIN_URL", &signin));
    envs.push(("PALISADE_RATE_LIMITS", "off"));

    let own = Server::start_in_own_session(&envs);
    let pid = own.child.id().to_string();
    let leader = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(own.child.id() as i32))).unwrap();
    assert_eq!(leader.as_raw().to_string(), pid, "the child leads its session");
    assert_eq!(autogroup_nice(&pid), Some(0), "a quiet server keeps its full share: {}", own.output());
    // Sign-ins keep the hash pool busy until the group is lowered (a tick is 200 ms).
    let base = own.base_url.clone();
    let flood = tokio::spawn(async move {
        loop {
            failed_sign_ins(&base, 8).await;
        }
    });
    let during = wait_for_nice(&pid, palisade_auth::hash_pool::HASH_NICE).await;
    flood.abort();
    assert_eq!(during, Some(palisade_auth::hash_pool::HASH_NICE), "lowered while hashing: {}", own.output());
    // A second after the last hash it is back.
    assert_eq!(wait_for_nice(&pid, 0).await, Some(0), "back at nice 0 once quiet: {}", own.output());

    // Started from this test's session (as from a terminal): the group is shared, left as it is.
    let shared = Server::start(&envs);
    failed_sign_ins(&shared.base_url, 8).await;
    assert_eq!(autogroup_nice(&shared.child.id().to_string()), Some(ours));
    assert_eq!(autogroup_nice("self"), Some(ours), "the test's own session was not lowered");
}
