//! Jobs as child processes of this one.
//!
//! Each job runs `bash -c COMMAND` under the job shim (`shim`: this same
//! binary, a child subreaper) in its own process group, with stdout and
//! stderr appended to its files. Whatever the job forks stays below its
//! shim, which kills it all when bash ends or the driver dies. Everything
//! the job starts also carries its `FLAMBE_OUT` in its environment, however
//! it forks: where the shim itself was killed (or is not installed), what
//! outlived the leader is found by that and killed when the job ends, and
//! by the next driver when this one was killed. The metrics file is read
//! while the job runs, every 100 ms. GPUs are handed out by index through
//! `CUDA_VISIBLE_DEVICES`; a job without GPUs gets an empty one (no GPU).

mod output;
mod processes;
mod shim;

pub use processes::{MARKER_VAR, kill_marked, marker_of};
pub use shim::{install as install_job_shim, run_if_invoked as run_job_shim_if_invoked};

use crate::{Executor, JobEvent, JobSpec, Outcome};
use output::{MetricsTail, Tails, copy_lines};
use processes::{signal_group, stop_group};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::fs::File;
use tokio::process::Child;
use tokio::sync::{Notify, mpsc};

/// How often a running job's metrics file is read.
const METRICS_POLL: Duration = Duration::from_millis(100);

/// Raise this process's soft limit on open files to its hard limit. Each
/// running job holds a few descriptors (its stdout and stderr pipes, their
/// log files, its metrics file), so the usual soft limit of 1024 would cap
/// a driver at a few hundred jobs at once; the hard limit is what the
/// administrator allows. Returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// CPUs of this machine (what the scheduler may fill).
pub fn detect_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// GPUs `nvidia-smi` lists; 0 where it is missing or fails.
pub fn detect_gpus() -> u32 {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index", "--format=csv,noheader"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count() as u32
        })
}

/// A launched job's share of the machine, and how to stop it.
struct Running {
    cpus: f64,
    gpus: Vec<u32>,
    cancel: Arc<Notify>,
}

/// Child processes on this machine, each in its own process group.
pub struct LocalExecutor {
    /// Set `CUDA_VISIBLE_DEVICES` from the GPUs handed out (false where
    /// something else, such as Ray, already chose the job's GPUs).
    manage_gpus: bool,
    cpus_total: f64,
    cpus_used: f64,
    gpus_free: Vec<u32>,
    running: HashMap<String, Running>,
    events: mpsc::UnboundedSender<JobEvent>,
    /// The running jobs' metrics, and whether their poller runs yet.
    tails: Arc<Tails>,
    polling: bool,
}

impl LocalExecutor {
    /// Run up to `cpus` CPUs and `gpus` GPUs of jobs at once, reporting on `events`.
    pub fn new(cpus: f64, gpus: u32, events: mpsc::UnboundedSender<JobEvent>) -> LocalExecutor {
        LocalExecutor {
            manage_gpus: true,
            cpus_total: cpus,
            cpus_used: 0.0,
            gpus_free: (0..gpus).collect(),
            running: HashMap::new(),
            events,
            tails: Arc::default(),
            polling: false,
        }
    }

    /// Leave `CUDA_VISIBLE_DEVICES` as the environment has it.
    pub fn keep_gpu_env(mut self) -> LocalExecutor {
        self.manage_gpus = false;
        self
    }
}

impl Executor for LocalExecutor {
    fn stop_leftovers<'a>(&'a self, outs: &'a [std::path::PathBuf]) -> crate::BoxFuture<'a, ()> {
        Box::pin(async move {
            for out in outs {
                kill_marked(&format!("{MARKER_VAR}={}", out.display()));
            }
        })
    }

    fn fits(&self, cpus: f64, gpus: u32) -> bool {
        self.cpus_used + cpus <= self.cpus_total + 1e-9
            && (!self.manage_gpus || self.gpus_free.len() >= gpus as usize)
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    fn host(&self) -> &str {
        "local"
    }

    fn launch(&mut self, spec: JobSpec) {
        let take = if self.manage_gpus {
            spec.gpus as usize
        } else {
            0
        };
        let gpus: Vec<u32> = self.gpus_free.drain(..take).collect();
        self.cpus_used += spec.cpus;
        let cancel = Arc::new(Notify::new());
        self.running.insert(
            spec.id.clone(),
            Running {
                cpus: spec.cpus,
                gpus: gpus.clone(),
                cancel: cancel.clone(),
            },
        );
        let gpu_env = self.manage_gpus.then_some(gpus);
        if !self.polling {
            Tails::start_poller(&self.tails, METRICS_POLL, self.events.clone());
            self.polling = true;
        }
        let job = Job {
            gpus: gpu_env,
            cancel,
            tails: self.tails.clone(),
        };
        tokio::spawn(run_job(spec, job, self.events.clone()));
    }

    fn release(&mut self, id: &str) {
        if let Some(job) = self.running.remove(id) {
            self.cpus_used = (self.cpus_used - job.cpus).max(0.0);
            self.gpus_free.extend(job.gpus);
            self.gpus_free.sort_unstable();
        }
    }

    /// SIGTERM to the job's group, SIGKILL after a grace period.
    fn cancel(&self, id: &str) {
        if let Some(job) = self.running.get(id) {
            job.cancel.notify_one();
        }
    }

    fn cancel_all(&self) {
        for job in self.running.values() {
            job.cancel.notify_one();
        }
    }
}

/// What a launched job brings along: the GPUs it was given (where this
/// executor hands them out), how it is told to stop, and where its metrics
/// are read.
struct Job {
    gpus: Option<Vec<u32>>,
    cancel: Arc<Notify>,
    tails: Arc<Tails>,
}

async fn run_job(spec: JobSpec, job: Job, events: mpsc::UnboundedSender<JobEvent>) {
    let id = spec.id.clone();
    let Job {
        gpus,
        cancel,
        tails,
    } = job;
    let outcome = match spawn(&spec, gpus.as_deref()).await {
        Err(e) => Outcome::SpawnFailed(e.to_string()),
        Ok((child, shimmed)) => {
            let job = Supervised {
                child,
                shimmed,
                gpus: gpus.unwrap_or_default(),
            };
            supervise(spec, job, cancel, &tails, &events).await
        }
    };
    let _ = events.send(JobEvent::Finished { id, outcome });
}

/// A started job's leader (the shim, or bash), whether it is the shim,
/// and the GPUs it was given.
struct Supervised {
    child: Child,
    shimmed: bool,
    gpus: Vec<u32>,
}

async fn spawn(spec: &JobSpec, gpus: Option<&[u32]>) -> std::io::Result<(Child, bool)> {
    tokio::fs::create_dir_all(&spec.cwd).await?;
    File::create(&spec.metrics).await?;
    let (mut cmd, shimmed) = shim::job_command(&spec.command);
    if let Some(gpus) = gpus {
        let devices: Vec<String> = gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", devices.join(","));
    }
    if let Some(prefix) = &spec.path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", prefix.display()));
    }
    cmd.current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !shimmed {
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // kill the child when this process dies (the shim arms its own).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    Ok((cmd.spawn()?, shimmed))
}

async fn supervise(
    spec: JobSpec,
    job: Supervised,
    cancel: Arc<Notify>,
    tails: &Tails,
    events: &mpsc::UnboundedSender<JobEvent>,
) -> Outcome {
    let Supervised {
        mut child,
        shimmed,
        gpus,
    } = job;
    let id = spec.id.clone();
    let pid = child.id().unwrap_or(0);
    let _ = events.send(JobEvent::Started {
        id: id.clone(),
        pid,
        gpus,
    });
    let copiers = [
        child.stdout.take().map(|s| {
            tokio::spawn(copy_lines(
                s,
                spec.stdout.clone(),
                spec.echo.then(|| (id.clone(), false, events.clone())),
            ))
        }),
        child.stderr.take().map(|s| {
            tokio::spawn(copy_lines(
                s,
                spec.stderr.clone(),
                spec.echo.then(|| (id.clone(), true, events.clone())),
            ))
        }),
    ];
    tails.watch(MetricsTail::new(&spec));
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    // How the leader ended (where it was seen to end), and the outcome.
    let (ended, outcome) = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => {
                let outcome = match (s.code(), s.signal()) {
                    (Some(code), _) => Outcome::Exited(code),
                    (None, Some(sig)) => Outcome::Signaled(sig),
                    _ => Outcome::Exited(-1),
                };
                (Some(s), outcome)
            }
            Err(e) => (None, Outcome::SpawnFailed(e.to_string())),
        },
        _ = cancel.notified() => (stop_group(&mut child, pid).await, Outcome::Cancelled),
        _ = sleep_until(deadline) => (stop_group(&mut child, pid).await, Outcome::TimedOut),
    };
    // Whatever the command left running goes with it. A shim that ended
    // by itself took all of it along; otherwise its group goes, and what
    // left the group (`setsid`, double forks) by the variable they inherit.
    let swept = shimmed && ended.is_some_and(|s| s.signal() != Some(libc::SIGKILL));
    if !swept {
        signal_group(pid, libc::SIGKILL);
        if let Some(marker) = marker_of(&spec.env) {
            let _ = tokio::task::spawn_blocking(move || kill_marked(&marker)).await;
        }
    }
    for copier in copiers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
    }
    if let Some(mut tail) = tails.unwatch(&spec.id) {
        tail.finish(events);
    }
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(dir: &Path, id: &str, command: &str) -> JobSpec {
        JobSpec {
            id: id.to_string(),
            command: command.to_string(),
            cwd: dir.join(id),
            env: vec![(
                "FLAMBE_METRICS".into(),
                dir.join(format!("{id}.jsonl")).display().to_string(),
            )],
            cpus: 1.0,
            gpus: 0,
            timeout: None,
            stdout: dir.join(format!("{id}.out")),
            stderr: dir.join(format!("{id}.err")),
            metrics: dir.join(format!("{id}.jsonl")),
            echo: false,
            inputs: Vec::new(),
            sync: None,
            secret_env: Vec::new(),
            secrets_file: None,
            path_prefix: None,
            ray_venv: None,
            checkpoint: None,
        }
    }

    async fn finish(rx: &mut mpsc::UnboundedReceiver<JobEvent>) -> (Vec<JobEvent>, Outcome) {
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let JobEvent::Finished { outcome, .. } = ev {
                return (seen, outcome);
            }
            seen.push(ev);
        }
        panic!("channel closed")
    }

    #[tokio::test]
    async fn a_character_split_across_two_reads_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), "u", "true");
        let line = "{\"step\": 1, \"pr\u{e9}cision\": 0.5}\n".as_bytes();
        let split = line.iter().position(|b| *b >= 0x80).unwrap() + 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tail = MetricsTail::new(&spec);
        std::fs::write(&spec.metrics, &line[..split]).unwrap();
        tail.read(&tx);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&spec.metrics)
            .unwrap();
        std::io::Write::write_all(&mut f, &line[split..]).unwrap();
        tail.read(&tx);
        tail.finish(&tx);
        drop(tx);
        let mut names = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                JobEvent::Metric { metric, .. } => names.push(metric.values[0].0.clone()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(names, ["pr\u{e9}cision"]);
    }

    #[tokio::test]
    async fn runs_a_command_and_reads_its_metrics_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut ex = LocalExecutor::new(2.0, 0, tx);
        ex.launch(spec(
            dir.path(),
            "a",
            r#"echo hello; echo oops >&2; echo '{"step": 1, "acc": 0.5}' >> $FLAMBE_METRICS; echo 'junk' >> $FLAMBE_METRICS; printf '{"step": 2, "acc": 0.7}' >> $FLAMBE_METRICS; exit 3"#,
        ));
        let (events, outcome) = finish(&mut rx).await;
        assert_eq!(outcome, Outcome::Exited(3));
        let metrics: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Metric { metric, .. } => Some((metric.step, metric.values[0].1)),
                _ => None,
            })
            .collect();
        assert_eq!(metrics, vec![(Some(1), 0.5), (Some(2), 0.7)]);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, JobEvent::BadMetricLine { line: 2, .. }))
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.out")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.err")).unwrap(),
            "oops\n"
        );
    }

    #[tokio::test]
    async fn timeout_and_cancel_stop_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut ex = LocalExecutor::new(2.0, 0, tx);
        let mut s = spec(dir.path(), "t", "sleep 30 & echo $! > child.pid; wait");
        s.timeout = Some(Duration::from_millis(300));
        ex.launch(s);
        let (_, outcome) = finish(&mut rx).await;
        assert_eq!(outcome, Outcome::TimedOut);
        let pid: i32 = std::fs::read_to_string(dir.path().join("t/child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            gone_within(pid, Duration::from_secs(5)),
            "the background sleep outlived its job"
        );
        ex.release("t");

        ex.launch(spec(dir.path(), "c", "sleep 30"));
        assert!(matches!(rx.recv().await, Some(JobEvent::Started { .. })));
        ex.cancel("c");
        let (_, outcome) = finish(&mut rx).await;
        assert_eq!(outcome, Outcome::Cancelled);
    }

    /// A process is gone once it no longer exists or is a zombie (killed,
    /// not yet reaped by whoever inherited it). Polls: a signal's delivery
    /// has no event to wait on.
    fn gone_within(pid: i32, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z')) =>
                {
                    return true;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }

    #[test]
    fn resources_are_reserved_and_released() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let ex = LocalExecutor::new(2.0, 1, tx);
        assert!(ex.fits(2.0, 1));
        assert!(!ex.fits(2.5, 0));
        assert!(!ex.fits(1.0, 2));
    }
}
