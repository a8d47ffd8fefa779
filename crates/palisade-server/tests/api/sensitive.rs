//! Sensitive record fields at rest: sealed under the organization's data key (never in `data`),
//! shown only to records.sensitive_read, every clear read and every masked one audited, bound to
//! their row and tenant, resealed when a schema change marks a field sensitive.

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::{create_collection, member_with_role};

const SSN: &str = "078-05-1120-CANARY";
/// Long enough that no id, timestamp or ciphertext (hex) in a row's text holds it by chance: with
/// 5100 the at-rest check failed once in CI (2026-12-07), a four-digit string that a row's ~300
/// hex digits and timestamps hold now and then.
const SALARY: i64 = 5_100_734_912_861;

fn people() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "team": {"type": "string"},
            "ssn": {"type": "string", "x-palisade-sensitive": true},
            "salary": {"type": "number", "x-palisade-sensitive": true}
        },
        "required": ["name"],
        "additionalProperties": false
    })
}

struct Setup {
    app: TestApp,
    owner: String,
    org: String,
    records: String,
}

async fn setup(schema: Value) -> Setup {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let records = create_collection(&app, &owner, &org, "people", schema).await;
    Setup { app, owner, org, records }
}

impl Setup {
    async fn create(&self, token: &str, data: Value) -> String {
        let made = self.app.send("POST", &self.records, Some(token), Some(json!({"data": data}))).await;
        assert_eq!(made.status, 201, "{}", made.text);
        made.body["id"].as_str().unwrap().to_owned()
    }

    async fn events(&self, action: &str) -> Vec<Value> {
        let answer =
            self.app.get(&format!("/api/v1/orgs/{}/audit-events?action={action}", self.org), Some(&self.owner)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body["items"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn sensitive_fields_are_sealed_at_rest_shown_only_with_the_permission_and_every_read_is_audited() {
    let s = setup(people()).await;
    let id = s.create(&s.owner, json!({"name": "Ana", "team": "roofs", "ssn": SSN, "salary": SALARY})).await;
    let plain = s.create(&s.owner, json!({"name": "Bo"})).await;
    let one = format!("{}/{id}", s.records);

    // At rest: the clear column holds no sensitive field; one envelope names its fields.
    let admin = s.app.admin().await;
    let row = admin
        .query_one("SELECT data, sealed, sealed_fields FROM palisade.records WHERE sealed IS NOT NULL", &[])
        .await
        .unwrap();
    let (data, sealed, fields): (Value, Vec<u8>, Vec<String>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(data, json!({"name": "Ana", "team": "roofs"}));
    assert_eq!(sealed[0], 0xE1, "an envelope");
    assert_eq!(fields, ["salary", "ssn"]);
    let dump: String =
        admin.query_one("SELECT string_agg(t::text, '|') FROM palisade.records t", &[]).await.unwrap().get(0);
    assert!(!dump.contains(SSN), "the SSN is stored in clear: {dump}");
    assert!(!dump.contains(&SALARY.to_string()), "the salary is stored in clear: {dump}");

    // An owner (records.sensitive_read) sees them, and that read is audited.
    let seen = s.app.get(&one, Some(&s.owner)).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["data"], json!({"name": "Ana", "team": "roofs", "ssn": SSN, "salary": SALARY}));
    assert!(seen.body["masked"].as_array().is_none_or(|m| m.is_empty()), "{}", seen.text);
    let reads = s.events("record.sensitive_read").await;
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["target"]["id"], id.as_str());
    assert_eq!(reads[0]["details"], json!({"collection": "people", "fields": ["salary", "ssn"]}));

    // A member does not, and the refusal is audited too.
    let (member, member_id) = member_with_role(&s.app, &s.org, "member@example.com", "member").await;
    let masked = s.app.get(&one, Some(&member)).await;
    assert_eq!(masked.status, 200, "{}", masked.text);
    assert_eq!(masked.body["data"], json!({"name": "Ana", "team": "roofs"}));
    assert_eq!(masked.body["masked"], json!(["salary", "ssn"]));
    let denied = s.events("record.sensitive_denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["actor"]["id"], member_id.as_str());

    // A record without sensitive fields is read without an event.
    let quiet = s.app.get(&format!("{}/{plain}", s.records), Some(&member)).await;
    assert_eq!(quiet.status, 200);
    assert_eq!(s.events("record.sensitive_denied").await.len(), 1);

    // Lists: one event per page, naming the records that held sensitive fields.
    let listed = s.app.get(&s.records, Some(&member)).await;
    assert!(!listed.text.contains(SSN), "{}", listed.text);
    let denied = s.events("record.sensitive_denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["details"]["records"], json!([id]));
    let listed = s.app.get(&s.records, Some(&s.owner)).await;
    assert!(listed.text.contains(SSN));
    assert_eq!(s.events("record.sensitive_read").await.len(), 2);

    // A member's merge patch of a clear field keeps the sealed ones (opened, merged, resealed).
    let patched = s.app.send("PATCH", &one, Some(&member), Some(json!({"data": {"team": "gutters"}}))).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert!(!patched.text.contains(SSN));
    let after = s.app.get(&one, Some(&s.owner)).await;
    assert_eq!(after.body["data"], json!({"name": "Ana", "team": "gutters", "ssn": SSN, "salary": SALARY}));
    assert_eq!(s.events("record.sensitive_read").await.len(), 3);
    // An owner's patch answers with the whole record, stored sensitive values included: audited
    // as a clear read as well (the member's patch above answered masked, and was not).
    let patched = s.app.send("PATCH", &one, Some(&s.owner), Some(json!({"data": {"team": "roofs"}}))).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["data"]["ssn"], SSN);
    let reads = s.events("record.sensitive_read").await;
    assert_eq!(reads.len(), 4, "{reads:?}");
    assert_eq!(reads[0]["details"]["fields"], json!(["salary", "ssn"]));

    // Sensitive fields cannot be filtered or sorted on.
    s.app.get(&format!("{}?filter[ssn]={SSN}", s.records), Some(&s.owner)).await.assert_problem(400, "invalid-query");
    s.app.get(&format!("{}?sort=salary", s.records), Some(&s.owner)).await.assert_problem(400, "invalid-query");
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_row_or_tenant_or_damaged_fails_with_a_clear_error() {
    let s = setup(people()).await;
    let first = s.create(&s.owner, json!({"name": "Ana", "ssn": SSN})).await;
    let second = s.create(&s.owner, json!({"name": "Bo", "ssn": "other-ssn"})).await;
    let admin = s.app.admin().await;
    // Another row of the same organization.
    admin
        .execute(
            "UPDATE palisade.records t SET sealed = s.sealed FROM palisade.records s WHERE s.id = $1 AND t.id = $2",
            &[
                &first.parse::<palisade_core::RecordId>().unwrap().as_uuid(),
                &second.parse::<palisade_core::RecordId>().unwrap().as_uuid(),
            ],
        )
        .await
        .unwrap();
    let moved = s.app.get(&format!("{}/{second}", s.records), Some(&s.owner)).await;
    moved.assert_problem(500, "undecryptable");
    assert!(moved.text.contains(&second), "the error names the record: {}", moved.text);
    assert!(!moved.text.contains(SSN));
    // The first still opens; damaging one byte breaks it without a panic.
    assert_eq!(s.app.get(&format!("{}/{first}", s.records), Some(&s.owner)).await.status, 200);
    admin
        .execute(
            "UPDATE palisade.records SET sealed = overlay(sealed PLACING '\\x00'::bytea FROM 40 FOR 1) WHERE id = $1",
            &[&first.parse::<palisade_core::RecordId>().unwrap().as_uuid()],
        )
        .await
        .unwrap();
    s.app.get(&format!("{}/{first}", s.records), Some(&s.owner)).await.assert_problem(500, "undecryptable");
    // A member (masked) still reads the clear fields: nothing needs decrypting for them.
    let (member, _) = member_with_role(&s.app, &s.org, "member@example.com", "member").await;
    let masked = s.app.get(&format!("{}/{first}", s.records), Some(&member)).await;
    assert_eq!(masked.status, 200, "{}", masked.text);

    // Another organization's record with this one's envelope.
    let (other_owner, other_org) = s.app.owner_of("other@example.com", "Other").await;
    let made = s
        .app
        .send(
            "POST",
            &format!("/api/v1/orgs/{other_org}/collections"),
            Some(&other_owner),
            Some(json!({"name": "people", "schema": people()})),
        )
        .await;
    assert_eq!(made.status, 201);
    let theirs = s
        .app
        .send(
            "POST",
            &format!("/api/v1/orgs/{other_org}/collections/people/records"),
            Some(&other_owner),
            Some(json!({"data": {"name": "Cy", "ssn": "their-ssn"}})),
        )
        .await;
    let theirs = theirs.body["id"].as_str().unwrap().to_owned();
    // The database refuses an envelope that names another organization's key (the sealed-key
    // guard); someone with owner rights can switch that off, as here, and the ciphertext itself
    // must still not open.
    admin.batch_execute("ALTER TABLE palisade.records DISABLE TRIGGER records_sealed_key_guard_update").await.unwrap();
    admin
        .execute(
            "UPDATE palisade.records t SET sealed = s.sealed FROM palisade.records s WHERE s.id = $1 AND t.id = $2",
            &[
                &second.parse::<palisade_core::RecordId>().unwrap().as_uuid(),
                &theirs.parse::<palisade_core::RecordId>().unwrap().as_uuid(),
            ],
        )
        .await
        .unwrap();
    let crossed =
        s.app.get(&format!("/api/v1/orgs/{other_org}/collections/people/records/{theirs}"), Some(&other_owner)).await;
    crossed.assert_problem(500, "undecryptable");
}

#[tokio::test]
async fn a_schema_change_that_marks_a_field_sensitive_seals_it_in_every_record_and_unmarking_unseals_it() {
    let mut schema = people();
    let s = setup(schema.clone()).await;
    let id = s.create(&s.owner, json!({"name": "Ana", "team": "roofs", "ssn": SSN})).await;
    schema["properties"]["team"]["x-palisade-sensitive"] = json!(true);
    let path = format!("/api/v1/orgs/{}/collections/people", s.org);
    let changed = s.app.send("PUT", &path, Some(&s.owner), Some(json!({"schema": schema}))).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let admin = s.app.admin().await;
    let row = admin.query_one("SELECT data, sealed_fields FROM palisade.records", &[]).await.unwrap();
    assert_eq!(row.get::<_, Value>(0), json!({"name": "Ana"}));
    assert_eq!(row.get::<_, Vec<String>>(1), ["ssn", "team"]);
    let seen = s.app.get(&format!("{}/{id}", s.records), Some(&s.owner)).await;
    assert_eq!(seen.body["data"], json!({"name": "Ana", "team": "roofs", "ssn": SSN}));

    schema["properties"]["team"]["x-palisade-sensitive"] = json!(false);
    schema["properties"]["ssn"]["x-palisade-sensitive"] = json!(false);
    let changed = s.app.send("PUT", &path, Some(&s.owner), Some(json!({"schema": schema}))).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let row = admin.query_one("SELECT data, sealed, sealed_fields FROM palisade.records", &[]).await.unwrap();
    assert_eq!(row.get::<_, Value>(0), json!({"name": "Ana", "team": "roofs", "ssn": SSN}));
    assert!(row.get::<_, Option<Vec<u8>>>(1).is_none());
}
