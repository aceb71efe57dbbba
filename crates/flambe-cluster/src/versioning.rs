//! Exact remote versions: every host runs the very `flambe` binary that runs
//! here, same build, dirty developer builds included. Binaries are kept on
//! hosts as `~/.flambe/bin/flambe-<sha256>` with `~/.flambe/bin/flambe`
//! pointing at the current one, so a host that has the build already is not
//! sent it again, and two builds never overwrite each other. A build is
//! checked whole (its sha256 there) when it arrives, and only then takes its
//! name; after that the name is trusted, as cargo and uv trust their
//! content-addressed caches, and a host that has the build costs one round
//! trip (its platform, the build's `--version`, the link) rather than a
//! hash of the whole file each time.

use crate::host::{Host, HostError, shell_quote};
use crate::remote_home::RemoteHome;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The running binary and its sha256.
pub fn local_binary() -> std::io::Result<(PathBuf, String)> {
    static HASH: OnceLock<(PathBuf, String)> = OnceLock::new();
    if let Some(v) = HASH.get() {
        return Ok(v.clone());
    }
    let exe = std::env::current_exe()?;
    let hash = sha256_file(&exe)?;
    Ok(HASH.get_or_init(|| (exe, hash)).clone())
}

/// The sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// What `uname -sm` must say for this build to run there.
pub fn local_platform() -> (String, String) {
    (
        std::env::consts::OS.to_string(),
        std::env::consts::ARCH.to_string(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipped {
    /// The host had this build already.
    AlreadyThere,
    Sent,
}

/// What one look at a host found: its platform, and whether this build is
/// there and answers `--version` as it does here (then it is the current
/// build there already).
struct Found {
    os: String,
    arch: String,
    current: bool,
}

/// The marker line after which the host's answer is the build's own.
const CURRENT: &str = "flambe-build-current";

/// The shell lines of one look at a host: its platform and, where this
/// build is there already (its file is named by its sha256, and was
/// checked whole when it arrived), whether it runs as it does here; if so
/// it is made the current build at once. Part of the first command a
/// bring-up runs on a host, so that a host with this build costs no round
/// trip of its own.
pub fn look_script() -> Result<String, HostError> {
    let (exe, hash) = local_binary().map_err(|e| HostError::Other {
        host: "this machine".to_string(),
        detail: format!("cannot read the local flambe binary: {e}"),
    })?;
    let (_, version) = local_version(&exe);
    let remote = RemoteHome::relative();
    let versioned = remote.flambe_build(&hash);
    Ok(format!(
        "uname -sm; if test -x {versioned} && [ \"$({versioned} --version 2>/dev/null)\" = {expected} ]; then \
         ln -sfn flambe-{hash} {link} && echo {CURRENT}; fi",
        expected = shell_quote(version.trim_end_matches('\n')),
        link = remote.flambe(),
    ))
}

/// What [`look_script`] printed.
fn parse_look(out: &str) -> Found {
    let mut lines = out.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    Found {
        os: parts.next().unwrap_or("").to_lowercase(),
        arch: parts.next().unwrap_or("").to_string(),
        current: lines.any(|l| l.trim() == CURRENT),
    }
}

/// Make sure `host` runs this build; refuse a host it cannot run on.
/// `looked` is what [`look_script`] printed there, when it was part of an
/// earlier command; else it is run now. A host that has the build costs
/// nothing more.
pub async fn ship_binary(host: &Host, looked: Option<&str>) -> Result<Shipped, HostError> {
    let (exe, hash) = local_binary().map_err(|e| HostError::Other {
        host: host.name().to_string(),
        detail: format!("cannot read the local flambe binary: {e}"),
    })?;
    let (code, _) = local_version(&exe);
    let found = match looked {
        Some(out) => parse_look(out),
        None => parse_look(&host.check(&look_script()?).await?),
    };
    let (local_os, local_arch) = local_platform();
    if found.os != local_os || found.arch != local_arch {
        return Err(HostError::Unmet {
            host: host.name().to_string(),
            detail: format!(
                "runs {} {}, but this flambe is a {local_os} {local_arch} build and cannot run there",
                found.os, found.arch
            ),
            hint: format!(
                "run flambe from a {} {} machine, or use hosts of this platform",
                found.os, found.arch
            ),
        });
    }
    if found.current && code == Some(0) {
        return Ok(Shipped::AlreadyThere);
    }
    let remote = RemoteHome::relative();
    let versioned = remote.flambe_build(&hash);
    // Through the command's stdin: a bare host needs no rsync for this.
    let bytes = std::fs::read(&exe).map_err(|e| HostError::Other {
        host: host.name().to_string(),
        detail: format!("cannot read the local flambe binary {}: {e}", exe.display()),
    })?;
    let got = host
        .check_output_of(
            &format!(
                "mkdir -p {bin} && cat > {versioned}.part && chmod 755 {versioned}.part && \
                 sha256sum {versioned}.part | cut -d' ' -f1",
                bin = remote.bin()
            ),
            Some(&bytes),
        )
        .await?;
    if got.trim() != hash {
        return Err(HostError::Other {
            host: host.name().to_string(),
            detail: format!(
                "the binary arrived with sha256 {}, expected {hash}",
                got.trim()
            ),
        });
    }
    host.check(&format!("mv {versioned}.part {versioned}"))
        .await?;
    runs_there(host, &exe, &versioned).await?;
    host.check(&format!("ln -sfn flambe-{hash} {}", remote.flambe()))
        .await?;
    Ok(Shipped::Sent)
}

/// What `flambe --version` does here: the shipped copy must do the same on a
/// host before the host is trusted with anything.
fn local_version(exe: &Path) -> (Option<i32>, String) {
    static LOCAL: OnceLock<(Option<i32>, String)> = OnceLock::new();
    LOCAL
        .get_or_init(
            || match std::process::Command::new(exe).arg("--version").output() {
                Ok(out) => (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                ),
                Err(e) => (None, e.to_string()),
            },
        )
        .clone()
}

/// Run the shipped binary's `--version` there; refuse the host, with the
/// loader's own words, when it does not behave as it does here (a C library
/// too old for a dynamically linked build, a kernel too old).
async fn runs_there(host: &Host, exe: &Path, versioned: &str) -> Result<(), HostError> {
    let (code, stdout) = local_version(exe);
    let there = host.run(&format!("{versioned} --version")).await?;
    if there.code == code && there.stdout == stdout {
        return Ok(());
    }
    let said = match (there.stderr.trim(), there.code) {
        ("", Some(c)) => format!("exit code {c}"),
        ("", None) => "killed".to_string(),
        (stderr, _) => stderr.lines().take(3).collect::<Vec<_>>().join(" / "),
    };
    Err(HostError::Unmet {
        host: host.name().to_string(),
        detail: format!("the flambe binary shipped there cannot run: {said}"),
        hint: "install flambe as the README says (a static build for x86_64-unknown-linux-musl runs on any x86_64 Linux), \
               or use hosts whose C library is at least as new as this machine's"
            .to_string(),
    })
}
