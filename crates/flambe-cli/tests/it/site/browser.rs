//! The site in a real browser (Debian's Chromium through playwright-core),
//! and the TensorBoard it links.

use super::*;

/// Chromium and playwright-core as scripts/test.sh installs them.
pub(super) fn browser_tools() -> Option<(String, String)> {
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
    let config = write_gated_experiment(dir.path(), "browser", 0.5, Some(&gate));
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
    let growth = &seen["growth"];
    assert!(
        growth["after"].as_u64() > growth["before"].as_u64(),
        "the running trial's chart grew: {growth}"
    );
    assert_eq!(growth["sameElement"], true, "no page rebuild: {growth}");
    assert_eq!(
        growth["sameChart"], true,
        "the chart was fed, not remade: {growth}"
    );
    assert_eq!(growth["connected"], true, "{growth}");
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
