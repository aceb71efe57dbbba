//! The report site: every API endpoint against a real run, and a real
//! browser (Debian's Chromium driven by playwright-core) watching a run.

mod common;

use assert_cmd::Command;
use common::{get, try_get};
use flambe_testbed::missing_prerequisite;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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

#[test]
fn api_serves_every_view_and_refuses_unknown_ids_and_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_experiment(dir.path(), "api", 0.0);
    let out = Command::new(bin())
        .arg(&config)
        .args(["--cpus", "2", "--no-site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        ("/app.js", "\"use strict\""),
        ("/style.css", ":root"),
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

/// Chromium and playwright-core as scripts/test.sh installs them.
fn browser_tools() -> Option<(String, String)> {
    let tools = flambe_testbed::tools_dir().display().to_string();
    let playwright = format!("{tools}/node/node_modules/playwright-core");
    let chromium = "/usr/bin/chromium".to_string();
    if Path::new(&playwright).exists() && Path::new(&chromium).exists() {
        return Some((playwright, chromium));
    }
    missing_prerequisite(
        "the browser test",
        &format!("needs {chromium} and {playwright} (scripts/test.sh installs them)"),
    );
    None
}

#[test]
fn a_browser_watches_a_run_sorts_trials_opens_the_best_and_downloads_it() {
    let Some((playwright, chromium)) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The trials wait until the browser has read the first count, so it
    // sees the count rise however long Chromium takes to start.
    let gate = dir.path().join("browser-is-watching");
    let config = write_gated_experiment(dir.path(), "browser", 0.4, Some(&gate));
    let mut run = std::process::Command::new(bin())
        .arg(&config)
        .args(["--cpus", "2", "--no-site"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("runs/browser/state.db");
    let start = Instant::now();
    while !db.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Listening on every address, so the page is behind its token: the
    // browser opens the printed `?token=` URL (at loopback, the same port)
    // and must load the page's own assets and API calls with the cookie.
    let (mut site, printed) = start_site_with(&config, &["--site-host", "0.0.0.0"]);
    let (base, token) = printed.split_once("/?token=").expect("a token URL");
    let port = base.rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    assert_eq!(get(&format!("127.0.0.1:{port}"), "/app.js").0, 401);
    // Screenshots are kept for CI under the target folder, not committed.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("site-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/site.cjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(&url)
        .arg(&shots)
        .arg("6")
        .arg(&gate)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    assert!(run.wait().unwrap().success());
    site.kill().unwrap();
    site.wait().unwrap();
    assert!(
        out.status.success(),
        "browser script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    let counts: Vec<&str> = seen["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(counts.last(), Some(&"6/6"));
    assert!(counts.len() >= 3, "the count rose live: {counts:?}");
    let sorted: Vec<f64> = seen["sorted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        sorted.windows(2).all(|w| w[0] >= w[1]),
        "sorted by score, best first: {sorted:?}"
    );
    assert_eq!(seen["best"], "train-005");
    assert_eq!(seen["points"], 5, "one point per reported step");
    let download = std::fs::read(seen["download"].as_str().unwrap()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(download.as_slice()));
    let mut model = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("model.txt") {
            entry.read_to_string(&mut model).unwrap();
        }
    }
    assert_eq!(model, "model-6\n");
    for shot in ["overview.png", "stage.png", "trial.png"] {
        assert!(shots.join(shot).metadata().unwrap().len() > 1000, "{shot}");
    }
}

#[test]
fn the_site_links_a_tensorboard_it_started_when_one_is_installed() {
    let tools = flambe_testbed::tools_dir().display().to_string();
    let venv_bin = format!("{tools}/venv/bin");
    if !Path::new(&venv_bin).join("tensorboard").exists() {
        missing_prerequisite(
            "the TensorBoard link test",
            &format!("needs {venv_bin}/tensorboard (scripts/test.sh installs it)"),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_experiment(dir.path(), "tblink", 0.0);
    assert!(
        Command::new(bin())
            .arg(&config)
            .arg("--no-site")
            .output()
            .unwrap()
            .status
            .success()
    );
    // Without tensorboard on PATH the site says how to get it.
    let mut bare = std::process::Command::new(bin())
        .arg("site")
        .arg(&config)
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(bare.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("Report site: ").unwrap().to_string();
    assert_eq!(
        get_json(&url, "/api/v1/experiment").1["tensorboard"],
        Value::Null
    );
    bare.kill().unwrap();
    bare.wait().unwrap();

    let path = format!("{venv_bin}:{}", std::env::var("PATH").unwrap_or_default());
    let mut child = std::process::Command::new(bin())
        .arg("site")
        .arg(&config)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep reading its stdout open: it prints the TensorBoard line next.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let url = line.strip_prefix("Report site: ").unwrap().to_string();
    assert!(
        lines
            .next()
            .unwrap()
            .unwrap()
            .starts_with("TensorBoard: http://127.0.0.1:")
    );
    let tb = get_json(&url, "/api/v1/experiment").1["tensorboard"]
        .as_str()
        .unwrap()
        .to_string();
    // TensorBoard takes a few seconds to come up: wait for it to answer.
    let start = Instant::now();
    let status = loop {
        if let Some((200, body)) = try_get(&tb, "/data/runs") {
            break String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "TensorBoard at {tb} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        status.contains("train-000") || status.contains("[]"),
        "{status}"
    );
}

/// GET `path` and count the body's bytes as they arrive, never holding it:
/// (status, body length, the first bytes of the body).
fn get_counted(url: &str, path: &str) -> (u16, u64, Vec<u8>) {
    use std::io::Write;
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut first = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first.len() < 4096 {
            first.extend_from_slice(&buf[..n.min(4096 - first.len())]);
        }
        total += n as u64;
    }
    (status, total, first)
}

/// The most memory the process ever held (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn downloads_are_streamed_and_never_leave_the_trial_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exp.yaml");
    // A sparse 1 GiB checkpoint, and links out of the folder: to a file, to
    // a folder, and to nothing.
    std::fs::write(
        &config,
        r#"!Experiment
name: big
save_path: ./runs
pipeline:
  train: !Stage
    run: |-
      truncate -s 1G {out}/checkpoint.bin && echo kept > {out}/kept.txt && ln -s /etc/passwd {out}/passwd && ln -s /etc {out}/etc && ln -s /nowhere/at/all {out}/dangling && echo '{"step": 1, "score": 1}' >> $FLAMBE_METRICS
    metric: score
    mode: max
"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .arg(&config)
        .args(["--no-site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut site, url) = start_site(&config);
    let pid = site.id();
    let before = peak_memory(pid);

    let (s, length, _) = get_counted(&url, "/api/v1/trials/train-000/files/out/checkpoint.bin");
    assert_eq!((s, length), (200, 1 << 30));
    let after = peak_memory(pid);
    assert!(
        after < before + (64 << 20),
        "serving 1 GiB raised the site's peak memory from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );

    // The listing names the links, and nothing behind the folder link.
    let (s, trial) = get_json(&url, "/api/v1/trials/train-000");
    assert_eq!(s, 200);
    let files: Vec<&str> = trial["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        ["checkpoint.bin", "dangling", "etc", "kept.txt", "passwd"]
    );
    assert_eq!(
        get(&url, "/api/v1/trials/train-000/files/out/passwd").0,
        400,
        "a link out of the folder is not served"
    );

    // The archive is whole (a dangling link does not break it), stores the
    // links as links and holds nothing from outside the folder.
    std::fs::remove_file(
        dir.path()
            .join("runs/big/trials/train-000/out/checkpoint.bin"),
    )
    .unwrap();
    let (s, tgz) = get(&url, "/api/v1/trials/train-000/output.tar.gz");
    assert_eq!(s, 200);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.expect("a whole archive");
        let name = entry.path().unwrap().display().to_string();
        let kind = entry.header().entry_type();
        let target = entry.link_name().unwrap().map(|t| t.display().to_string());
        let mut body = String::new();
        if kind.is_file() {
            entry.read_to_string(&mut body).unwrap();
        }
        entries.push((name, kind.is_symlink(), target, body));
    }
    entries.sort();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert!(
        entries.iter().all(|(_, _, _, body)| body != &passwd),
        "{entries:?}"
    );
    let links: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.1)
        .map(|e| (e.0.as_str(), e.2.as_deref()))
        .collect();
    assert_eq!(
        links,
        [
            ("train-000/dangling", Some("/nowhere/at/all")),
            ("train-000/etc", Some("/etc")),
            ("train-000/passwd", Some("/etc/passwd")),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|(name, ..)| !name.starts_with("train-000/etc/")),
        "nothing from behind the folder link: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(name, _, _, body)| name == "train-000/kept.txt" && body == "kept\n")
    );
    site.kill().unwrap();
    site.wait().unwrap();
}

#[test]
fn every_api_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_experiment(dir.path(), "errs", 0.0);
    assert!(
        Command::new(bin())
            .arg(&config)
            .args(["--no-site"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let (mut site, url) = start_site(&config);
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let request = |method: &str, path: &str| -> (u16, Value) {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(
            head.contains("content-type: application/json"),
            "{method} {path}: {head}"
        );
        (status, serde_json::from_slice(&raw[split + 4..]).unwrap())
    };
    for (method, path, status) in [
        ("GET", "/api/v1/trials/train-000/log?tail=-1", 400),
        ("GET", "/api/v1/trials/train-000/log?tail=lots", 400),
        ("GET", "/api/v1/trials/%FF%FE/metrics", 400),
        ("GET", "/api/v1/stages/%C3%28", 400),
        ("POST", "/api/v1/experiment", 405),
        ("DELETE", "/api/v1/trials/train-000", 405),
        ("PUT", "/", 405),
        ("GET", "/api/v1/nothing/here", 404),
        ("GET", "/api/v1/trials/nope", 404),
    ] {
        let (got, body) = request(method, path);
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
    site.kill().unwrap();
    site.wait().unwrap();
}
