//! A job's output as it comes: stdout/stderr lines appended to their files
//! (and echoed where asked), and its metrics file read line by line.

use crate::JobEvent;
use crate::JobSpec;
use crate::metrics::parse_metric_line;
use tokio::fs::OpenOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

pub(super) async fn copy_lines(
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

/// Every running job's metrics tail, read by one poller for all of them: a
/// thousand running jobs cost ten wakeups a second, not ten thousand.
#[derive(Default)]
pub(super) struct Tails {
    running: std::sync::Mutex<std::collections::HashMap<String, MetricsTail>>,
}

impl Tails {
    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MetricsTail>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read the job's metrics from now on.
    pub(super) fn watch(&self, tail: MetricsTail) {
        self.running().insert(tail.id.clone(), tail);
    }

    /// Stop reading job `id`'s metrics: its tail, for the last read. Once
    /// this returns, the poller sends nothing more for the job.
    pub(super) fn unwatch(&self, id: &str) -> Option<MetricsTail> {
        self.running().remove(id)
    }

    /// Read every `every`, for as long as anyone holds `tails`.
    pub(super) fn start_poller(
        tails: &std::sync::Arc<Tails>,
        every: std::time::Duration,
        events: mpsc::UnboundedSender<JobEvent>,
    ) {
        let tails = std::sync::Arc::downgrade(tails);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tails) = tails.upgrade() else {
                    break;
                };
                for tail in tails.running().values_mut() {
                    tail.read(&events);
                }
            }
        });
    }
}

/// Reads the lines a job appends to its metrics file, as they come. The
/// file is held open once it exists: a poll is one `fstat` of it (no path
/// to walk), and a read of what it gained, both in place (a local file,
/// microseconds). The file is the job's to append to, as the format says.
pub(super) struct MetricsTail {
    id: String,
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    offset: u64,
    partial: Vec<u8>,
    line: usize,
}

impl MetricsTail {
    pub(super) fn new(spec: &JobSpec) -> MetricsTail {
        MetricsTail {
            id: spec.id.clone(),
            path: spec.metrics.clone(),
            file: None,
            offset: 0,
            partial: Vec::new(),
            line: 0,
        }
    }

    /// Emit the lines the file gained since the last read; returns whether
    /// it had gained anything.
    pub(super) fn read(&mut self, events: &mpsc::UnboundedSender<JobEvent>) -> bool {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let Some(chunk) = self.file.as_ref().and_then(|f| read_from(f, self.offset)) else {
            return false;
        };
        self.offset += chunk.len() as u64;
        // Bytes, not text, until a line is whole: a character split across
        // two reads is decoded only once both halves are here.
        self.partial.extend_from_slice(&chunk);
        let buffered = std::mem::take(&mut self.partial);
        let mut rest: &[u8] = &buffered;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.emit(String::from_utf8_lossy(&rest[..end]).trim(), events);
            rest = &rest[end + 1..];
        }
        self.partial = rest.to_vec();
        true
    }

    /// Once the job is done: whatever is left, and a last line without a
    /// newline still counts.
    pub(super) fn finish(&mut self, events: &mpsc::UnboundedSender<JobEvent>) {
        while self.read(events) {}
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
                error: error.to_string(),
            },
        };
        let _ = events.send(event);
    }
}

/// What `file` holds past `offset`, if anything.
fn read_from(file: &std::fs::File, offset: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().ok()?.len();
    if len <= offset {
        return None;
    }
    // At most 8 MiB a poll: a large backlog is read over a few polls, and
    // the thread is never held for long.
    let mut buf = vec![0; (len - offset).min(8 << 20) as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    buf.truncate(got);
    (!buf.is_empty()).then_some(buf)
}
