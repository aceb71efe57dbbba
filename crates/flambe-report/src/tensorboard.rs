//! TensorBoard event files, written without TensorFlow.
//!
//! An event file is a TFRecord stream of `Event` protocol buffers: each record
//! is `u64 length | masked crc32c(length) | bytes | masked crc32c(bytes)`, all
//! little-endian. The first event carries `file_version = "brain.Event:2"`;
//! each scalar is an event with `step`, `wall_time` and a `Summary` holding
//! `(tag, simple_value)`. The messages below are the subset of TensorBoard's
//! `event.proto` / `summary.proto` that scalars use, with the same field
//! numbers. No maintained crate writes these (see CRATE-NOTES), and the tests
//! check the files with TensorBoard's own reader.

use flambe_experiment::{Event as EngineEvent, Observer};
use prost::Message;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// Appends scalar events to one event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create a new event file in `dir` (made if missing).
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let now = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let path = dir.join(format!("events.out.tfevents.{}.{host}.flambe", now as u64));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        writer.write_event(&Event {
            wall_time: now,
            step: 0,
            file_version: Some("brain.Event:2".to_string()),
            summary: None,
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event holding every scalar reported at `step`.
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> io::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        self.write_event(&Event {
            wall_time: now(),
            step,
            file_version: None,
            summary: Some(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.clone(),
                        simple_value: Some(*v as f32),
                    })
                    .collect(),
            }),
        })
    }

    /// Write what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn write_event(&mut self, event: &Event) -> io::Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())
    }
}

/// Writes each trial's metrics to event files in its folder: one file per
/// attempt (a retry replaces the failed attempt's file, as its metrics are
/// replaced in the results), made when the attempt reports its first
/// values: a trial that reports nothing costs no file.
#[derive(Default)]
pub struct TensorBoardObserver {
    writers: HashMap<String, Events>,
    /// Problems writing, reported once per trial by whoever shows them.
    pub warnings: Vec<String>,
}

/// A running attempt's event file, once it has one.
enum Events {
    /// Not made yet: the trial's folder.
    Due(std::path::PathBuf),
    Open(EventWriter),
}

impl TensorBoardObserver {
    fn write(&mut self, id: &str, step: i64, values: &[(String, f64)]) -> io::Result<()> {
        let Some(events) = self.writers.get_mut(id) else {
            return Ok(());
        };
        if let Events::Due(dir) = events {
            *events = Events::Open(EventWriter::create(dir)?);
        }
        match events {
            Events::Open(w) => w.scalars(step, values).and_then(|()| w.flush()),
            Events::Due(_) => Ok(()),
        }
    }

    fn warn(&mut self, id: &str, err: io::Error) {
        self.writers.remove(id);
        self.warnings.push(format!(
            "cannot write TensorBoard events of trial {id}: {err}"
        ));
    }
}

impl Observer for TensorBoardObserver {
    fn on(&mut self, event: EngineEvent<'_>) {
        match event {
            EngineEvent::TrialStarted { id, dir, .. } => {
                remove_event_files(dir);
                self.writers
                    .insert(id.to_string(), Events::Due(dir.to_path_buf()));
            }
            EngineEvent::Metrics {
                id, step, values, ..
            } => {
                if let Err(e) = self.write(id, step, values) {
                    self.warn(id, e);
                }
            }
            EngineEvent::TrialFinished { id, .. } => {
                if let Some(Events::Open(mut w)) = self.writers.remove(id) {
                    let _ = w.flush();
                }
            }
            _ => {}
        }
    }
}

fn remove_event_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's CRC: crc32c, rotated and offset so that CRCs of CRCs differ.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A TensorBoard server over an experiment's folder, stopped when dropped.
pub struct TensorBoardServer {
    child: std::process::Child,
    /// Where TensorBoard answers.
    pub url: String,
}

impl TensorBoardServer {
    /// Start `tensorboard` over `logdir` on a free loopback port, when the
    /// executable is on PATH; `None` otherwise (the site says how to install it).
    pub fn launch(logdir: &Path) -> Option<TensorBoardServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut command = std::process::Command::new("tensorboard");
        // Its own process group (TensorBoard starts a data server of its
        // own), and it dies with this process: a killed driver leaves no
        // TensorBoard behind.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // kill the child when this process's thread that forked it dies.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .arg("--logdir")
            .arg(logdir)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--reload_interval",
                "5",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(TensorBoardServer {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        })
    }
}

impl Drop for TensorBoardServer {
    fn drop(&mut self) {
        // The whole group: TensorBoard and the data server it started.
        // SAFETY: plain syscall; the group id is the child's pid.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_framed_with_valid_crcs() {
        let dir = std::env::temp_dir().join(format!("flambe-tb-{}", std::process::id()));
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalars(3, &[("acc".into(), 0.5)]).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut at = 0;
        let mut records = 0;
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc(len_bytes));
            let data = &bytes[at + 12..at + 12 + len];
            let data_crc =
                u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc(data));
            at += 16 + len;
            records += 1;
        }
        assert_eq!(records, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
