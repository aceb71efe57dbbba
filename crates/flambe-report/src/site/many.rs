//! A site over a `save_path` of several experiments (`flambe site runs/`):
//! `/` lists them (state, progress, best), and each one's own pages and API
//! are served under `/x/NAME/`, exactly as a site over it alone would serve
//! them at `/`. Experiments that appear while it serves are listed at the
//! next poll.

use super::{
    ApiError, ApiResult, SiteState, Snapshot, assets, entry_of, error, not_allowed, not_found,
    routes_over, summarize,
};
use crate::api::{ExperimentEntry, ExperimentList, SiteStatus};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use flambe_experiment::{ResultsDir, Store};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

struct Many {
    root: PathBuf,
    tensorboard: Option<String>,
    /// Each experiment's routes and state, made at its first request (its
    /// state's read-on caches serve the list too).
    routes: Mutex<HashMap<String, (Router, Arc<SiteState>)>>,
}

impl Many {
    /// The routes and state of experiment `name` (a folder of `root`).
    fn experiment(&self, name: &str) -> (Router, Arc<SiteState>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes
            .entry(name.to_string())
            .or_insert_with(|| {
                let state = SiteState::new(
                    ResultsDir::at(self.root.join(name)),
                    self.tensorboard.clone(),
                );
                (routes_over(state.clone()), state)
            })
            .clone()
    }
}

pub(super) fn routes(root: PathBuf, tensorboard: Option<String>) -> Router {
    let many = Arc::new(Many {
        root,
        tensorboard,
        routes: Mutex::new(HashMap::new()),
    });
    assets::routes()
        .route("/api/v1/experiments", get(listing))
        .route("/x/{name}", get(add_slash))
        .route("/x/{name}/", get(one))
        .route("/x/{name}/{*rest}", get(one))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(many)
}

/// The folders of `root` that hold an experiment's state, by name.
fn experiment_folders(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| ResultsDir::at(e.path()).has_state())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

async fn listing(State(many): State<Arc<Many>>) -> ApiResult {
    let experiments = tokio::task::spawn_blocking(move || {
        experiment_folders(&many.root)
            .into_iter()
            .map(|name| {
                let (_, state) = many.experiment(&name);
                entry(&many.root, name, &state)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    Ok(Json(ExperimentList {
        many: true,
        experiments,
    })
    .into_response())
}

/// One experiment's line; one that cannot be read says why instead of
/// hiding the others.
fn entry(root: &Path, name: String, state: &SiteState) -> ExperimentEntry {
    let dir = root.join(&name);
    let href = format!("x/{}/", percent_encode(&name));
    let read = || -> Result<ExperimentEntry, ApiError> {
        let store = Store::open_read_only(&ResultsDir::at(&dir).state_db())
            .map_err(|e| super::internal(&dir, e))?;
        let config = store
            .meta("config")
            .map_err(|e| super::internal(&dir, e))?
            .unwrap_or_default();
        let exp = serde_json::from_str(&config).map_err(|e| super::internal(&dir, e))?;
        let summary = summarize(&Snapshot { store, exp }, &dir, None, Some(&state.live))?;
        Ok(entry_of(&summary, href.clone()))
    };
    read().unwrap_or_else(|ApiError(_, message)| ExperimentEntry {
        name: name.clone(),
        href,
        status: SiteStatus::Starting,
        started: None,
        done: 0,
        total: 0,
        running: 0,
        failed: 0,
        best: None,
        error: Some(message),
    })
}

/// Names as one URL path segment (experiment names are plain words, but a
/// folder may be called anything).
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn add_slash(request: Request) -> Response {
    Redirect::permanent(&format!("{}/", request.uri().path())).into_response()
}

/// A request under `/x/NAME/`, answered by that experiment's own routes
/// with the prefix taken off.
async fn one(
    State(many): State<Arc<Many>>,
    args: Result<UrlPath<Vec<(String, String)>>, PathRejection>,
    request: Request,
) -> Response {
    let args = match args {
        Ok(UrlPath(args)) => args,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()).into_response(),
    };
    let arg = |key: &str| {
        args.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let name = arg("name");
    let plain = Path::new(&name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        && !name.is_empty();
    let dir = many.root.join(&name);
    if !plain || !ResultsDir::at(&dir).has_state() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no experiment `{name}` in {}", many.root.display()),
        )
        .into_response();
    }
    let (router, _) = many.experiment(&name);
    let (mut parts, body) = request.into_parts();
    // The rest of the path as it came (still percent-encoded), after
    // `/x/NAME/`.
    let rest = parts.uri.path().splitn(4, '/').nth(3).unwrap_or("");
    let inner = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let Ok(uri) = inner.parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST, "a path that does not parse").into_response();
    };
    parts.uri = uri;
    // The outer route's path params live in the extensions: the inner
    // routes must see only their own.
    parts.extensions.clear();
    match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
