//! CPU scheduling: a server in a session of its own lowers its scheduling group (autogroup) so a
//! sign-in flood's hashing yields to the database's backends; one sharing its session does not.

use palisade_testkit::TestApp;

use crate::support::Server;

/// The `nice N` of a process's autogroup, or None where the kernel has none.
fn autogroup_nice(pid: &str) -> Option<i32> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/autogroup")).ok()?;
    line.trim().rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn a_server_leading_its_own_session_lowers_its_scheduling_group_and_one_sharing_a_session_does_not() {
    let Some(ours) = autogroup_nice("self") else {
        eprintln!("SKIP: this kernel has no autogroup (/proc/self/autogroup); nice values already rank every thread");
        return;
    };
    let app = TestApp::spawn().await;
    let dsn = app.db.runtime_dsn();
    let keys = app.key_envs();
    let mut envs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.push(("PALISADE_DATABASE_URL", &dsn));

    let own = Server::start_in_own_session(&envs);
    let pid = own.child.id().to_string();
    assert_eq!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(own.child.id() as i32))).unwrap().as_raw(),
        own.child.id() as i32
    );
    assert_eq!(
        autogroup_nice(&pid),
        Some(palisade_auth::hash_pool::HASH_NICE),
        "the server's own group runs at the hashing threads' nice: {}",
        own.output()
    );

    // Started from this test's session (as from a terminal): the group is shared, left as it is.
    let shared = Server::start(&envs);
    assert_eq!(autogroup_nice(&shared.child.id().to_string()), Some(ours));
    assert_eq!(autogroup_nice("self"), Some(ours), "the test's own session was not lowered");
}
