//! Signed-out pages: sign-in (with the second-factor step), sign-up, email confirmation,
//! forgotten and reset password, and sign-out. Each calls the same `App` use case as the API.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, LoginInput, LoginOutcome, SignupInput};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::page::{FieldErrors, Layout, WebError, ok, render, see_other};
use crate::session::{AnonForm, FormToken, MFA_COOKIE, SessionForm, session_cookies, signed_out_cookies};

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub notice: Option<String>,
    pub token: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    email: String,
    error: Option<&'static str>,
}

fn with_form_cookie(form: FormToken, response: Response) -> Response {
    match form.set_cookie {
        Some(jar) => (jar, response).into_response(),
        None => response,
    }
}

pub async fn login_form(form: FormToken, Query(query): Query<PageQuery>) -> Response {
    let page = LoginPage {
        l: Layout::plain("Sign in", form.csrf.clone()).with_notice(query.notice.as_deref()),
        email: String::new(),
        error: None,
    };
    with_form_cookie(form, ok(&page))
}

pub async fn login(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    let csrf = form_csrf(&form);
    let email = form.fields.get("email").trim().to_owned();
    let input =
        LoginInput { email: email.clone(), password: SecretString::from(form.fields.get("password").to_owned()) };
    match state.app.log_in(input, &meta).await {
        Ok(LoginOutcome::Session(out)) => Ok(signed_in(&state, &out)),
        Ok(LoginOutcome::MfaRequired { challenge, methods, webauthn }) => {
            // The challenge stays in an HttpOnly cookie for /login only; the page is rendered
            // here because a security key needs this ceremony's options.
            let page = MfaPage {
                l: Layout::plain("Second step", csrf),
                error: None,
                with_code: methods.iter().any(|m| *m != "webauthn"),
                key_options: webauthn.map(|options| options.to_string()),
            };
            Ok((challenge_cookie(&state, &challenge), ok(&page)).into_response())
        }
        Err(AppError::InvalidCredentials) | Err(AppError::Validation(_)) => {
            let page = LoginPage {
                l: Layout::plain("Sign in", csrf),
                email,
                error: Some("The email or password is not correct."),
            };
            Ok(render(StatusCode::UNAUTHORIZED, &page))
        }
        Err(err) => Err(err.into()),
    }
}

/// The pending second step (or passkey ceremony): its challenge in an HttpOnly cookie sent to
/// `/login…` only, for 5 minutes (the challenge's own lifetime).
fn challenge_cookie(state: &ApiState, challenge: &SecretString) -> CookieJar {
    let cookie = Cookie::build((MFA_COOKIE, challenge.expose_secret().to_owned()))
        .http_only(true)
        .secure(state.secure_cookies)
        .same_site(SameSite::Strict)
        .path("/login")
        .max_age(time::Duration::minutes(5));
    CookieJar::new().add(cookie)
}

/// A new session: the API's cookies, then the start page.
fn signed_in(state: &ApiState, out: &palisade_app::LoginOutput) -> Response {
    let jar = session_cookies(state, out.session_token.expose_secret(), out.cookie_max_age);
    (jar, Redirect::to("/")).into_response()
}

/// The form token a signed-out form re-renders with (the cookie is already set).
fn form_csrf(form: &AnonForm) -> String {
    form.fields.get("_csrf").to_owned()
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage {
    l: Layout,
    error: Option<&'static str>,
    /// An authenticator app or backup codes can answer.
    with_code: bool,
    /// A security key can answer: the ceremony's options for `navigator.credentials.get()`.
    key_options: Option<String>,
}

pub async fn mfa_form(form: FormToken, jar: CookieJar) -> Response {
    if jar.get(MFA_COOKIE).is_none() {
        return Redirect::to("/login").into_response();
    }
    let page =
        MfaPage { l: Layout::plain("Second step", form.csrf.clone()), error: None, with_code: true, key_options: None };
    with_form_cookie(form, ok(&page))
}

pub async fn mfa(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    jar: CookieJar,
    form: AnonForm,
) -> Result<Response, WebError> {
    let Some(challenge) = jar.get(MFA_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let code = form.fields.get("code").trim().to_owned();
    match state.app.complete_login_mfa(&challenge, &code, &meta).await {
        Ok(out) => Ok(signed_in(&state, &out)),
        Err(AppError::InvalidToken) => Ok(see_other("/login", "")),
        Err(AppError::InvalidCredentials) | Err(AppError::Validation(_)) | Err(AppError::Unauthenticated) => {
            let page = MfaPage {
                l: Layout::plain("Second step", form_csrf(&form)),
                error: Some("That code is not correct (or was already used). Try the current one."),
                with_code: true,
                key_options: None,
            };
            Ok(render(StatusCode::UNAUTHORIZED, &page))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "passkey.html")]
struct PasskeyPage {
    l: Layout,
    email: String,
    options: String,
}

/// Sign-in with a passkey alone: the ceremony for the address's passkeys (decoy options, shaped
/// the same, for an address without any — the page does not tell which), answered through the
/// same `/login/mfa/key` form as a security-key second step.
pub async fn passkey(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    let email = form.fields.get("email").trim().to_owned();
    match state.app.start_passwordless(&email, &meta).await {
        Ok((challenge, options)) => {
            let page = PasskeyPage {
                l: Layout::plain("Sign in with a passkey", form_csrf(&form)),
                email,
                options: options.to_string(),
            };
            Ok((challenge_cookie(&state, &challenge), ok(&page)).into_response())
        }
        Err(AppError::Validation(_)) => {
            let page = LoginPage {
                l: Layout::plain("Sign in", form_csrf(&form)),
                email,
                error: Some("Enter the email address of your account to use a passkey."),
            };
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(err) => Err(err.into()),
    }
}

/// The second step answered by a security key (the answer posted by `console.js`).
pub async fn mfa_key(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    jar: CookieJar,
    form: AnonForm,
) -> Result<Response, WebError> {
    let Some(challenge) = jar.get(MFA_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let credential: serde_json::Value = serde_json::from_str(form.fields.get("credential")).unwrap_or_default();
    match state.app.complete_login_webauthn(&challenge, credential, &meta).await {
        Ok(out) => Ok(signed_in(&state, &out)),
        Err(AppError::InvalidCredentials) | Err(AppError::InvalidToken) | Err(AppError::Validation(_)) => {
            let page = MfaPage {
                l: Layout::plain("Second step", form_csrf(&form)),
                error: Some("The security key's answer was not accepted. Sign in again to retry."),
                with_code: true,
                key_options: None,
            };
            Ok(render(StatusCode::UNAUTHORIZED, &page))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn logout(State(state): State<ApiState>, Meta(meta): Meta, form: SessionForm) -> Response {
    // Signed out in the database first; the browser forgets its cookies either way.
    let _ = state.app.log_out(&form.session.proof, &meta).await;
    (signed_out_cookies(), see_other("/login", "signed-out")).into_response()
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    l: Layout,
    email: String,
    name: String,
    errors: FieldErrors,
}

pub async fn signup_form(form: FormToken) -> Response {
    let page = SignupPage {
        l: Layout::plain("Create an account", form.csrf.clone()),
        email: String::new(),
        name: String::new(),
        errors: FieldErrors::default(),
    };
    with_form_cookie(form, ok(&page))
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    l: Layout,
    heading: &'static str,
    body: &'static str,
}

pub async fn signup(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    let email = form.fields.get("email").trim().to_owned();
    let name = form.fields.get("name").trim().to_owned();
    let input = SignupInput {
        email: email.clone(),
        password: SecretString::from(form.fields.get("password").to_owned()),
        name: name.clone(),
    };
    match state.app.sign_up(input, &meta).await {
        Ok(()) => Ok(ok(&MessagePage {
            l: Layout::plain("Check your email", ""),
            heading: "Check your email",
            body: palisade_api::routes::auth::SIGNUP_MESSAGE,
        })),
        Err(err) => {
            let errors = FieldErrors::from_app(err)?;
            let page = SignupPage { l: Layout::plain("Create an account", form_csrf(&form)), email, name, errors };
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "token_form.html")]
struct TokenFormPage {
    l: Layout,
    heading: &'static str,
    explain: &'static str,
    action: &'static str,
    button: &'static str,
    token: String,
    with_password: bool,
    errors: FieldErrors,
}

/// The link in the email only shows a button: mail scanners that fetch links must not use
/// up the single-use token.
pub async fn verify_form(form: FormToken, Query(query): Query<PageQuery>) -> Response {
    let page = TokenFormPage {
        l: Layout::plain("Confirm your email", form.csrf.clone()),
        heading: "Confirm your email address",
        explain: "Press the button to confirm that this address is yours.",
        action: "/verify-email",
        button: "Confirm my address",
        token: query.token.unwrap_or_default(),
        with_password: false,
        errors: FieldErrors::default(),
    };
    with_form_cookie(form, ok(&page))
}

pub async fn verify(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    match state.app.verify_email(form.fields.get("token"), &meta).await {
        Ok(()) => Ok(see_other("/login", "verified")),
        Err(AppError::InvalidToken) | Err(AppError::Validation(_)) => Ok(render(
            StatusCode::BAD_REQUEST,
            &MessagePage {
                l: Layout::plain("Link not valid", ""),
                heading: "This link cannot be used",
                body: "It is unknown, already used or expired. Sign in and ask for a new one, or sign up again.",
            },
        )),
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    l: Layout,
}

pub async fn forgot_form(form: FormToken) -> Response {
    let page = ForgotPage { l: Layout::plain("Forgot password", form.csrf.clone()) };
    with_form_cookie(form, ok(&page))
}

pub async fn forgot(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    // The same answer whether or not the address has an account.
    state.app.forgot_password(form.fields.get("email").trim(), &meta).await?;
    Ok(see_other("/login", "reset-sent"))
}

pub async fn reset_form(form: FormToken, Query(query): Query<PageQuery>) -> Response {
    let page = reset_page(form.csrf.clone(), query.token.unwrap_or_default(), FieldErrors::default());
    with_form_cookie(form, ok(&page))
}

fn reset_page(csrf: String, token: String, errors: FieldErrors) -> TokenFormPage {
    TokenFormPage {
        l: Layout::plain("Choose a new password", csrf),
        heading: "Choose a new password",
        explain: "Every session of your account will be signed out.",
        action: "/reset-password",
        button: "Set the new password",
        token,
        with_password: true,
        errors,
    }
}

pub async fn reset(State(state): State<ApiState>, Meta(meta): Meta, form: AnonForm) -> Result<Response, WebError> {
    let token = form.fields.get("token").to_owned();
    let password = SecretString::from(form.fields.get("password").to_owned());
    match state.app.reset_password(&token, password, &meta).await {
        Ok(()) => Ok((signed_out_cookies(), see_other("/login", "reset")).into_response()),
        Err(AppError::InvalidToken) => {
            let errors = FieldErrors::one("token", "This link is unknown, used or expired: ask for a new one.");
            Ok(render(StatusCode::BAD_REQUEST, &reset_page(form_csrf(&form), token, errors)))
        }
        Err(err) => {
            let errors = FieldErrors::from_app(err)?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &reset_page(form_csrf(&form), token, errors)))
        }
    }
}

/// The link sent to a new address: a button confirms the change (from any browser — the token
/// is the proof; the database also checks the account still has the address it was asked from).
pub async fn confirm_change_form(form: FormToken, Query(query): Query<PageQuery>) -> Response {
    let page = TokenFormPage {
        l: Layout::plain("Confirm your new address", form.csrf.clone()),
        heading: "Confirm your new email address",
        explain: "Press the button to make this address the one you sign in with.",
        action: "/confirm-email-change",
        button: "Confirm the new address",
        token: query.token.unwrap_or_default(),
        with_password: false,
        errors: FieldErrors::default(),
    };
    with_form_cookie(form, ok(&page))
}

pub async fn confirm_change(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: AnonForm,
) -> Result<Response, WebError> {
    match state.app.confirm_email_change(form.fields.get("token"), &meta).await {
        Ok(()) => Ok(see_other("/login", "email-changed")),
        Err(AppError::InvalidToken) | Err(AppError::Validation(_)) => Ok(render(
            StatusCode::BAD_REQUEST,
            &MessagePage {
                l: Layout::plain("Link not valid", ""),
                heading: "This link cannot be used",
                body: "It is unknown, already used or expired, or the account's address changed since. Ask for a new one.",
            },
        )),
        Err(err) => Err(err.into()),
    }
}
