//! One host, reached over OpenSSH (the `openssh` crate: the system's `ssh`
//! with a multiplexed master connection, so each command costs a round trip,
//! not a handshake). Every failure names the host and the command and
//! carries what the command printed on stderr.

use crate::state::ClusterFiles;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use std::path::Path;
use std::time::Duration;

/// Why something failed on one host; each names the host.
#[allow(missing_docs)] // each variant's #[error] message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot reach {host} ({addr}): {detail}")]
    Unreachable {
        host: String,
        addr: String,
        detail: String,
    },
    #[error(
        "the host key of {host} ({addr}) is not the one pinned when the cluster was created: refusing to connect"
    )]
    HostKeyChanged {
        host: String,
        addr: String,
        known_hosts: String,
    },
    #[error("cannot log in to {host} ({addr}) as {user}: {detail}")]
    Login {
        host: String,
        addr: String,
        user: String,
        detail: String,
    },
    #[error("on {host}, `{command}` failed ({status}){}", stderr_block(.stderr))]
    Command {
        host: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("on {host}, `{command}` did not finish within {secs} s")]
    Timeout {
        host: String,
        command: String,
        secs: u64,
    },
    #[error("{host}: {detail}")]
    Other { host: String, detail: String },
    /// Something the host lacks that flambe cannot bring itself; `hint`
    /// says what to do there.
    #[error("{host}: {detail}")]
    Unmet {
        host: String,
        detail: String,
        hint: String,
    },
}

impl flambe_config::Hint for HostError {
    fn hint(&self) -> Option<String> {
        match self {
            HostError::HostKeyChanged { known_hosts, .. } => Some(format!(
                "if the machine was really reinstalled, remove its line from {known_hosts} and run again"
            )),
            HostError::Unmet { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }
}

fn stderr_block(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        let tail: Vec<&str> = trimmed.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(":\n    {}", tail.join("\n    "))
    }
}

/// A command as logs show it: its first line, at most 160 characters
/// (scripts and binaries go by stdin; commands carry no secrets).
fn shown_command(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    let mut shown: String = first.chars().take(160).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    shown
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A finished remote command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// How to reach a host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host's name in the cluster (`lab_factory_0`), also its alias in
    /// the cluster's ssh_config.
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub user: String,
}

/// One host, over a multiplexed OpenSSH connection.
pub struct Host {
    /// How it is reached.
    pub target: Target,
    session: Session,
    /// The cluster's ssh_config: commands run through our own `ssh` on the
    /// session's control socket (see [`Host::run`]).
    ssh_config: std::path::PathBuf,
    /// Ends the master connection, and the tunnels on it, if this process
    /// dies without closing it (see [`MasterGuard`]).
    guard: Option<MasterGuard>,
}

/// The `openssh` crate's master connection is a daemon (`ssh -f`, with
/// `ControlPersist=yes`): were flambe killed (SIGKILL, a lost terminal), it
/// would live on with every tunnel it carries. The guard is a small shell
/// of its own process group reading a pipe only this process holds; when
/// the pipe closes, however this process ended, it tells the master to exit.
struct MasterGuard {
    child: std::process::Child,
}

impl MasterGuard {
    fn start(control_socket: &Path) -> Option<MasterGuard> {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; exec ssh -F /dev/null -o ControlPath="$1" -O exit flambe-master 2>/dev/null"#)
            .arg("sh")
            .arg(control_socket)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Not in the terminal's group: Ctrl-C reaches flambe, which
            // closes its connections itself.
            .process_group(0)
            .spawn();
        match child {
            Ok(child) => Some(MasterGuard { child }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the ssh master's guard");
                None
            }
        }
    }

    /// The connection is being closed in order: the guard is not needed.
    fn dismiss(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A remote command that lasts as long as the [`HeldCommand`] here: it is
/// stopped when this is dropped or this process dies, since its session's
/// stdin then closes.
pub struct HeldCommand {
    _ssh: tokio::process::Child,
}

impl Host {
    /// Connect through the cluster's ssh_config (cluster key, pinned host
    /// keys). `extra_key` is tried first: the user's own key, needed only
    /// until the cluster key is installed.
    pub async fn connect(
        files: &ClusterFiles,
        target: &Target,
        extra_key: Option<&Path>,
    ) -> Result<Host, HostError> {
        let mut builder = SessionBuilder::default();
        builder
            .config_file(files.ssh_config())
            .known_hosts_check(KnownHosts::Add)
            .user_known_hosts_file(files.known_hosts())
            .control_directory(files.control_dir())
            .connect_timeout(Duration::from_secs(10))
            .server_alive_interval(Duration::from_secs(15));
        if let Some(key) = extra_key {
            builder.keyfile(key);
        }
        let _ = std::fs::create_dir_all(files.control_dir());
        tracing::debug!(host = %target.name, addr = %target.addr, own_key = extra_key.is_some(), "connecting");
        match builder.connect(&target.name).await {
            Ok(session) => {
                tracing::info!(host = %target.name, addr = %target.addr, "connected");
                let guard = MasterGuard::start(session.control_socket());
                Ok(Host {
                    target: target.clone(),
                    session,
                    ssh_config: files.ssh_config(),
                    guard,
                })
            }
            Err(e) => {
                let error = classify_connect_error(files, target, &e);
                tracing::info!(host = %target.name, %error, "connection failed");
                Err(error)
            }
        }
    }

    /// Its name in the cluster (`orchestrator`, `factory-1`).
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// The multiplexing socket, for rsync and ssh to ride on.
    pub fn control_socket(&self) -> &Path {
        self.session.control_socket()
    }

    /// `ssh` riding on this host's master connection, for `command`.
    ///
    /// Not the `openssh` crate's own command API: it turns a remote exit
    /// status of 127 ("command not found") and 255 into errors of its own
    /// and drops the command's output with them. Here every status comes
    /// back as it is (255 stays ambiguous, as with any `ssh`: the remote
    /// command's, or ssh's own failure).
    fn ssh(&self, command: &str) -> tokio::process::Command {
        let mut ssh = tokio::process::Command::new("ssh");
        ssh.arg("-F")
            .arg(&self.ssh_config)
            .arg("-o")
            .arg(format!(
                "ControlPath={}",
                self.session.control_socket().display()
            ))
            .args(["-o", "ControlMaster=no", "-T"])
            .arg(&self.target.name)
            .arg("--")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        ssh
    }

    /// Run `command` through the remote user's shell; any exit code is Ok.
    pub async fn run(&self, command: &str) -> Result<Output, HostError> {
        self.run_with_input(command, None).await
    }

    /// [`run`](Self::run) with `input` on the command's stdin (contents that
    /// must not appear on a command line: binaries, secrets).
    pub async fn run_with_input(
        &self,
        command: &str,
        input: Option<&[u8]>,
    ) -> Result<Output, HostError> {
        use tokio::io::AsyncWriteExt;
        let fail = |e: std::io::Error| HostError::Other {
            host: self.target.name.clone(),
            detail: format!("running `{command}`: {e}"),
        };
        let mut ssh = self.ssh(command);
        ssh.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if input.is_some() {
            ssh.stdin(std::process::Stdio::piped());
        }
        let mut child = ssh.spawn().map_err(fail)?;
        let stdin = child.stdin.take();
        // Fed while the output is read, so a command that prints as it
        // reads never blocks on a full pipe. One that exits without reading
        // closes the pipe: its exit status says what happened, not this write.
        let feed = async move {
            if let (Some(bytes), Some(mut stdin)) = (input, stdin) {
                let _ = stdin.write_all(bytes).await;
                let _ = stdin.shutdown().await;
            }
        };
        let started = std::time::Instant::now();
        let ((), out) = tokio::join!(feed, child.wait_with_output());
        let out = out.map_err(fail)?;
        tracing::info!(
            host = %self.target.name,
            command = %shown_command(command),
            code = ?out.status.code(),
            secs = started.elapsed().as_secs_f64(),
            "ran"
        );
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Run `command`; a non-zero exit is an error carrying its stderr.
    pub async fn check(&self, command: &str) -> Result<String, HostError> {
        let out = self.run(command).await?;
        self.check_output(command, out)
    }

    /// A finished command's stdout, or the error of its failure.
    fn check_output(&self, command: &str, out: Output) -> Result<String, HostError> {
        if out.code == Some(0) {
            return Ok(out.stdout);
        }
        Err(HostError::Command {
            host: self.target.name.clone(),
            command: command.to_string(),
            status: out
                .code
                .map_or("killed".to_string(), |c| format!("exit code {c}")),
            stderr: match (out.stdout.trim(), out.stderr.trim()) {
                (stdout, "") => stdout.to_string(),
                ("", stderr) => stderr.to_string(),
                (stdout, stderr) => format!("{}\n{stderr}", last_lines(stdout, 10)),
            },
        })
    }

    /// [`check`](Self::check) with a time limit.
    pub async fn check_within(&self, command: &str, limit: Duration) -> Result<String, HostError> {
        match tokio::time::timeout(limit, self.check(command)).await {
            Ok(r) => r,
            Err(_) => Err(HostError::Timeout {
                host: self.target.name.clone(),
                command: command.to_string(),
                secs: limit.as_secs(),
            }),
        }
    }

    /// Write `contents` to `path` readable by the remote user only (0600).
    /// The contents travel on the command's stdin, never on a command line
    /// (which `ps` and logs would show): this is how secrets are written.
    pub async fn write_private(&self, path: &str, contents: &[u8]) -> Result<(), HostError> {
        let quoted = shell_quote(path);
        let command = format!(
            "umask 077 && cat > {quoted}.tmp && chmod 600 {quoted}.tmp && mv {quoted}.tmp {quoted}"
        );
        self.check_output_of(&command, Some(contents))
            .await
            .map(|_| ())
    }

    /// Write several files readable by the remote user only (0600), in
    /// one round trip: where every file is there already with these
    /// contents (their sha256 says so), nothing is written. Otherwise the
    /// folder `dir` is made (0700) and each file's contents come in turn
    /// on the command's stdin (never on a command line), each of exactly
    /// its length, and each file is renamed into place once whole.
    pub async fn write_private_files(
        &self,
        dir: &str,
        files: &[(String, &[u8])],
    ) -> Result<(), HostError> {
        use sha2::{Digest, Sha256};
        let sums: String = files
            .iter()
            .map(|(path, contents)| format!("{:x}  {path}\n", Sha256::digest(contents)))
            .collect();
        let quoted: Vec<String> = files.iter().map(|(p, _)| shell_quote(p)).collect();
        let mut command = format!(
            "if printf %s {} | sha256sum -c --status 2>/dev/null; then chmod 700 {d} && chmod 600 {}; \
             else umask 077 && mkdir -p {d} && chmod 700 {d}",
            shell_quote(&sums),
            quoted.join(" "),
            d = shell_quote(dir)
        );
        let mut input = Vec::new();
        for (path, contents) in files {
            let quoted = shell_quote(path);
            // dd one byte at a time never reads past its own file's end.
            command.push_str(&format!(
                " && dd bs=1 count={} of={quoted}.tmp 2>/dev/null && chmod 600 {quoted}.tmp",
                contents.len()
            ));
            input.extend_from_slice(contents);
        }
        for (path, contents) in files {
            let quoted = shell_quote(path);
            command.push_str(&format!(
                " && [ \"$(wc -c < {quoted}.tmp)\" -eq {} ] && mv {quoted}.tmp {quoted}",
                contents.len()
            ));
        }
        command.push_str("; fi");
        self.check_output_of(&command, Some(&input))
            .await
            .map(|_| ())
    }

    /// [`check`](Self::check) with `input` on the command's stdin.
    pub async fn check_output_of(
        &self,
        command: &str,
        input: Option<&[u8]>,
    ) -> Result<String, HostError> {
        let out = self.run_with_input(command, input).await?;
        self.check_output(command, out)
    }

    /// `mkdir -p` of a folder (relative paths are under the remote home).
    pub async fn mkdir(&self, path: &str) -> Result<(), HostError> {
        self.check(&format!("mkdir -p {}", shell_quote(path)))
            .await
            .map(|_| ())
    }

    /// Forward `127.0.0.1:local_port` here to `remote_host:remote_port` as
    /// seen from the host; lasts as long as this connection.
    pub async fn tunnel(
        &self,
        local_port: u16,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<(), HostError> {
        self.session
            .request_port_forward(
                ForwardType::Local,
                Socket::TcpSocket {
                    host: "127.0.0.1".into(),
                    port: local_port,
                },
                Socket::TcpSocket {
                    host: remote_host.into(),
                    port: remote_port,
                },
            )
            .await
            .map_err(|e| HostError::Other {
                host: self.target.name.clone(),
                detail: format!("cannot open a tunnel to {remote_host}:{remote_port}: {e}"),
            })
    }

    /// Build the `docker run` command for a detached container and run it.
    pub async fn docker_run(
        &self,
        image: &str,
        name: &str,
        args: &[String],
    ) -> Result<String, HostError> {
        self.check(&docker_run_command(image, name, args))
            .await
            .map(|id| id.trim().to_string())
    }

    /// Start `command` (a simple command: it is run in the background of a
    /// remote shell) for as long as the returned handle lives. The remote
    /// shell waits on its session's stdin; when that closes (the handle
    /// dropped, this process killed, the connection lost) it kills the
    /// command. Its output is discarded.
    pub fn hold(&self, command: &str) -> Result<HeldCommand, HostError> {
        let wrapped = format!(
            "{command} </dev/null >/dev/null 2>&1 & p=$!; cat >/dev/null; kill $p 2>/dev/null"
        );
        let mut ssh = self.ssh(&wrapped);
        ssh.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = ssh.spawn().map_err(|e| HostError::Other {
            host: self.target.name.clone(),
            detail: format!("running `{}`: {e}", shown_command(command)),
        })?;
        tracing::info!(host = %self.target.name, command = %shown_command(command), "holding");
        Ok(HeldCommand { _ssh: child })
    }

    /// Close the multiplexed connection.
    pub async fn close(mut self) {
        if let Some(guard) = self.guard.take() {
            guard.dismiss();
        }
        let _ = self.session.close().await;
    }
}

/// `docker run -d --name NAME ARGS… IMAGE`, every part quoted for the shell.
pub fn docker_run_command(image: &str, name: &str, args: &[String]) -> String {
    let mut parts = vec![
        "docker".to_string(),
        "run".into(),
        "-d".into(),
        "--name".into(),
        shell_quote(name),
    ];
    parts.extend(args.iter().map(|a| shell_quote(a)));
    parts.push(shell_quote(image));
    parts.join(" ")
}

fn classify_connect_error(
    files: &ClusterFiles,
    target: &Target,
    err: &openssh::Error,
) -> HostError {
    let detail = error_text(err);
    let addr = format!("{}:{}", target.addr, target.port);
    if detail.contains("IDENTIFICATION HAS CHANGED")
        || detail.contains("Host key verification failed")
    {
        return HostError::HostKeyChanged {
            host: target.name.clone(),
            addr,
            known_hosts: files.known_hosts().display().to_string(),
        };
    }
    if detail.contains("Permission denied") {
        return HostError::Login {
            host: target.name.clone(),
            addr,
            user: target.user.clone(),
            detail: "the key was refused (Permission denied)".to_string(),
        };
    }
    HostError::Unreachable {
        host: target.name.clone(),
        addr,
        detail,
    }
}

fn error_text(err: &openssh::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.trim().to_string()
}

/// Single-quote for a POSIX shell unless the text is plainly safe.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_docker_command() {
        assert_eq!(shell_quote("a/b.c"), "a/b.c");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            docker_run_command(
                "nginx:1",
                "web",
                &["-p".into(), "8080:80".into(), "-e".into(), "A=b c".into()]
            ),
            "docker run -d --name web -p 8080:80 -e 'A=b c' nginx:1"
        );
    }
}
