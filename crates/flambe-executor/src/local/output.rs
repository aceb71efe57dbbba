//! A job's output as it comes: stdout/stderr lines appended to their files
//! (and echoed where asked), and its metrics file read line by line.

use crate::JobEvent;
use crate::JobSpec;
use crate::metrics::parse_metric_line;
use std::io::SeekFrom;
use std::path::Path;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
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

/// Reads the lines a job appends to its metrics file, as they come.
pub(super) struct MetricsTail {
    id: String,
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
    line: usize,
}

impl MetricsTail {
    pub(super) fn new(spec: &JobSpec) -> MetricsTail {
        MetricsTail {
            id: spec.id.clone(),
            path: spec.metrics.clone(),
            offset: 0,
            partial: Vec::new(),
            line: 0,
        }
    }

    pub(super) async fn read(&mut self, events: &mpsc::UnboundedSender<JobEvent>) {
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
    pub(super) fn finish(&mut self, events: &mpsc::UnboundedSender<JobEvent>) {
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

async fn read_from(path: &Path, offset: u64) -> Option<Vec<u8>> {
    // Most polls find nothing new. One stat, done in place (a local file's
    // metadata, microseconds), says so without the three trips through the
    // blocking pool an open, seek and read take: with a thousand jobs
    // running, that was ten thousand polls a second.
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= offset) {
        return None;
    }
    let mut file = File::open(path).await.ok()?;
    file.seek(SeekFrom::Start(offset)).await.ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).await.ok()?;
    (!buf.is_empty()).then_some(buf)
}
