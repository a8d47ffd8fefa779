//! Cross-tenant probe of every route (issue #10, the reliability suite `cross_tenant`).
//!
//! Org A holds one of every object the API addresses by id. Org B's owner — once as a session
//! (bearer access token), once as an API key with every permission, and on the routes that must
//! answer 404 also as a browser session (cookie + CSRF token) — calls every path × method
//! of the OpenAPI document with A's real ids and bodies that are valid, so nothing can pass by
//! failing validation before the tenant check. Tenant-bound routes must answer exactly 404
//! `not-found` (the answer for an id that does not exist); the routes that are not tenant-bound
//! answer what `table()` says and why. No answer may carry any of A's ids or names, and a
//! snapshot of everything of A's in the database (every tenant table's rows of A's tenant, A's
//! users' rows in the instance tables) is the same after the probe as before it.
//!
//! Also probed: B's own organization with A's object ids in the path (and A's record id inside a
//! collection of B's with the same name), A's ids and A's sealed cursors in the query of B's
//! lists, and every method a path does not document (405). Controls show that the ids are real
//! (A's owner reads every tenant-bound GET route with them) and that B's credentials work on B's
//! own organization, so the 404s cannot come from ids or credentials that work nowhere.
//!
//! Every path × method of the document needs an entry in `table()`: a new route without one
//! fails here, and so does an entry whose route is gone. With `PALISADE_RELIABILITY_REPORT` set,
//! `{"cases", "failures", "failed"}` is written to that file for
//! `reliability/suites/cross_tenant.sh` before the test asserts.

use std::collections::BTreeSet;

use palisade_testkit::{Answer, TestApp};
use serde_json::json;

mod table;
mod world;

use table::{Expect, NOT_FOUND, answer, table};
use world::{SNAPSHOT_MUST_HOLD, snapshot, world};

/// The path × method pairs of the served OpenAPI document.
async fn documented(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let mut out = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

struct Probe {
    cases: usize,
    failed: Vec<String>,
}

impl Probe {
    fn check(&mut self, what: String, got: &Answer, expect: Expect, secrets: &[String]) {
        self.cases += 1;
        let mut wrong = Vec::new();
        if got.status != expect.status {
            wrong.push(format!("status {} (expected {})", got.status, expect.status));
        }
        if let Some(slug) = expect.problem
            && got.body["type"] != format!("/problems/{slug}")
        {
            wrong.push(format!("problem type {} (expected /problems/{slug})", got.body["type"]));
        }
        let lower = got.text.to_lowercase();
        for secret in secrets {
            if lower.contains(&secret.to_lowercase()) {
                wrong.push(format!("the answer contains A's {secret:?}"));
            }
        }
        if !wrong.is_empty() {
            let body: String = got.text.chars().take(300).collect();
            self.failed.push(format!("{what}: {}; body: {body}", wrong.join(", ")));
        }
    }
}

#[tokio::test]
async fn cross_tenant_probe_of_every_route_finds_nothing_of_another_org() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let mut probe = Probe { cases: 0, failed: Vec::new() };

    // The table and the document describe the same routes.
    let doc = documented(&app).await;
    let table = table();
    let entries: BTreeSet<(String, String)> = table.iter().map(|e| (e.method.to_owned(), e.route.to_owned())).collect();
    assert_eq!(entries.len(), table.len(), "the table has an entry twice");
    probe.cases += doc.union(&entries).count();
    for (method, path) in doc.difference(&entries) {
        probe
            .failed
            .push(format!("{method} {path}: no entry in cross_tenant.rs table(): a new route needs an entry here"));
    }
    for (method, path) in entries.difference(&doc) {
        probe.failed.push(format!("{method} {path}: in cross_tenant.rs table() but not in the OpenAPI document"));
    }

    let before = snapshot(&app, &w).await;
    let before = match before {
        Ok(snapshot) => {
            // The snapshot must hold A's objects, or comparing it proves nothing.
            probe.cases += 1;
            let empty: Vec<&str> = SNAPSHOT_MUST_HOLD
                .iter()
                .copied()
                .filter(|t| snapshot.get(*t).is_none_or(|rows| rows.is_empty()))
                .collect();
            if !empty.is_empty() {
                probe.failed.push(format!("the snapshot of A holds no rows of {empty:?}"));
            }
            Some(snapshot)
        }
        Err(why) => {
            probe.failed.push(why);
            None
        }
    };

    // Control: B's browser session works on B's own organization (it is revoked later on, by
    // POST /api/v1/me/sessions/revoke-others).
    let headers = [("cookie", w.b_cookie.as_str())];
    let got = app.send_with("GET", &format!("/api/v1/orgs/{}/members", w.b_org), None, &headers, None).await;
    probe.check("control: B's browser session on B's own organization".into(), &got, answer(200, None), &w.secrets);

    for entry in table.iter().filter(|e| doc.contains(&(e.method.to_owned(), e.route.to_owned()))) {
        let path = match w.fill(entry.route) {
            Ok(path) if entry.query.is_empty() => path,
            Ok(path) => format!("{path}?{}", entry.query),
            Err(why) => {
                probe.failed.push(why);
                continue;
            }
        };
        let session = if entry.fresh_session { app.login(&w.b_email).await } else { w.b_session.clone() };
        for (who, token, expect) in [("session", &session, entry.session), ("API key", &w.b_key, entry.api_key)] {
            let got = app.send(entry.method, &path, Some(token), (entry.body)(&w)).await;
            probe.check(format!("{} {} as B's {who}", entry.method, entry.route), &got, expect, &w.secrets);
        }
        // Routes that must not find A's objects are also tried with B's browser session (the
        // cookie and its CSRF token), the console's credential.
        if entry.session.status == 404 {
            let headers = [("cookie", w.b_cookie.as_str()), ("x-csrf-token", w.b_csrf.as_str())];
            let got = app.send_with(entry.method, &path, None, &headers, (entry.body)(&w)).await;
            let what = format!("{} {} as B's browser session", entry.method, entry.route);
            probe.check(what, &got, entry.session, &w.secrets);
        }
    }

    // B's own organization with A's object ids (the ids of another tenant's member, role,
    // invitation, API key, record — the record inside a collection of B's with the same name as
    // A's): a lookup by id that forgets the tenant would find them.
    for entry in table.iter().filter(|e| {
        e.route.starts_with("/api/v1/orgs/{org}/")
            && ["{record}", "{role}", "{invitation}", "{user}", "{key}"].iter().any(|p| e.route.contains(p))
            && doc.contains(&(e.method.to_owned(), e.route.to_owned()))
    }) {
        let Ok(path) = w.fill_in(entry.route, &w.b_org) else { continue };
        for (who, token, expect) in [("session", &w.b_session, NOT_FOUND), ("API key", &w.b_key, entry.api_key)] {
            let got = app.send(entry.method, &path, Some(token), (entry.body)(&w)).await;
            let what = format!("{} {} in B's org with A's ids as B's {who}", entry.method, entry.route);
            probe.check(what, &got, expect, &w.secrets);
        }
    }

    // A's ids and A's cursors in the query of B's own lists: filters must select nothing of
    // A's, and a cursor sealed for A's list must not page into it.
    let b = format!("/api/v1/orgs/{}", w.b_org);
    let records = format!("{b}/collections/{}/records", w.collection);
    let queries = [
        format!("{b}/audit-events?actor={}", w.owner),
        format!("{b}/audit-events?actor={}", w.api_key),
        format!("{b}/audit-events?target={}", w.record),
        format!("{b}/audit-events?target={}", w.member),
        format!("{b}/audit-events?cursor={}", w.audit_cursor),
        format!("{b}/audit-events/export?format=jsonl&actor={}", w.owner),
        format!("{b}/audit-events/export?format=csv&target={}", w.record),
        format!("{records}?cursor={}", w.record_cursor),
        format!("{records}?filter[title]=Alpha%20roof%20q7x"),
    ];
    for query in &queries {
        for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
            let got = app.get(query, Some(token)).await;
            let what = format!("GET {} as B's {who}", query.replace(&w.b_org, "{B's org}"));
            let expect = if query.contains("cursor=") {
                // A cursor is sealed for one organization's list.
                answer(400, Some("invalid-query"))
            } else if query.contains("/export") && who == "API key" {
                // An export needs a person's recent authentication, which a key never has.
                answer(403, Some("step-up-required"))
            } else {
                answer(200, None)
            };
            probe.check(what, &got, expect, &w.secrets);
        }
    }

    // Every method a path does not document is refused the same way for everyone.
    let paths: BTreeSet<&String> = doc.iter().map(|(_, path)| path).collect();
    for route in paths {
        let Ok(path) = w.fill(route) else { continue };
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if doc.contains(&(method.to_owned(), route.clone())) {
                continue;
            }
            for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
                let got = app.send(method, &path, Some(token), None).await;
                let what = format!("{method} {route} (undocumented method) as B's {who}");
                probe.check(what, &got, answer(405, None), &w.secrets);
            }
        }
    }

    // Nothing of A's changed.
    probe.cases += 1;
    match (before, snapshot(&app, &w).await) {
        (Some(before), Ok(after)) if before == after => {}
        (Some(before), Ok(after)) => {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|t| before.get(*t) != after.get(*t))
                .map(|t| {
                    let (b, a) =
                        (before.get(t).cloned().unwrap_or_default(), after.get(t).cloned().unwrap_or_default());
                    let gone: Vec<_> = b.iter().filter(|r| !a.contains(r)).collect();
                    let new: Vec<_> = a.iter().filter(|r| !b.contains(r)).collect();
                    format!("{t}: before {gone:?} after {new:?}")
                })
                .collect();
            probe.failed.push(format!("A's rows changed during the probe: {}", changed.join("; ")));
        }
        (_, Err(why)) => probe.failed.push(why),
        (None, Ok(_)) => probe.failed.push("no snapshot before the probe".into()),
    }

    // Controls, so that the 404s above cannot come from ids that address nothing or from
    // credentials that work nowhere: A's owner reads every tenant-bound GET route with the same
    // ids (after the snapshot: A's own requests move A's session), and B's credentials work on
    // B's own organization.
    for entry in table.iter().filter(|e| e.method == "GET" && e.session.status == 404 && e.api_key.status == 404) {
        let Ok(path) = w.fill(entry.route) else { continue };
        let path = if entry.query.is_empty() { path } else { format!("{path}?{}", entry.query) };
        let got = app.send("GET", &path, Some(&w.a_owner), None).await;
        probe.check(format!("control: GET {} as A's owner", entry.route), &got, answer(200, None), &[]);
    }
    for (who, token) in [("session", &w.b_session), ("API key", &w.b_key)] {
        let got = app.get(&format!("/api/v1/orgs/{}/members", w.b_org), Some(token)).await;
        probe.check(format!("control: B's {who} on B's own organization"), &got, answer(200, None), &w.secrets);
    }

    if let Ok(report) = std::env::var("PALISADE_RELIABILITY_REPORT") {
        let json = json!({"cases": probe.cases, "failures": probe.failed.len(), "failed": probe.failed});
        std::fs::write(&report, serde_json::to_vec_pretty(&json).unwrap()).expect("write the report");
    }
    assert!(
        probe.failed.is_empty(),
        "{} of {} cases failed:\n{}",
        probe.failed.len(),
        probe.cases,
        probe.failed.join("\n")
    );
}
