//! SECURITY DEFINER functions against a caller's temporary schema (migration 0041): SQL injected
//! into a runtime connection cannot plant a type for a definer function to pick up and so run
//! code with the rights of the schema's owner.

use palisade_core::OrgId;
use palisade_store::catalog;
use palisade_testkit::TestApp;
use tokio_postgres::Client;

/// What the planted code says when it runs; its message names the role it ran as.
const MARKER: &str = "planted code ran as";

/// Types a definer function may name without a schema (keywords such as `integer` or `boolean`
/// always mean the catalog's and cannot be shadowed).
const SHADOWED_TYPES: &[&str] =
    &["text", "bytea", "uuid", "timestamptz", "inet", "jsonb", "interval", "numeric", "name"];

fn sql_state(err: &tokio_postgres::Error) -> String {
    err.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error().map(|db| db.message().to_owned()).unwrap_or_else(|| err.to_string())
}

/// The attack: a temporary function that raises naming `current_user`, and a temporary domain
/// over each catalog type whose check calls it. A function that resolves one of those type names
/// in the caller's temporary schema runs the check, and so the planted code, with its own rights.
async fn plant_shadow_types(runtime: &Client) {
    runtime
        .batch_execute(&format!(
            "CREATE FUNCTION pg_temp.planted(pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION '{MARKER} %', current_user; END $$"
        ))
        .await
        .unwrap();
    for ty in SHADOWED_TYPES {
        runtime
            .batch_execute(&format!(
                "CREATE DOMAIN pg_temp.{ty} AS pg_catalog.{ty} CHECK (pg_temp.planted(VALUE::pg_catalog.text))"
            ))
            .await
            .unwrap();
    }
}

async fn grant_temporary_back(app: &TestApp) {
    let admin = app.admin().await;
    let database: String = admin.query_one("SELECT current_database()::text", &[]).await.unwrap().get(0);
    admin.batch_execute(&format!("GRANT TEMPORARY ON DATABASE \"{database}\" TO palisade_app")).await.unwrap();
}

/// A fresh install has no definer function that searches the caller's temporary schema first,
/// and no palisade login that may create temporary objects; a later migration that brings
/// either back is caught by the rule (and so by `controls check` T2).
#[tokio::test]
async fn catalog_invariant_definer_functions_search_pg_temp_last() {
    let app = TestApp::spawn().await;
    let runtime = app.runtime().await;
    assert_eq!(catalog::definer_problems(&runtime).await.unwrap(), Vec::<String>::new());

    app.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION palisade.careless() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = pg_catalog, palisade AS $$ BEGIN RETURN 'x'; END $$",
        )
        .await
        .unwrap();
    grant_temporary_back(&app).await;
    let problems = catalog::definer_problems(&runtime).await.unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(
        problems[0],
        "function palisade.careless() runs with its owner's rights but its search_path does not end with pg_temp"
    );
    assert!(problems[1].starts_with("role palisade_app may create temporary objects in database "), "{problems:?}");
}

/// The runtime role cannot create temporary objects at all; and where a database still lets it
/// (an operator's database whose owner is not the migrating role), types planted in its
/// temporary schema are never picked up by palisade's definer functions: not on the paths every
/// request takes, and not by any definer function the runtime role may call. The same plant
/// does take over a definer function written the old way, so the plant itself works.
#[tokio::test]
async fn temporary_objects_cannot_take_over_definer_functions() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("owner@example.com", "Org A").await;
    let org = org.parse::<OrgId>().unwrap().as_uuid();
    let proof = app.session_proof(&token).to_db();
    let runtime = app.runtime().await;

    // 1. The first wall: no temporary objects for any of palisade's logins.
    let keys = app.key_jobs().await;
    let signin = palisade_server::database::connect(&app.db.signin_config()).await.unwrap();
    for (login, client) in [("runtime", &runtime), ("keys", &keys), ("signin", &signin)] {
        let err = client.batch_execute("CREATE TEMP TABLE probe (a int)").await.unwrap_err();
        assert_eq!(sql_state(&err), "42501", "{login}: {err}");
    }

    // 2. The second: with TEMPORARY granted back, plant the shadows.
    grant_temporary_back(&app).await;
    let runtime = app.runtime().await;
    // Every definer function the runtime role may call, as a call with NULL arguments of each
    // parameter's type, named in full (listed before the plant: afterwards `text` means its).
    let definers: Vec<String> = runtime
        .query(
            "SELECT format('SELECT %s(%s)', p.oid::regproc,
                           coalesce((SELECT string_agg(format('NULL::%I.%I', tn.nspname, ty.typname), ', ' ORDER BY a.n)
                                       FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)
                                       JOIN pg_type ty ON ty.oid = a.t JOIN pg_namespace tn ON tn.oid = ty.typnamespace), ''))
               FROM pg_proc p
              WHERE p.pronamespace = 'palisade'::regnamespace AND p.prosecdef
                AND has_function_privilege(current_user, p.oid, 'EXECUTE')
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    plant_shadow_types(&runtime).await;
    // The plant works where a function resolves names in the caller's temporary schema.
    app.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION palisade.old_style() RETURNS pg_catalog.text LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = pg_catalog, palisade AS $$ DECLARE v text := 'x'; BEGIN RETURN v; END $$;
             GRANT EXECUTE ON FUNCTION palisade.old_style() TO palisade_app",
        )
        .await
        .unwrap();
    let err = runtime.query_one("SELECT palisade.old_style()", &[]).await.unwrap_err();
    assert!(message(&err).starts_with(MARKER), "the plant took over the old-style function: {err}");
    assert!(!message(&err).ends_with("palisade_app"), "and ran with its owner's rights: {err}");

    // 3. A request's own path: enter the organization, read through the policies (each calls
    // the verifier), list the caller's organizations.
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof, &org]).await.unwrap();
    let seen: String = runtime.query_one("SELECT palisade.setting('app.tenant_id', true)", &[]).await.unwrap().get(0);
    assert_eq!(seen, org.to_string());
    let orgs: i64 = runtime.query_one("SELECT count(*) FROM palisade.orgs", &[]).await.unwrap().get(0);
    assert_eq!(orgs, 1);
    let mine: i64 = runtime.query_one("SELECT count(*) FROM palisade.my_orgs()", &[]).await.unwrap().get(0);
    assert_eq!(mine, 1);
    runtime.batch_execute("ROLLBACK").await.unwrap();

    // 4. Each of them, in a transaction of its own that is rolled back: whatever each answers
    // to NULL arguments, never the plant.
    assert!(definers.len() >= 30, "the runtime role's definer functions: {definers:?}");
    for call in &definers {
        runtime.batch_execute("BEGIN; SET LOCAL statement_timeout = '10s'").await.unwrap();
        if let Err(err) = runtime.batch_execute(call).await {
            assert!(!message(&err).contains(MARKER), "{call}: {err}");
        }
        runtime.batch_execute("ROLLBACK").await.unwrap();
    }
}
