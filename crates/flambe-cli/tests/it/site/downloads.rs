//! Downloads stream and stay inside the trial's folder; every API error
//! is JSON.

use super::*;

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
