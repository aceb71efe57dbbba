//! What several test files share: a plain HTTP/1.0 GET on loopback, enough
//! to talk to the report site, Ray's dashboard and TensorBoard without an
//! HTTP client crate in the tests.

use std::io::{Read, Write};

pub mod pbt;
pub mod ray_cluster;

/// GET `path` from `url` (`http://127.0.0.1:PORT[/]` or `127.0.0.1:PORT`):
/// `(status, body)`, or `None` when nothing answers there (yet).
pub fn try_get(url: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    try_get_as(url, path, None)
}

/// [`try_get`] with `Authorization: Bearer TOKEN` where a token is given.
pub fn try_get_as(url: &str, path: &str, token: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

/// [`try_get`] from a server that must be answering.
pub fn get(url: &str, path: &str) -> (u16, Vec<u8>) {
    try_get(url, path).unwrap_or_else(|| panic!("nothing answered GET {path} at {url}"))
}

/// Every file under `root` whose bytes contain `needle`.
pub fn files_containing(root: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && std::fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// A Python package folder `name` (setup.py, version 0.3) whose module
/// says `MARK = "mark"`.
pub fn write_package(dir: &std::path::Path, name: &str, mark: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(
        dir.join(name).join("setup.py"),
        format!("from setuptools import setup\nsetup(name=\"{name}\", version=\"0.3\", py_modules=[\"{name}\"])\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(name).join(format!("{name}.py")),
        format!("MARK = \"{mark}\"\n"),
    )
    .unwrap();
}

/// What two runs of one experiment must agree on, row by row of its
/// results.json: trial, parent, params, status and best metric.
pub fn essence(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["id"], r["parent"], r["params"], r["status"], r["best_metric"]
            )
        })
        .collect()
}

/// Wait for a condition that a running process brings about, polling it;
/// a failure names what was waited for.
pub fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
