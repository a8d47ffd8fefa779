//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{CATALOG, FieldError, Problem};
use crate::routes::{
    Items, admin, api_keys, audit, auth, collections, keys, me, members, org_deletion, orgs, records, roles, secrets,
    system, webauthn,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Palisade API", description = "Multi-tenant platform server for B2B work products."),
    paths(
        auth::signup, auth::login, auth::logout, auth::verify_email, auth::forgot_password, auth::reset_password, auth::mfa, auth::refresh, auth::step_up, me::start_totp, me::confirm_totp, me::disable_totp, me::change_password, me::change_email, auth::confirm_email_change, me::me, me::sessions, me::revoke_session, me::revoke_other_sessions,
        webauthn::start_registration, webauthn::finish_registration, webauthn::list, webauthn::remove, webauthn::login, webauthn::start_passkey, webauthn::start_step_up,
        orgs::create, orgs::list, orgs::get, orgs::update, orgs::members, orgs::revoke_member_sessions, orgs::roles,
        members::invite, members::invitations, members::revoke_invitation, members::accept, members::change_role, members::remove,
        collections::create, collections::list, collections::get, collections::change_schema, collections::delete,
        records::create, records::list, records::get, records::replace, records::patch, records::delete,
        audit::list, audit::export, audit::verify, audit::verify_against, audit::checkpoints, audit::latest_checkpoint,
        roles::create, roles::update, roles::delete, roles::access_review,
        api_keys::create, api_keys::list, api_keys::revoke, api_keys::rotate, admin::set_plan,
        secrets::create, secrets::list, secrets::replace, secrets::delete, keys::status,
        org_deletion::schedule, org_deletion::cancel,
        system::healthz, system::readyz, system::problem_type, system::jwks,
    ),
    components(schemas(Problem, FieldError, Items<orgs::OrgResponse>, Items<orgs::MemberResponse>, Items<me::SessionResponse>, Items<orgs::RoleResponse>, Items<members::InvitationResponse>, Items<collections::CollectionResponse>, Items<webauthn::CredentialResponse>, Items<api_keys::ApiKeyResponse>, Items<secrets::SecretResponse>)),
    modifiers(&SecuritySchemes, &ProblemTypes, &CommonProblems),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sign-out"),
        (name = "account", description = "The caller's own account"),
        (name = "orgs", description = "Organizations (tenants) and members"),
        (name = "members", description = "Invitations, roles of members, removal"),
        (name = "collections", description = "Org-defined record types and their JSON Schemas"),
        (name = "records", description = "Records of a collection"),
        (name = "audit", description = "The tamper-evident audit log: events, export, verification, signed checkpoints"),
        (name = "api-keys", description = "Organization API keys: scoped, shown once, revocable, rotatable"),
        (name = "secrets", description = "The organization's write-only secrets store: values go in encrypted and never come out"),
        (name = "keys", description = "The organization's encryption keys: provider, data keys, rotation schedule and progress"),
        (name = "admin", description = "Instance administration (instance administrators only)"),
        (name = "system", description = "Health and documentation"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token (JWT from sign-in or refresh), or on organization routes an API key (pal_<env>_…)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "palisade_session",
                "Browser session; state-changing requests also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// Lists every problem `type` with its status and meaning in the document's description.
struct ProblemTypes;

impl Modify for ProblemTypes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut text = openapi.info.description.clone().unwrap_or_default();
        text.push_str("\n\n## Problem types\nEvery error is `application/problem+json` (RFC 9457) with one of these stable `type` values:\n\n| type | status | meaning |\n|---|---|---|\n");
        for (slug, status, _title, description) in CATALOG {
            text.push_str(&format!("| `/problems/{slug}` | {status} | {description} |\n"));
        }
        openapi.info.description = Some(text);
    }
}

/// Declares the problem answers the middleware and extractors give on every operation, so the
/// document lists every status the server really sends (the schemathesis reliability suite
/// checks each answer against it): 400/413/415/422 wherever a JSON body is read, 401 on
/// authenticated operations, 429 (rate limits) and 503 (database or key provider unavailable,
/// bounded queue full) on every API operation. An operation's own description wins.
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| -> RefOr<utoipa::openapi::Response> {
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
                .build()
                .into()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| problem(description));
                };
                if operation.request_body.is_some() {
                    add("400", "Malformed JSON, or nested too deeply");
                    add("413", "The body exceeds the size limit");
                    add("415", "The body is not application/json");
                    add("422", "The body does not match the request schema");
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "Not signed in, or the credential is not valid (any more)");
                }
                if api {
                    add("429", "Too many requests: retry after the seconds in Retry-After");
                    add("503", "Temporarily unavailable (database, key provider, or a full queue); retry later");
                }
            }
        }
    }
}
