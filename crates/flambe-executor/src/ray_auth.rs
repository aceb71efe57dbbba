//! Ray's token authentication as Ray itself resolves it: what the Jobs API
//! calls ([`crate::ray`]) and the log tail ([`crate::ray_log`]) send.

/// The token Ray itself would use here, in Ray's order of precedence:
/// `RAY_AUTH_TOKEN`, the file at `RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`.
/// None where there is none (a Ray without token authentication).
pub fn ray_token() -> Option<String> {
    let nonempty = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    if let Some(t) = std::env::var("RAY_AUTH_TOKEN").ok().and_then(nonempty) {
        return Some(t);
    }
    let path = match std::env::var_os("RAY_AUTH_TOKEN_PATH") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".ray/auth_token"),
    };
    std::fs::read_to_string(path).ok().and_then(nonempty)
}
