//! Jobs as child processes of this one.
//!
//! Each job runs `bash -c COMMAND` in its own process group, with stdout and
//! stderr appended to its files; its leader dies with this process
//! (PDEATHSIG). Everything the job starts carries its `FLAMBE_OUT` in its
//! environment, however it forks, so what outlives the leader (a pipeline's
//! other members, `cmd &`, `setsid`) is found and killed when the job ends,
//! and by the next driver when this one was killed. The metrics file is read
//! while the job runs, every 100 ms. GPUs are handed out by index through
//! `CUDA_VISIBLE_DEVICES`; a job without GPUs gets an empty one (no GPU).

use crate::metrics::parse_metric_line;
use crate::{Executor, JobEvent, JobSpec, Outcome};
use std::collections::HashMap;
use std::io::SeekFrom;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc};

/// How often a running job's metrics file is read.
const METRICS_POLL: Duration = Duration::from_millis(100);
/// How long a job gets after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

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

/// The environment variable every process of a job inherits, whatever
/// it forks: how a job's processes are found once its leader is gone.
pub const MARKER_VAR: &str = "FLAMBE_OUT";

/// `FLAMBE_OUT=<out>`, the exact entry a job's processes carry.
pub fn marker_of(env: &[(String, String)]) -> Option<String> {
    env.iter()
        .find(|(k, _)| k == MARKER_VAR)
        .map(|(k, v)| format!("{k}={v}"))
}

/// This machine's processes (other than this one) whose environment holds
/// `marker`. A pipeline's members, `cmd &`, `setsid` and double forks all
/// inherit it, and it outlives the job's leader and its process group. A
/// process that replaces its whole environment (`env -i`) is not found.
fn marked_processes(marker: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // Other users' processes are unreadable, zombies read empty.
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
        })
        .collect()
}

/// How many scans in a row must find nothing before the job counts as
/// gone, and the pause between them. A process in the middle of `execve`
/// shows an empty environment for a moment (the new image's is not laid
/// out yet), so one empty scan can miss it.
const EMPTY_SCANS: u32 = 3;
const SCAN_GAP: Duration = Duration::from_millis(5);

/// Kill every process that carries `marker`, looking again until none is
/// left (one may fork or exec while the others die). Returns whether any
/// was found. Blocks for a few milliseconds: call it off the async threads.
pub fn kill_marked(marker: &str) -> bool {
    let mut found = false;
    let mut empty_in_a_row = 0;
    for _ in 0..200 {
        let pids = marked_processes(marker.as_bytes());
        if pids.is_empty() {
            empty_in_a_row += 1;
            if empty_in_a_row == EMPTY_SCANS {
                break;
            }
            std::thread::sleep(SCAN_GAP);
            continue;
        }
        empty_in_a_row = 0;
        found = true;
        for pid in pids {
            // SAFETY: plain syscall on a pid read from /proc just now.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    found
}

struct Running {
    cpus: f64,
    gpus: Vec<u32>,
    cancel: Arc<Notify>,
}

pub struct LocalExecutor {
    /// Set `CUDA_VISIBLE_DEVICES` from the GPUs handed out (false where
    /// something else, such as Ray, already chose the job's GPUs).
    manage_gpus: bool,
    cpus_total: f64,
    cpus_used: f64,
    gpus_free: Vec<u32>,
    running: HashMap<String, Running>,
    events: mpsc::UnboundedSender<JobEvent>,
}

impl LocalExecutor {
    pub fn new(cpus: f64, gpus: u32, events: mpsc::UnboundedSender<JobEvent>) -> LocalExecutor {
        LocalExecutor {
            manage_gpus: true,
            cpus_total: cpus,
            cpus_used: 0.0,
            gpus_free: (0..gpus).collect(),
            running: HashMap::new(),
            events,
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
        tokio::spawn(run_job(spec, gpu_env, cancel, self.events.clone()));
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

async fn run_job(
    spec: JobSpec,
    gpus: Option<Vec<u32>>,
    cancel: Arc<Notify>,
    events: mpsc::UnboundedSender<JobEvent>,
) {
    let id = spec.id.clone();
    let outcome = match spawn(&spec, gpus.as_deref()).await {
        Err(e) => Outcome::SpawnFailed(e.to_string()),
        Ok(child) => supervise(spec, child, gpus.unwrap_or_default(), cancel, &events).await,
    };
    let _ = events.send(JobEvent::Finished { id, outcome });
}

async fn spawn(spec: &JobSpec, gpus: Option<&[u32]>) -> std::io::Result<Child> {
    tokio::fs::create_dir_all(&spec.cwd).await?;
    File::create(&spec.metrics).await?;
    let mut cmd = Command::new("bash");
    if let Some(gpus) = gpus {
        let devices: Vec<String> = gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", devices.join(","));
    }
    if let Some(prefix) = &spec.path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", prefix.display()));
    }
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
    // child when this process dies, so a killed driver leaves no orphans.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

async fn supervise(
    spec: JobSpec,
    mut child: Child,
    gpus: Vec<u32>,
    cancel: Arc<Notify>,
    events: &mpsc::UnboundedSender<JobEvent>,
) -> Outcome {
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
    let mut tail = MetricsTail::new(&spec);
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut poll = tokio::time::interval(METRICS_POLL);
    let outcome = loop {
        tokio::select! {
            status = child.wait() => {
                break match status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(code), _) => Outcome::Exited(code),
                        (None, Some(sig)) => Outcome::Signaled(sig),
                        _ => Outcome::Exited(-1),
                    },
                    Err(e) => Outcome::SpawnFailed(e.to_string()),
                };
            }
            _ = poll.tick() => tail.read(events).await,
            _ = cancel.notified() => {
                stop_group(&mut child, pid).await;
                break Outcome::Cancelled;
            }
            _ = sleep_until(deadline) => {
                stop_group(&mut child, pid).await;
                break Outcome::TimedOut;
            }
        }
    };
    // Whatever the command left running goes with it: its group, and what
    // left the group (`setsid`, double forks) by the variable they inherit.
    signal_group(pid, libc::SIGKILL);
    if let Some(marker) = marker_of(&spec.env) {
        let _ = tokio::task::spawn_blocking(move || kill_marked(&marker)).await;
    }
    for copier in copiers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
    }
    tail.read(events).await;
    tail.finish(events);
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn signal_group(pid: u32, signal: i32) {
    if pid > 0 {
        // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
        unsafe {
            libc::kill(-(pid as i32), signal);
        }
    }
}

async fn stop_group(child: &mut Child, pid: u32) {
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

async fn copy_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    path: std::path::PathBuf,
    echo: Option<(String, bool, mpsc::UnboundedSender<JobEvent>)>,
) {
    let Ok(mut file) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    else {
        return;
    };
    let mut lines = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = file.write_all(&buf).await;
                let _ = file.flush().await;
                if let Some((id, stderr, events)) = &echo {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    let _ = events.send(JobEvent::Output {
                        id: id.clone(),
                        stderr: *stderr,
                        line,
                    });
                }
            }
        }
    }
}

/// Reads the lines a job appends to its metrics file, as they come.
struct MetricsTail {
    id: String,
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
    line: usize,
}

impl MetricsTail {
    fn new(spec: &JobSpec) -> MetricsTail {
        MetricsTail {
            id: spec.id.clone(),
            path: spec.metrics.clone(),
            offset: 0,
            partial: Vec::new(),
            line: 0,
        }
    }

    async fn read(&mut self, events: &mpsc::UnboundedSender<JobEvent>) {
        let Some(chunk) = read_from(&self.path, self.offset).await else {
            return;
        };
        self.offset += chunk.len() as u64;
        // Bytes, not text, until a line is whole: a character split across
        // two reads is decoded only once both halves are here.
        self.partial.extend_from_slice(&chunk);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(String::from_utf8_lossy(&line).trim(), events);
        }
    }

    /// A last line without a newline still counts once the job is done.
    fn finish(&mut self, events: &mpsc::UnboundedSender<JobEvent>) {
        let rest = std::mem::take(&mut self.partial);
        let rest = String::from_utf8_lossy(&rest);
        if !rest.trim().is_empty() {
            self.emit(rest.trim(), events);
        }
    }

    fn emit(&mut self, line: &str, events: &mpsc::UnboundedSender<JobEvent>) {
        self.line += 1;
        if line.is_empty() {
            return;
        }
        let event = match parse_metric_line(line) {
            Ok(metric) => JobEvent::Metric {
                id: self.id.clone(),
                line: self.line,
                metric,
            },
            Err(error) => JobEvent::BadMetricLine {
                id: self.id.clone(),
                line: self.line,
                error,
            },
        };
        let _ = events.send(event);
    }
}

async fn read_from(path: &Path, offset: u64) -> Option<Vec<u8>> {
    let mut file = File::open(path).await.ok()?;
    file.seek(SeekFrom::Start(offset)).await.ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).await.ok()?;
    (!buf.is_empty()).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        tail.read(&tx).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&spec.metrics)
            .unwrap();
        std::io::Write::write_all(&mut f, &line[split..]).unwrap();
        tail.read(&tx).await;
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
