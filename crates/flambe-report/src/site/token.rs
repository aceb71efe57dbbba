//! The site's token: off loopback, every request carries it (`?token=`,
//! `Authorization: Bearer`, or the cookie the first `?token=` sets).

use super::error;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let from_query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
        .map(str::to_string);
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    // The page's own assets and API calls carry no token: the browser sends
    // the cookie set when the page was opened with `?token=`.
    let from_cookie = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(TOKEN_COOKIE)
                .and_then(|v| v.strip_prefix('='))
        })
        .map(str::to_string);
    let matches = |given: &Option<String>| given.as_deref().is_some_and(|g| same_token(g, token));
    if matches(&from_query) {
        let mut response = next.run(request).await;
        if let Ok(cookie) = HeaderValue::from_str(&format!(
            "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        )) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    } else if matches(&from_header) || matches(&from_cookie) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "this site needs its token (?token=…)",
        )
        .into_response()
    }
}

const TOKEN_COOKIE: &str = "flambe_token";

/// Compares in time that depends on the lengths only, not on where the
/// first difference is.
fn same_token(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new access token: 128 bits from the OS's random source. No randomness
/// is an error, never a weak token.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no randomness for the site's token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
