//! The report site: every API endpoint against a real run, and a real
//! browser (Debian's Chromium driven by playwright-core) watching a run.

use crate::common::{get, try_get};
use assert_cmd::Command;
use flambe_testbed::missing_prerequisite;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod browser;
mod downloads;
mod views;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("flambe")
}

/// An experiment whose trials report `score` at steps 1..=STEPS.
fn write_experiment(dir: &Path, name: &str, sleep: f64) -> PathBuf {
    write_gated_experiment(dir, name, sleep, None)
}

/// [`write_experiment`] whose trials wait for `gate` to exist before
/// their first step.
fn write_gated_experiment(dir: &Path, name: &str, sleep: f64, gate: Option<&Path>) -> PathBuf {
    let wait = gate.map_or(String::new(), |g| {
        format!("while [ ! -e {} ]; do sleep 0.05; done; ", g.display())
    });
    let config = dir.join("exp.yaml");
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: {name}
save_path: ./runs
pipeline:
  train: !Stage
    run: |-
      {wait}for step in 1 2 3 4 5; do echo "{{\"step\": $step, \"score\": $(python3 -c "print({{q}} * $step / 10)")}}" >> $FLAMBE_METRICS; sleep {sleep}; done; echo model-{{q}} > {{out}}/model.txt; echo trained {{q}}
    params:
      q: !g [1, 5, 3, 4, 2, 6]
    cpus: 1
    metric: score
    mode: max
"#
        ),
    )
    .unwrap();
    config
}

/// Start `flambe site TARGET` and return it with its URL.
fn start_site(target: &Path) -> (Child, String) {
    start_site_with(target, &[])
}

fn start_site_with(target: &Path, args: &[&str]) -> (Child, String) {
    let mut child = std::process::Command::new(bin())
        .arg("site")
        .arg(target)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("flambe site printed its URL").unwrap();
        if let Some(url) = line.strip_prefix("Report site: ") {
            break url.to_string();
        }
    };
    (child, url)
}

fn get_json(url: &str, path: &str) -> (u16, Value) {
    let (status, body) = get(url, path);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Run an experiment to its end, here, without a site of its own.
fn run_ok(config: &Path) {
    let out = Command::new(bin())
        .arg(config)
        .args(["--cpus", "2", "--no-site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn api_serves_every_view_and_refuses_unknown_ids_and_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_experiment(dir.path(), "api", 0.0);
    run_ok(&config);
    let (mut site, url) = start_site(&config);

    let (s, exp) = get_json(&url, "/api/v1/experiment");
    assert_eq!(s, 200);
    assert_eq!(exp["name"], "api");
    assert_eq!(exp["status"], "finished");
    assert_eq!(exp["stages"][0]["done"], 6);
    assert_eq!(exp["stages"][0]["best"]["id"], "train-005");

    let (s, stage) = get_json(&url, "/api/v1/stages/train");
    assert_eq!(s, 200);
    let ids: Vec<&str> = stage["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "train-005",
            "train-001",
            "train-003",
            "train-002",
            "train-004",
            "train-000"
        ],
        "ranked by score"
    );
    assert_eq!(stage["params"], serde_json::json!(["q"]));

    let (s, trial) = get_json(&url, "/api/v1/trials/train-005");
    assert_eq!(s, 200);
    assert_eq!(trial["params"]["q"], 6);
    assert_eq!(trial["best_step"], 5);
    assert_eq!(trial["files"], serde_json::json!(["model.txt"]));

    let (s, metrics) = get_json(&url, "/api/v1/trials/train-005/metrics");
    assert_eq!(s, 200);
    let score = metrics["metrics"]["score"].as_array().unwrap();
    assert_eq!(score.len(), 5);
    assert_eq!(score[4], serde_json::json!([5, 3.0]));

    let (s, log) = get(&url, "/api/v1/trials/train-005/log?stream=stdout");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&log).ends_with("trained 6\n"));
    assert_eq!(
        get(&url, "/api/v1/trials/train-005/log?stream=other").0,
        400
    );

    let (s, file) = get(&url, "/api/v1/trials/train-005/files/out/model.txt");
    assert_eq!((s, file.as_slice()), (200, b"model-6\n".as_slice()));

    let (s, tgz) = get(&url, "/api/v1/trials/train-005/output.tar.gz");
    assert_eq!(s, 200);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.contains(&"train-005/model.txt".to_string()),
        "{names:?}"
    );

    for path in [
        "/api/v1/trials/nope",
        "/api/v1/trials/nope/metrics",
        "/api/v1/trials/nope/log",
        "/api/v1/trials/nope/output.tar.gz",
        "/api/v1/stages/nope",
        "/api/v1/trials/..%2F..%2Fstate.db/files/x",
        "/nope",
    ] {
        assert_eq!(get(&url, path).0, 404, "{path}");
    }
    for path in [
        "/api/v1/trials/train-005/files/out/../../../state.db",
        "/api/v1/trials/train-005/files/..%2F..%2F..%2Fstate.db",
        "/api/v1/trials/train-005/files/%2Fetc%2Fpasswd",
    ] {
        let (s, body) = get(&url, path);
        assert_eq!(s, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    for (path, kind) in [
        ("/", "<!doctype html>"),
        ("/app.js", "import "),
        ("/style.css", ":root"),
        ("/stage.js", "export function stageView"),
        ("/vendor/uPlot.iife.min.js", "var uPlot="),
        ("/vendor/uPlot.min.css", ".uplot"),
    ] {
        let (s, body) = get(&url, path);
        assert_eq!(s, 200);
        assert!(String::from_utf8_lossy(&body).contains(kind), "{path}");
    }
    site.kill().unwrap();
    site.wait().unwrap();
}

#[test]
fn a_public_site_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_experiment(dir.path(), "tok", 0.0);
    assert!(
        Command::new(bin())
            .arg(&config)
            .args(["--no-site"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut child = std::process::Command::new(bin())
        .arg("site")
        .arg(&config)
        .args(["--site-host", "0.0.0.0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("Report site: ")
        .unwrap()
        .to_string();
    let (base, token) = url.split_once("/?token=").unwrap();
    assert_eq!(token.len(), 32);
    let port = base.rsplit(':').next().unwrap();
    let local = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&local, "/api/v1/experiment").0, 401);
    assert_eq!(get(&local, "/api/v1/experiment?token=wrong").0, 401);
    assert_eq!(
        get(&local, &format!("/api/v1/experiment?token={token}")).0,
        200
    );
    // A URL a browser can open, not the wildcard it listens on.
    assert!(!base.contains("0.0.0.0"), "{url}");
    // The page sets a cookie, and its own assets and API calls, which carry
    // no token, are served with it (a browser would otherwise stay at
    // "Loading…").
    let (status, head) = raw_get(&local, &format!("/?token={token}"), "");
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .unwrap_or_else(|| panic!("no cookie set:\n{head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    for path in ["/app.js", "/style.css", "/api/v1/experiment"] {
        assert_eq!(
            raw_get(&local, path, "").0,
            401,
            "{path} without the cookie"
        );
        assert_eq!(
            raw_get(&local, path, &format!("Cookie: {pair}\r\n")).0,
            200,
            "{path} with the cookie"
        );
    }
    assert_eq!(
        raw_get(&local, "/app.js", "Cookie: flambe_token=wrong\r\n").0,
        401
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// GET with extra header lines: (status, response head).
fn raw_get(url: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}
