//! Stamps the git commit and a dirty flag into the binary, so `flambe
//! --version` tells two builds from a checkout apart (a cluster must run the
//! exact build the user runs).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = commit.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let stamp = match commit {
        Some(c) if dirty => format!("{c}-dirty"),
        Some(c) => c,
        None => "no-git".to_string(),
    };
    println!("cargo:rustc-env=FLAMBE_BUILD={stamp}");
    // Rerun when the commit or any tracked source changes the dirty state.
    if let Some(top) = git(&["rev-parse", "--show-toplevel"]) {
        for path in [
            ".git/HEAD",
            ".git/index",
            "crates",
            "Cargo.lock",
            "Cargo.toml",
        ] {
            println!("cargo:rerun-if-changed={top}/{path}");
        }
    }
}
