//! The web console: server-rendered pages (askama) over the same `App` use cases as the JSON API,
//! so authorization has one code path. Forms work without JavaScript; htmx (served from our own
//! static files) only makes some of them quicker. Strict CSP: no inline script or style.

mod account_pages;
mod api_key_pages;
mod assets;
mod audit_pages;
mod auth_pages;
mod collection_pages;
mod org_pages;
mod page;
mod record_form;
mod record_pages;
mod roles_pages;
mod secret_pages;
mod security_pages;
mod session;
mod team_pages;
mod view;

use axum::Router;
use axum::routing::{get, post};
use palisade_api::ApiState;

pub use page::CONSOLE_CSP;

/// The console's routes; the API's router wraps them in the same middleware as the API.
pub fn console(state: ApiState) -> Router {
    Router::new()
        .route("/", get(org_pages::home))
        .route("/static/{file}", get(assets::serve))
        .route("/login", get(auth_pages::login_form).post(auth_pages::login))
        .route("/login/mfa", get(auth_pages::mfa_form).post(auth_pages::mfa))
        .route("/logout", post(auth_pages::logout))
        .route("/signup", get(auth_pages::signup_form).post(auth_pages::signup))
        .route("/verify-email", get(auth_pages::verify_form).post(auth_pages::verify))
        .route("/confirm-email-change", get(auth_pages::confirm_change_form).post(auth_pages::confirm_change))
        .route("/forgot-password", get(auth_pages::forgot_form).post(auth_pages::forgot))
        .route("/reset-password", get(auth_pages::reset_form).post(auth_pages::reset))
        .route("/accept-invite", get(org_pages::accept_form).post(org_pages::accept))
        .route("/orgs", get(org_pages::list).post(org_pages::create))
        .route("/orgs/{org}", get(org_pages::overview))
        .route("/orgs/{org}/settings", get(org_pages::settings_form).post(org_pages::save_settings))
        .route("/account", get(account_pages::account))
        .route("/account/password", post(account_pages::change_password))
        .route("/account/email", post(account_pages::change_email))
        .route("/account/totp/start", post(account_pages::start_totp))
        .route("/account/totp", post(account_pages::confirm_totp))
        .route("/account/keys/start", post(account_pages::start_key))
        .route("/account/keys", post(account_pages::add_key))
        .route("/account/keys/{key}/remove", post(account_pages::remove_key))
        .route("/login/mfa/key", post(auth_pages::mfa_key))
        .route("/login/passkey", post(auth_pages::passkey))
        .route("/account/totp/disable", post(account_pages::disable_totp))
        .route("/account/sessions/revoke-others", post(account_pages::revoke_others))
        .route("/account/sessions/{session}/revoke", post(account_pages::revoke_session))
        .merge(collection_pages::routes())
        .merge(team_pages::routes())
        .merge(audit_pages::routes())
        .merge(security_pages::routes())
        .with_state(state)
}
