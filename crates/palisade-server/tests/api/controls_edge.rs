//! `palisade controls check` for the edge: E1 (TLS), P1 (request budgets), P4 (headers and
//! limits) pass against the real server and fail when each is broken.

use palisade_server::config::{RateLimits, Switch};
use palisade_server::controls::Status;
use palisade_server::controls_edge::{check_e1, check_p1, check_p4};
use palisade_testkit::TestApp;

use crate::support::{Server, scratch_dir};

#[tokio::test]
async fn e1_p1_and_p4_pass_against_the_real_server() {
    let app = TestApp::spawn().await;
    let (dsn, signin) = (app.db.runtime_dsn(), app.db.signin_dsn());
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let server = Server::start_tls(&[
        ("PALISADE_DATABASE_URL", dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin.as_str()),
        ("PALISADE_INSTANCE_KEY_FILE", key_file.as_str()),
        ("PALISADE_KEK_FILE", kek_file.as_str()),
        ("PALISADE_KEY_STORE_FILE", store_file.as_str()),
    ]);
    // The self-signed certificate names localhost.
    let url = server.base_url.replace("127.0.0.1", "localhost");
    let e1 = check_e1(Some(&url)).await;
    assert_eq!(e1.status, Status::Pass, "{e1:?}");
    assert!(e1.evidence.contains("1.1/1.0/SSL 3 refused") && e1.evidence.contains("self-signed"), "{e1:?}");
    let p4 = check_p4(Some(&url)).await;
    assert_eq!(p4.status, Status::Pass, "{p4:?}");
    let p1 = check_p1(&RateLimits::default(), Some(&url)).await;
    assert_eq!(p1.status, Status::Pass, "{p1:?}");
    assert!(p1.evidence.contains("RateLimit-Policy \"anonymous\";q=10;w=60"), "{p1:?}");
}

#[tokio::test]
async fn e1_fails_for_plain_http_a_listener_that_accepts_tls_1_1_and_a_wrong_certificate() {
    let app = TestApp::spawn().await;
    let plain = check_e1(Some(&app.base_url)).await;
    assert_eq!(plain.status, Status::Fail);
    assert!(plain.evidence.contains("not an https URL"), "{plain:?}");

    // A listener that still speaks TLS 1.1 (OpenSSL's own test server, told to).
    let dir = scratch_dir("tls11");
    std::fs::create_dir_all(&dir).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut old_tls = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ])
        .arg("-cert")
        .arg(dir.join("c.pem"))
        .arg("-key")
        .arg(dir.join("k.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "openssl s_server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e1 = check_e1(Some(&format!("https://localhost:{port}"))).await;
    let _ = old_tls.kill();
    let _ = old_tls.wait();
    assert_eq!(e1.status, Status::Fail, "{e1:?}");
    assert!(e1.evidence.contains("accepts TLS 1.1"), "{e1:?}");

    // Our own server with a certificate for another name, reached as localhost.
    let mut params = rcgen::CertificateParams::new(vec!["elsewhere.example".to_owned()]).unwrap();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("other.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("other.key"), key.serialize_pem()).unwrap();
    let cert_file = dir.join("other.crt").display().to_string();
    let key_path = dir.join("other.key").display().to_string();
    let (dsn, signin) = (app.db.runtime_dsn(), app.db.signin_dsn());
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let server = Server::start_tls(&[
        ("PALISADE_DATABASE_URL", dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin.as_str()),
        ("PALISADE_INSTANCE_KEY_FILE", key_file.as_str()),
        ("PALISADE_KEK_FILE", kek_file.as_str()),
        ("PALISADE_KEY_STORE_FILE", store_file.as_str()),
        ("PALISADE_TLS_CERT_FILE", cert_file.as_str()),
        ("PALISADE_TLS_KEY_FILE", key_path.as_str()),
    ]);
    let e1 = check_e1(Some(&server.base_url.replace("127.0.0.1", "localhost"))).await;
    assert_eq!(e1.status, Status::Fail, "{e1:?}");
    assert!(e1.evidence.contains("does not name localhost"), "{e1:?}");
}

#[tokio::test]
async fn p1_fails_when_limits_are_off_or_looser_than_the_catalog() {
    let off = check_p1(&RateLimits::off(), None).await;
    assert_eq!(off.status, Status::Fail);
    assert!(off.evidence.contains("rate limits are off"), "{off:?}");
    let loose = check_p1(&RateLimits { standard: 5000, ..RateLimits::default() }, None).await;
    assert_eq!(loose.status, Status::Fail);
    assert!(loose.evidence.contains("standard allows 5000"), "{loose:?}");
    let stricter = check_p1(&RateLimits { enterprise: 1000, mode: Switch::On, ..RateLimits::default() }, None).await;
    assert_eq!(stricter.status, Status::Pass, "{stricter:?}");
    // A live server with limits off shows no budget headers.
    let app = TestApp::spawn().await;
    let live = check_p1(&RateLimits::default(), Some(&app.base_url)).await;
    assert_eq!(live.status, Status::Fail);
    assert!(live.evidence.contains("no RateLimit-Policy"), "{live:?}");
}

#[tokio::test]
async fn p4_fails_behind_a_proxy_that_strips_security_headers() {
    // Something answering without our headers: what a misconfigured proxy in front would do.
    let bare = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, bare).await.unwrap() });
    let p4 = check_p4(Some(&format!("http://{addr}"))).await;
    assert_eq!(p4.status, Status::Fail);
    assert!(p4.evidence.contains("no content-security-policy"), "{p4:?}");
    assert!(p4.evidence.contains("instead of 413"), "{p4:?}");
    // The real thing passes over plain HTTP too.
    let app = TestApp::spawn().await;
    let ours = check_p4(Some(&app.base_url)).await;
    assert_eq!(ours.status, Status::Pass, "{ours:?}");
}
