//! The report site: a live web view of one experiment, served by the driver
//! (or by `flambe site` over a results folder), reading the experiment's
//! state store read-only while the driver writes it.
//!
//! Pages are one small HTML/JS/CSS app built into the binary (no CDN, no
//! network at run time) that polls the JSON API below every second. The API
//! is versioned under `/api/v1` so scripts can read what the pages show.
//!
//! Listening on loopback needs nothing; listening elsewhere needs a token,
//! given as `?token=` or `Authorization: Bearer`, on every request.

use crate::api::{
    ApiErrorBody, ExperimentSummary, SiteStatus, StageDetail, StageSummary, TrialDetail,
    TrialMetrics,
};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use flambe_config::Experiment;
use flambe_experiment::Store;
use flambe_experiment::{ResultsDir, RunStatus};
use flambe_experiment::{Row, stage_result, trial_row};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Bytes of a log returned by default (the tail).
const LOG_TAIL: u64 = 64 * 1024;

/// Bytes read per chunk of a streamed file download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// How the site is served.
#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// The address and port to listen on (port 0: any free one).
    pub bind: SocketAddr,
    /// Required on every request when set (non-loopback binds).
    pub token: Option<String>,
    /// Where TensorBoard serves this experiment, when it runs.
    pub tensorboard: Option<String>,
}

struct SiteState {
    dir: ResultsDir,
    token: Option<String>,
    tensorboard: Option<String>,
}

/// A running site: its address, and the task serving it.
pub struct Site {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its URL, with the token when there is one.
    pub url: String,
    /// The server; aborting it stops the site.
    pub task: tokio::task::JoinHandle<()>,
}

/// Serve the experiment whose results are (or will be) in `dir`.
pub async fn serve(dir: ResultsDir, opts: SiteOptions) -> std::io::Result<Site> {
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    // `0.0.0.0` is where to listen, not where to browse: name this machine.
    let shown = if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match host.trim() {
            "" => format!("127.0.0.1:{}", addr.port()),
            h => format!("{h}:{}", addr.port()),
        }
    } else {
        addr.to_string()
    };
    let url = match &opts.token {
        Some(t) => format!("http://{shown}/?token={t}"),
        None => format!("http://{shown}/"),
    };
    let app = router(dir, opts);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Site { addr, url, task })
}

/// The site's routes over the results folder `dir`.
pub fn router(dir: ResultsDir, opts: SiteOptions) -> Router {
    let state = Arc::new(SiteState {
        dir,
        token: opts.token,
        tensorboard: opts.tensorboard,
    });
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/v1/experiment", get(experiment))
        .route("/api/v1/stages/{stage}", get(stage))
        .route("/api/v1/trials/{id}", get(trial))
        .route("/api/v1/trials/{id}/metrics", get(metrics))
        .route("/api/v1/trials/{id}/log", get(log))
        .route("/api/v1/trials/{id}/output.tar.gz", get(download))
        .route("/api/v1/trials/{id}/files/{*path}", get(file))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page").into_response() })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this site only answers GET (and HEAD)",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// An API failure: its status and a message, rendered as `{"error": …}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError(status, message.to_string())
}

/// A path segment axum could not decode (bad percent-encoding, not UTF-8),
/// as the same JSON error as every other.
fn path_arg<T>(arg: Result<UrlPath<T>, PathRejection>) -> Result<T, ApiError> {
    arg.map(|UrlPath(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))
}

fn query_arg<T>(arg: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    arg.map(|Query(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))
}

async fn require_token(
    State(state): State<Arc<SiteState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
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

/// The state store and config, opened read-only for one request.
struct Snapshot {
    store: Store,
    exp: Experiment,
}

type ApiResult = Result<Response, ApiError>;

async fn snapshot(state: &SiteState) -> Result<Snapshot, ApiError> {
    let db = state.dir.state_db();
    let dir = state.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        if !db.exists() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the experiment has not started yet",
            ));
        }
        let store = Store::open_read_only(&db).map_err(|e| internal(&dir, e))?;
        let config = store
            .meta("config")
            .map_err(|e| internal(&dir, e))?
            .unwrap_or_default();
        let exp: Experiment = serde_json::from_str(&config).map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("unreadable config in the state: {e}"),
            )
        })?;
        Ok(Snapshot { store, exp })
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
}

fn internal(dir: &Path, e: impl std::fmt::Display) -> ApiError {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("reading the state in {}: {e}", dir.display()),
    )
}

fn num(text: Option<String>) -> Option<f64> {
    text.and_then(|t| t.parse().ok())
}

async fn experiment(State(state): State<Arc<SiteState>>) -> ApiResult {
    let snap = snapshot(&state).await?;
    let meta = |k: &str| snap.store.meta(k).ok().flatten();
    let started = num(meta("started"));
    let ended = num(meta("ended"));
    let status = SiteStatus::from(meta("status").and_then(|s| RunStatus::parse(&s)));
    let now = flambe_experiment::unix_now();
    let elapsed = started.map(|s| {
        if status == SiteStatus::Running {
            now - s
        } else {
            ended.unwrap_or(now) - s
        }
    });
    let mut stages = Vec::new();
    for stage in &snap.exp.pipeline {
        let result = stage_result(&snap.store, stage).map_err(|e| internal(state.dir.path(), e))?;
        stages.push(StageSummary::of(&result, stage.reduce));
    }
    Ok(Json(ExperimentSummary {
        name: snap.exp.name.clone(),
        status,
        started,
        ended,
        elapsed_s: elapsed,
        dir: state.dir.path().to_path_buf(),
        tensorboard: state.tensorboard.clone(),
        stages,
    })
    .into_response())
}

async fn stage(
    State(state): State<Arc<SiteState>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> ApiResult {
    let name = path_arg(name)?;
    let snap = snapshot(&state).await?;
    let Some(stage) = snap.exp.stage(&name) else {
        return Err(error(StatusCode::NOT_FOUND, &format!("no stage `{name}`")));
    };
    let result = stage_result(&snap.store, stage).map_err(|e| internal(state.dir.path(), e))?;
    Ok(Json(StageDetail {
        name: stage.name.clone(),
        metric: stage.metric.clone(),
        mode: stage.mode,
        params: stage.params.iter().map(|p| p.name.clone()).collect(),
        survivors: result.survivors,
        trials: result.rows,
    })
    .into_response())
}

/// A trial's row, if the id is one the experiment knows.
fn find_row(snap: &Snapshot, dir: &Path, id: &str) -> Result<Row, ApiError> {
    let trial = snap
        .store
        .trial(id)
        .map_err(|e| internal(dir, e))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no trial `{id}`")))?;
    let stage = snap.exp.stage(&trial.stage).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!("no stage `{}`", trial.stage),
        )
    })?;
    trial_row(&snap.store, stage, id)
        .map_err(|e| internal(dir, e))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no trial `{id}`")))
}

fn trial_dir(state: &SiteState, id: &str) -> PathBuf {
    state.dir.trial(id).path().to_path_buf()
}

async fn trial(
    State(state): State<Arc<SiteState>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> ApiResult {
    let id = path_arg(id)?;
    let snap = snapshot(&state).await?;
    let row = find_row(&snap, state.dir.path(), &id)?;
    let out = state.dir.trial(&id).out();
    let mut files = Vec::new();
    collect_files(&out, &out, &mut files);
    files.sort();
    let stage_metric = row.metric.clone();
    Ok(Json(TrialDetail {
        row,
        files,
        stage_metric,
    })
    .into_response())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // A link is listed as itself, never followed: a link to `/` would
        // otherwise list the machine.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.display().to_string());
        }
        if out.len() > 1000 {
            return;
        }
    }
}

async fn metrics(
    State(state): State<Arc<SiteState>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> ApiResult {
    let id = path_arg(id)?;
    let snap = snapshot(&state).await?;
    find_row(&snap, state.dir.path(), &id)?;
    let rows = snap
        .store
        .trial_metrics(&id)
        .map_err(|e| internal(state.dir.path(), e))?;
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (step, name, value) in rows {
        series.entry(name).or_default().push((step, value));
    }
    Ok(Json(TrialMetrics {
        id,
        metrics: series,
    })
    .into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    stream: Option<String>,
    tail: Option<u64>,
}

async fn log(
    State(state): State<Arc<SiteState>>,
    id: Result<UrlPath<String>, PathRejection>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult {
    let id = path_arg(id)?;
    let q = query_arg(q)?;
    let snap = snapshot(&state).await?;
    find_row(&snap, state.dir.path(), &id)?;
    let name = match q.stream.as_deref().unwrap_or("stdout") {
        "stdout" => "stdout.log",
        "stderr" => "stderr.log",
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("no log stream `{other}` (stdout or stderr)"),
            ));
        }
    };
    let path = trial_dir(&state, &id).join(name);
    let tail = q.tail.unwrap_or(LOG_TAIL);
    let text = tokio::task::spawn_blocking(move || read_tail(&path, tail))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

fn read_tail(path: &Path, tail: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(tail)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The trial's output folder as a tar.gz, streamed as it is built.
async fn download(
    State(state): State<Arc<SiteState>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> ApiResult {
    let id = path_arg(id)?;
    let snap = snapshot(&state).await?;
    find_row(&snap, state.dir.path(), &id)?;
    let out = state.dir.trial(&id).out();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let prefix = id.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter(tx.clone());
        let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
        let mut archive = tar::Builder::new(gz);
        // Links are stored as links, as `files/` treats them: a trial's link
        // to `/etc/passwd` or to a folder outside never pulls that in, and a
        // dangling one is not an error.
        archive.follow_symlinks(false);
        let result = archive
            .append_dir_all(&prefix, &out)
            .and_then(|()| archive.into_inner())
            .and_then(|gz| gz.finish())
            .map(|_| ());
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let disposition = format!("attachment; filename=\"{id}.tar.gz\"");
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.blocking_send(Ok(buf.to_vec())).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One file of a trial's folder (logs, metrics, anything under `out/`).
/// Only plain relative paths are served: `..`, absolute paths and symlinks
/// that lead outside the trial's folder are refused.
async fn file(
    State(state): State<Arc<SiteState>>,
    args: Result<UrlPath<(String, String)>, PathRejection>,
) -> ApiResult {
    let (id, path) = path_arg(args)?;
    let snap = snapshot(&state).await?;
    find_row(&snap, state.dir.path(), &id)?;
    let rel = Path::new(&path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "only paths inside the trial's folder are served",
        ));
    }
    let root = trial_dir(&state, &id);
    let full = root.join(rel);
    let (Ok(root), Ok(full)) = (root.canonicalize(), full.canonicalize()) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("no file `{path}` in trial `{id}`"),
        ));
    };
    if !full.starts_with(&root) || !full.is_file() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "only files inside the trial's folder are served",
        ));
    }
    // Streamed in chunks: a checkpoint of many GB never sits in memory.
    let opened = tokio::fs::File::open(&full)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let length = opened
        .metadata()
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .len();
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let chunks = tokio_util::io::ReaderStream::with_capacity(opened, DOWNLOAD_CHUNK);
    let mut response = Response::new(Body::from_stream(chunks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
