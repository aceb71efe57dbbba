//! The report site: a live web view of one experiment, served by the driver
//! (or by `flambe site` over a results folder, or over a `save_path` of
//! several experiments, each under `/x/NAME/`), reading the experiments'
//! state stores read-only while their drivers write them.
//!
//! Pages are one small JS app built into the binary (`assets`: no CDN, no
//! network at run time, uPlot vendored for the charts) that polls the JSON
//! API below every second and updates its charts and tables in place. The
//! API is versioned under `/api/v1` so scripts can read what pages show.
//!
//! Listening on loopback needs nothing; listening elsewhere needs a token,
//! given as `?token=` or `Authorization: Bearer`, on every request.

mod assets;
mod curves;
mod files;
mod many;
mod token;

use crate::api::{
    ApiErrorBody, ExperimentEntry, ExperimentList, ExperimentSummary, SiteStatus, StageBest,
    StageDetail, StageSummary, TrialDetail, TrialMetrics,
};
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use flambe_config::{Experiment, ParamSpec};
use flambe_experiment::Store;
use flambe_experiment::{LiveCurves, Row, stage_result, stage_result_live, trial_row};
use flambe_experiment::{ResultsDir, RunStatus};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

pub use token::new_token;

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

/// What a site serves: one experiment's results folder, or a `save_path`
/// whose folders are experiments (listed at `/`, each under `/x/NAME/`).
#[derive(Debug, Clone)]
pub enum Served {
    /// One experiment.
    One(ResultsDir),
    /// Every experiment under this folder, as they appear.
    Many(PathBuf),
}

pub(super) struct SiteState {
    dir: ResultsDir,
    tensorboard: Option<String>,
    /// Each (stage, metric)'s curves, read on from where the last request
    /// left off: the ranking and whole curve answers come from them (pages
    /// ask for both every second).
    live: Mutex<LiveStages>,
    /// Each stage's metric names so far, and the cursor they were read to.
    metric_names: Mutex<HashMap<String, (i64, std::collections::BTreeSet<String>)>>,
}

/// The curves a site keeps, by (stage, metric).
type LiveStages = HashMap<(String, String), LiveCurves>;

/// A stage's ranked rows, read on from `live` when there is one.
fn ranked_stage(
    snap: &Snapshot,
    stage: &flambe_config::Stage,
    live: Option<&Mutex<LiveStages>>,
) -> rusqlite::Result<flambe_experiment::StageResult> {
    match live {
        Some(live) => {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            let metric = stage.metric.clone().unwrap_or_default();
            let kept = live.entry((stage.name.clone(), metric)).or_default();
            stage_result_live(&snap.store, stage, kept)
        }
        None => stage_result(&snap.store, stage),
    }
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

/// Serve the experiment whose results are (or will be) in `dir`, or every
/// experiment of a `save_path`.
pub async fn serve(served: Served, opts: SiteOptions) -> std::io::Result<Site> {
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
    let app = router(served, opts);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Site { addr, url, task })
}

/// The site's routes, behind the token when there is one.
pub fn router(served: Served, opts: SiteOptions) -> Router {
    let app = match served {
        Served::One(dir) => experiment_routes(dir, opts.tensorboard),
        Served::Many(root) => many::routes(root, opts.tensorboard),
    };
    app.layer(middleware::from_fn_with_state(
        Arc::new(opts.token),
        token::require_token,
    ))
}

/// One experiment's pages and API (no token: the caller's layer checks it).
fn experiment_routes(dir: ResultsDir, tensorboard: Option<String>) -> Router {
    routes_over(SiteState::new(dir, tensorboard))
}

impl SiteState {
    fn new(dir: ResultsDir, tensorboard: Option<String>) -> Arc<SiteState> {
        Arc::new(SiteState {
            dir,
            tensorboard,
            live: Mutex::default(),
            metric_names: Mutex::default(),
        })
    }
}

/// The routes of one experiment over its state (which a site of many
/// also reads for its list).
fn routes_over(state: Arc<SiteState>) -> Router {
    assets::routes()
        .route("/api/v1/experiment", get(experiment))
        .route("/api/v1/experiments", get(listing_of_one))
        .route("/api/v1/stages/{stage}", get(stage))
        .route("/api/v1/stages/{stage}/metrics", get(curves::stage_curves))
        .route("/api/v1/trials/{id}", get(trial))
        .route("/api/v1/trials/{id}/metrics", get(metrics))
        .route("/api/v1/trials/{id}/log", get(files::log))
        .route("/api/v1/trials/{id}/output.tar.gz", get(files::download))
        .route("/api/v1/trials/{id}/files/{*path}", get(files::file))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(state)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page").into_response()
}

async fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this site only answers GET (and HEAD)",
    )
    .into_response()
}

/// An API failure: its status and a message, rendered as `{"error": …}`.
#[derive(Debug)]
pub(super) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError(status, message.to_string())
}

/// A path segment axum could not decode (bad percent-encoding, not UTF-8),
/// as the same JSON error as every other.
pub(super) fn path_arg<T>(arg: Result<UrlPath<T>, PathRejection>) -> Result<T, ApiError> {
    arg.map(|UrlPath(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))
}

pub(super) fn query_arg<T>(arg: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    arg.map(|Query(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))
}

/// The state store and config, opened read-only for one request.
pub(super) struct Snapshot {
    store: Store,
    exp: Experiment,
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) async fn snapshot(state: &SiteState) -> Result<Snapshot, ApiError> {
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

pub(super) fn internal(dir: &Path, e: impl std::fmt::Display) -> ApiError {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("reading the state in {}: {e}", dir.display()),
    )
}

fn num(text: Option<String>) -> Option<f64> {
    text.and_then(|t| t.parse().ok())
}

/// Where an experiment stands, from a snapshot of its state.
fn summarize(
    snap: &Snapshot,
    dir: &Path,
    tensorboard: Option<String>,
    live: Option<&Mutex<LiveStages>>,
) -> Result<ExperimentSummary, ApiError> {
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
        let result = ranked_stage(snap, stage, live).map_err(|e| internal(dir, e))?;
        stages.push(StageSummary::of(&result, stage.reduce));
    }
    Ok(ExperimentSummary {
        name: snap.exp.name.clone(),
        status,
        started,
        ended,
        elapsed_s: elapsed,
        dir: dir.to_path_buf(),
        tensorboard,
        stages,
    })
}

/// An experiment as a line of the list of experiments.
fn entry_of(summary: &ExperimentSummary, href: String) -> ExperimentEntry {
    let sum = |f: fn(&StageSummary) -> usize| summary.stages.iter().map(f).sum();
    ExperimentEntry {
        name: summary.name.clone(),
        href,
        status: summary.status,
        started: summary.started,
        done: sum(|s| s.done),
        total: sum(|s| s.total),
        running: sum(|s| s.running),
        failed: sum(|s| s.failed),
        best: summary.stages.iter().rev().find_map(|s| {
            s.best.clone().map(|trial| StageBest {
                stage: s.name.clone(),
                metric: s.metric.clone(),
                trial,
            })
        }),
        error: None,
    }
}

async fn experiment(State(state): State<Arc<SiteState>>) -> ApiResult {
    let snap = snapshot(&state).await?;
    let summary = summarize(
        &snap,
        state.dir.path(),
        state.tensorboard.clone(),
        Some(&state.live),
    )?;
    Ok(Json(summary).into_response())
}

async fn listing_of_one(State(state): State<Arc<SiteState>>) -> ApiResult {
    let snap = snapshot(&state).await?;
    let summary = summarize(&snap, state.dir.path(), None, Some(&state.live))?;
    Ok(Json(ExperimentList {
        many: false,
        experiments: vec![entry_of(&summary, "./".into())],
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
    let result =
        ranked_stage(&snap, stage, Some(&state.live)).map_err(|e| internal(state.dir.path(), e))?;
    Ok(Json(StageDetail {
        name: stage.name.clone(),
        metric: stage.metric.clone(),
        mode: stage.mode,
        params: stage.params.iter().map(|p| p.name.clone()).collect(),
        log_params: stage
            .params
            .iter()
            .filter(|p| matches!(p.spec, ParamSpec::LogUniform { .. }))
            .map(|p| p.name.clone())
            .collect(),
        survivors: result.survivors,
        trials: result.rows,
    })
    .into_response())
}

/// A trial's row, if the id is one the experiment knows.
pub(super) fn find_row(snap: &Snapshot, dir: &Path, id: &str) -> Result<Row, ApiError> {
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

pub(super) fn trial_dir(state: &SiteState, id: &str) -> PathBuf {
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
