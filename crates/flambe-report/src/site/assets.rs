//! The pages, built into the binary: nothing is fetched from elsewhere, so
//! the site works on an orchestrator without internet. `vendor/` holds
//! uPlot (MIT, see `assets/vendor/uPlot.LICENSE`), the chart library.

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `(path, type, body)` of every file the pages load.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", HTML, include_str!("../../assets/index.html")),
    ("style.css", CSS, include_str!("../../assets/style.css")),
    ("app.js", JS, include_str!("../../assets/app.js")),
    ("util.js", JS, include_str!("../../assets/util.js")),
    ("charts.js", JS, include_str!("../../assets/charts.js")),
    (
        "parcoords.js",
        JS,
        include_str!("../../assets/parcoords.js"),
    ),
    ("table.js", JS, include_str!("../../assets/table.js")),
    ("overview.js", JS, include_str!("../../assets/overview.js")),
    ("stage.js", JS, include_str!("../../assets/stage.js")),
    ("trial.js", JS, include_str!("../../assets/trial.js")),
    ("compare.js", JS, include_str!("../../assets/compare.js")),
    ("curves.js", JS, include_str!("../../assets/curves.js")),
    (
        "vendor/uPlot.iife.min.js",
        JS,
        include_str!("../../assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        CSS,
        include_str!("../../assets/vendor/uPlot.min.css"),
    ),
];

/// The routes of the pages' files, to which the API's are added.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/{file}",
            get(|UrlPath(file): UrlPath<String>| async move { asset(&file) }),
        )
        .route(
            "/vendor/{file}",
            get(|UrlPath(file): UrlPath<String>| async move { asset(&format!("vendor/{file}")) }),
        )
}

fn asset(path: &str) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => super::error(StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}
