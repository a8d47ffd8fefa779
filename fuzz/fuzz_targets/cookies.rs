//! Cookies (`Cookie:` request headers, possibly several): read with axum-extra's `CookieJar`,
//! as the API's `Caller` (session cookie + `X-CSRF-Token`) and the console's `Session` and
//! `FormToken` (`palisade_session`, `palisade_form`) read them. Names and values are
//! percent-decoded (so `%3B` is a `;` inside a value: harmless, the server only hashes and
//! compares them). Properties: no panic; every parsed cookie has a non-empty name; the jar
//! written back as one `Cookie:` header (percent-encoded again) reads back to the same session
//! and form cookies; the session token is used only at 1–512 bytes, the form cookie only as 64
//! hex digits (the checks of palisade-api `Caller` and palisade-web `session_cookie`/`form_cookie`).
#![no_main]

use axum_extra::extract::cookie::CookieJar;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

const SESSION_COOKIE: &str = "palisade_session";
const FORM_COOKIE: &str = "palisade_form";

/// The two values the server reads: (session token if usable, form cookie if usable), with the
/// same checks as palisade-api `Caller` / palisade-web `session_cookie` and `form_cookie`.
fn read(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let jar = CookieJar::from_headers(headers);
    let session = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|v| !v.is_empty() && v.len() <= 512);
    let form = jar
        .get(FORM_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    (session, form)
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(8) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    let jar = CookieJar::from_headers(&headers);
    let mut pairs = Vec::new();
    for cookie in jar.iter() {
        assert!(!cookie.name().is_empty(), "a cookie without a name");
        // The jar percent-decodes (`Cookie::parse_encoded`); re-sending means encoding again.
        pairs.push(cookie.encoded().stripped().to_string());
    }
    let (session, form) = read(&headers);
    if let Some(token) = &session {
        let hash = palisade_auth::hash_token(token);
        assert_eq!(hash, palisade_auth::hash_token(token));
    }
    // Written back as one header (what a browser would send for this jar), the server reads the
    // same session and form cookies.
    if let Ok(value) = HeaderValue::from_str(&pairs.join("; ")) {
        let mut again = HeaderMap::new();
        again.insert(header::COOKIE, value);
        assert_eq!(read(&again), (session, form), "cookies read differently once re-sent");
    }
});
