//! `flambe trial-run SPEC`: the entrypoint of a trial's Ray job.
//!
//! It runs on the node Ray chose, runs the trial's command there as a local
//! job (same environment as a local trial; `CUDA_VISIBLE_DEVICES` as Ray set
//! it), and reports to the driver through its own output, which the driver
//! reads from the Jobs API: lines starting with `@@flambe:` are messages
//! (metrics, bad metrics lines, the outcome), everything else is the trial's
//! output. The spec travels hex-encoded JSON in the entrypoint, so no
//! quoting can break it.

use crate::local::LocalExecutor;
use crate::{Executor, JobEvent, JobSpec, MetricLine, Outcome};
use serde::{Deserialize, Serialize};
use std::io::Write;
use tokio::sync::mpsc;

mod error;
mod results_host;

pub use error::WrapperError;

#[cfg(test)]
use results_host::attempt_guard;
use results_host::{CheckpointSender, fetch_inputs, push_results, resolve_secrets};

pub const PREFIX: &str = "@@flambe:";

/// How long a stopped trial gets to be reaped before its outcome is told.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What the wrapper tells the driver, one line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Started {
        host: String,
    },
    Metric {
        line: usize,
        metric: MetricLine,
    },
    BadLine {
        line: usize,
        error: String,
    },
    Outcome {
        exited: Option<i32>,
        detail: String,
        timed_out: bool,
    },
}

impl Message {
    pub fn to_line(&self) -> String {
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    pub fn parse(line: &str) -> Option<Message> {
        serde_json::from_str(line.strip_prefix(PREFIX)?).ok()
    }

    /// What it means to the driver of trial `id`, however it came (a
    /// job's log, a slot worker's feed).
    pub(crate) fn heard(self, id: &str) -> Heard {
        let id = id.to_string();
        match self {
            Message::Started { .. } => Heard::Event(JobEvent::Started {
                id,
                pid: 0,
                gpus: Vec::new(),
            }),
            Message::Metric { line, metric } => Heard::Event(JobEvent::Metric { id, line, metric }),
            Message::BadLine { line, error } => {
                Heard::Event(JobEvent::BadMetricLine { id, line, error })
            }
            Message::Outcome {
                exited,
                detail,
                timed_out,
            } => Heard::Ended(match (exited, timed_out) {
                (Some(code), _) => Outcome::Exited(code),
                (None, true) => Outcome::TimedOut,
                (None, false) => Outcome::Lost(detail),
            }),
        }
    }
}

/// A wrapper's [`Message`] as the driver takes it.
pub(crate) enum Heard {
    /// An event of the running trial.
    Event(JobEvent),
    /// How the trial ended (told once its results are back).
    Ended(Outcome),
}

/// A spec as the `flambe trial-run` argument: hex of its JSON (no quoting needed).
pub fn encode_spec(spec: &JobSpec) -> String {
    encode_hex(spec)
}

/// The spec a `flambe trial-run` argument carries.
pub fn decode_spec(hex: &str) -> Result<JobSpec, WrapperError> {
    decode_hex(hex)
}

/// A value as a command-line argument: hex of its JSON, which no shell
/// or Ray entrypoint can misread.
pub(crate) fn encode_hex<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value an [`encode_hex`] argument carries.
pub(crate) fn decode_hex<T: serde::de::DeserializeOwned>(hex: &str) -> Result<T, WrapperError> {
    // ASCII only: a multi-byte character would split a slice mid-character.
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(WrapperError::Spec(
            "not an even number of hex digits".into(),
        ));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| WrapperError::Spec(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| WrapperError::Spec(e.to_string()))
}

/// Where a wrapper's messages and its trial's output go: its own stdout
/// (the Ray job's log) for `flambe trial-run`, the driver's feed for a slot
/// worker (`crate::slots`).
pub(crate) trait Reporter: Send + Sync {
    /// Tell the driver.
    fn say(&self, message: &Message);
    /// Whether the trial's output lines are wanted (they are in its log
    /// files either way).
    fn wants_output(&self) -> bool;
    /// One line of the trial's output.
    fn output(&self, stderr: bool, line: &str);
}

/// `flambe trial-run`'s reporter: messages and output on stdout/stderr,
/// which Ray keeps as the job's log.
struct JobLog;

impl Reporter for JobLog {
    fn say(&self, message: &Message) {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", message.to_line());
        let _ = out.flush();
    }

    fn wants_output(&self) -> bool {
        true
    }

    fn output(&self, stderr: bool, line: &str) {
        if stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// The file in a trial's folder on the results host that names the attempt
/// whose results the folder takes (written by the driver at each launch).
pub const ATTEMPT_FILE: &str = "attempt";

/// PATH without what Ray's own environment put there (its venv, `ray_venv`):
/// a trial on a factory finds the same `python` a local trial would.
fn path_without_ray(path: &str, ray_venv: &std::path::Path) -> String {
    path.split(':')
        .filter(|p| !std::path::Path::new(p).starts_with(ray_venv))
        .collect::<Vec<_>>()
        .join(":")
}

/// Give this process (and so the trial) the environment of a plain login:
/// Ray's venv (the spec's `ray_venv`) off PATH. Call before any thread starts.
pub fn leave_ray_environment(ray_venv: Option<&std::path::Path>) {
    let Some(ray_venv) = ray_venv else {
        return;
    };
    let path = path_without_ray(&std::env::var("PATH").unwrap_or_default(), ray_venv);
    // SAFETY: called first thing in `flambe trial-run`, before the async
    // runtime or any other thread exists.
    unsafe {
        std::env::set_var("PATH", path);
        std::env::remove_var("VIRTUAL_ENV");
    }
}

/// Run the trial; returns the exit code the wrapper should exit with.
pub async fn run_trial(spec: JobSpec) -> i32 {
    run_trial_with(spec, &JobLog, stop_signal()).await
}

/// This machine's name, as the wrapper reports where a trial runs.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Run the trial, telling `reporter`; `stop` (a signal, or the driver's
/// word to a slot worker) stops it, with the code it resolves to.
pub(crate) async fn run_trial_with(
    mut spec: JobSpec,
    reporter: &dyn Reporter,
    stop: impl std::future::Future<Output = i32>,
) -> i32 {
    let say = |m: &Message| reporter.say(m);
    say(&Message::Started { host: hostname() });
    // Leftovers of an earlier attempt of this trial on this node (its
    // wrapper was killed outright, or its stop is still under way) go
    // before anything is fetched: one still running could otherwise write
    // its own checkpoint over the one fetched for this attempt (a PBT
    // clone's donor checkpoint).
    if let Some(m) = crate::marker_of(&spec.env) {
        crate::kill_marked(&m);
    }
    if let Some(sync) = &spec.sync {
        if let Some(dir) = spec.metrics.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = fetch_inputs(&spec, sync).await {
            say(&Message::Outcome {
                exited: None,
                detail: format!("could not fetch the trial's inputs: {e}"),
                timed_out: false,
            });
            return 1;
        }
    }
    if let Err(e) = resolve_secrets(&mut spec).await {
        say(&Message::Outcome {
            exited: None,
            detail: format!("could not read the trial's secrets: {e}"),
            timed_out: false,
        });
        return 1;
    }
    let sync = spec.sync.clone();
    let keep = spec.clone();
    let (code, outcome) = run_local_job(spec, reporter, stop).await;
    // The outcome goes out only once the results are back: the driver may
    // read them as soon as it hears it.
    if let Some(sync) = sync
        && let Err(e) = push_results(&keep, &sync).await
    {
        say(&Message::Outcome {
            exited: None,
            detail: format!("the trial ran, but its results could not be sent back: {e}"),
            timed_out: false,
        });
        return 1;
    }
    say(&outcome);
    code
}

/// The trial's command as a local job on this node, watched by a guard
/// that outlives this process; returns its exit code and outcome message.
async fn run_local_job(
    spec: JobSpec,
    reporter: &dyn Reporter,
    stop: impl std::future::Future<Output = i32>,
) -> (i32, Message) {
    let marker = crate::marker_of(&spec.env);
    let guard = marker.as_deref().and_then(Guard::start);
    let ended = relay_local_job(spec, marker, reporter, stop).await;
    // Done with before the outcome is told: a retry of this trial on this
    // node is never in reach of this attempt's guard.
    if let Some(g) = guard {
        g.release();
    }
    ended
}

/// Run the job here and relay its events as the wrapper's lines.
async fn relay_local_job(
    spec: JobSpec,
    marker: Option<String>,
    reporter: &dyn Reporter,
    stop: impl std::future::Future<Output = i32>,
) -> (i32, Message) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sender = CheckpointSender::start(&spec);
    let ended = relay_events(spec, marker, &mut rx, sender.as_ref(), tx, reporter, stop).await;
    if let Some(sender) = sender {
        sender.stop().await;
    }
    ended
}

async fn relay_events(
    spec: JobSpec,
    marker: Option<String>,
    rx: &mut mpsc::UnboundedReceiver<JobEvent>,
    checkpoints: Option<&CheckpointSender>,
    tx: mpsc::UnboundedSender<JobEvent>,
    reporter: &dyn Reporter,
    stop: impl std::future::Future<Output = i32>,
) -> (i32, Message) {
    let say = |m: &Message| reporter.say(m);
    let mut local = LocalExecutor::new(spec.cpus.max(0.01), 0, tx).keep_gpu_env();
    let id = spec.id.clone();
    local.launch(JobSpec {
        echo: reporter.wants_output(),
        ..spec
    });
    let stopped = stop;
    tokio::pin!(stopped);
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            signal = &mut stopped => {
                // Ray stops a job with SIGTERM, then SIGKILL: the trial and
                // all it started go now, not with the wrapper's group only.
                local.cancel(&id);
                if let Some(m) = &marker {
                    crate::kill_marked(m);
                }
                // Its end is reaped (a slot worker lives on), but not
                // waited for past what Ray grants before its SIGKILL.
                let _ = tokio::time::timeout(STOP_WAIT, async {
                    while let Some(event) = rx.recv().await {
                        if matches!(event, JobEvent::Finished { .. }) {
                            break;
                        }
                    }
                })
                .await;
                let message = Message::Outcome {
                    exited: None,
                    detail: format!("stopped by signal {signal}"),
                    timed_out: false,
                };
                return (128 + signal, message);
            }
        };
        let Some(event) = event else { break };
        match event {
            JobEvent::Metric { line, metric, .. } => {
                // A trial saves its checkpoint, then reports: the copy
                // after a report holds the state that report is of.
                if let Some(sender) = checkpoints {
                    sender.poke();
                }
                say(&Message::Metric { line, metric })
            }
            JobEvent::BadMetricLine { line, error, .. } => say(&Message::BadLine { line, error }),
            JobEvent::Output { stderr, line, .. } => reporter.output(stderr, &line),
            JobEvent::Started { .. } => {}
            JobEvent::Finished { outcome, .. } => {
                let exited = match outcome {
                    Outcome::Exited(code) => Some(code),
                    _ => None,
                };
                let message = Message::Outcome {
                    exited,
                    detail: outcome.to_string(),
                    timed_out: outcome == Outcome::TimedOut,
                };
                return (exited.unwrap_or(1), message);
            }
        }
    }
    let lost = Message::Outcome {
        exited: None,
        detail: "the local job vanished".to_string(),
        timed_out: false,
    };
    (1, lost)
}

/// `flambe trial-guard MARKER`, started by the wrapper: a process of its
/// own group that waits for the end of a pipe whose only writer is the
/// wrapper, then kills every process that carries the trial's marker. A
/// wrapper that is SIGKILLed (Ray stopping a job for good, its raylet dying)
/// cannot clean up itself; the pipe still closes, and the trial goes too.
struct Guard {
    child: std::process::Child,
}

impl Guard {
    fn start(marker: &str) -> Option<Guard> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().ok()?;
        let child = std::process::Command::new(exe)
            .arg("trial-guard")
            .arg(marker)
            // Not marked itself, or it would kill itself first.
            .env_remove(crate::local::MARKER_VAR)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        Some(Guard { child })
    }

    /// Close the pipe and wait for the guard's last sweep.
    fn release(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `flambe trial-guard MARKER`: wait for stdin to close, then kill what
/// carries the marker (see [`Guard`]).
pub fn guard_trial(marker: &str) {
    // SAFETY: setting a signal's disposition to ignored, before any thread
    // exists; the guard must not go with its session's hangup.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    crate::kill_marked(marker);
}

/// The first of SIGTERM, SIGINT or SIGHUP; never, where they cannot be
/// watched.
pub(crate) async fn stop_signal() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => libc::SIGTERM,
        _ = int.recv() => libc::SIGINT,
        _ = hup.recv() => libc::SIGHUP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SyncHost;

    #[test]
    fn rays_venv_leaves_the_path_and_nothing_else_does() {
        let path =
            "/home/u/.flambe/bin:/home/u/.flambe/ray/bin:/home/u/.flambe/rayish/bin:/usr/bin";
        assert_eq!(
            path_without_ray(path, std::path::Path::new("/home/u/.flambe/ray")),
            "/home/u/.flambe/bin:/home/u/.flambe/rayish/bin:/usr/bin"
        );
    }

    #[test]
    fn results_go_back_only_into_the_folder_of_their_own_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let trial = dir.path().join("it's a trial");
        std::fs::create_dir_all(&trial).unwrap();
        let holds = |attempt: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(attempt_guard(&trial, attempt))
                .status()
                .unwrap()
                .success()
        };
        assert!(!holds("1"), "no attempt file: refused");
        std::fs::write(trial.join(ATTEMPT_FILE), "2").unwrap();
        assert!(holds("2"));
        assert!(!holds("1"), "an older attempt is refused");
        assert!(!holds("2' || true; '"), "quoted");
    }

    #[test]
    fn specs_and_messages_round_trip() {
        let spec = JobSpec {
            id: "t-1".into(),
            command: "echo 'a \"b\"' $X".into(),
            cwd: "/tmp/x".into(),
            env: vec![("X".into(), "1 2".into())],
            cpus: 1.0,
            gpus: 1,
            timeout: Some(std::time::Duration::from_secs(3)),
            stdout: "/tmp/o".into(),
            stderr: "/tmp/e".into(),
            metrics: "/tmp/m".into(),
            echo: false,
            inputs: vec!["/tmp/in".into()],
            sync: Some(SyncHost {
                host: "c_orchestrator".into(),
                ssh_config: "/home/u/cluster/ssh_config".into(),
                control_path: None,
            }),
            secret_env: vec![("TOKEN".into(), "API_TOKEN".into())],
            secrets_file: Some("/home/u/x/secrets.json".into()),
            path_prefix: Some("/home/u/envs/0123/bin".into()),
            ray_venv: Some("/home/u/ray".into()),
            checkpoint: Some("/tmp/t/checkpoint".into()),
        };
        let back = decode_spec(&encode_spec(&spec)).unwrap();
        assert_eq!(back.command, spec.command);
        assert_eq!(back.timeout, spec.timeout);
        let m = Message::Metric {
            line: 3,
            metric: MetricLine {
                step: Some(2),
                values: vec![("acc".into(), 0.5)],
            },
        };
        assert_eq!(Message::parse(&m.to_line()), Some(m));
        assert_eq!(Message::parse("plain output"), None);
    }
}
