//! The trial's files as the site serves them: log tails, the output folder
//! as a streamed tar.gz, and single files, never outside the trial's folder.

use super::{ApiResult, SiteState, error, find_row, path_arg, query_arg, snapshot, trial_dir};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::path::{Component, Path};
use std::sync::Arc;

/// Bytes of a log returned by default (the tail).
const LOG_TAIL: u64 = 64 * 1024;

/// Bytes read per chunk of a streamed file download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

#[derive(Deserialize)]
pub(super) struct LogQuery {
    stream: Option<String>,
    tail: Option<u64>,
}

pub(super) async fn log(
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
pub(super) async fn download(
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
pub(super) async fn file(
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
