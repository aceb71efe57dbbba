//! `flambe slot-run SPEC`: a slot worker, the entrypoint of a slot's Ray job.
//!
//! It opens the feed to its driver, says which slot it is, and runs the
//! trials it is handed one at a time, each as `flambe trial-run` would,
//! telling the driver over the feed instead of through Ray's job log. It
//! exits when told to, and when the feed closes (its driver is gone):
//! then its trial is stopped first.

use super::{FromWorker, SlotSpec, ToWorker, line_of};
use crate::wrapper::{Message, Reporter, WrapperError, decode_hex, run_trial_with, stop_signal};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

/// The spec a `flambe slot-run` argument carries.
pub fn decode_slot_spec(hex: &str) -> Result<SlotSpec, WrapperError> {
    decode_hex(hex)
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The open feed: its two directions, and what keeps it open.
struct Feed {
    reader: Reader,
    writer: Writer,
    /// The ssh master's control socket, for the trials' copies.
    control_path: Option<PathBuf>,
    /// The ssh master (killed with the feed), and its socket's folder.
    _ssh: Option<(tokio::process::Child, TempFolder)>,
}

/// A private folder removed on drop (the ssh master's socket lives there).
struct TempFolder(PathBuf);

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Feed {
    async fn open(spec: &SlotSpec) -> std::io::Result<Feed> {
        let Some(sync) = &spec.sync else {
            // Same machine as the driver: its socket directly.
            let stream = tokio::net::UnixStream::connect(&spec.socket).await?;
            let (reader, writer) = stream.into_split();
            return Ok(Feed {
                reader: Box::new(reader),
                writer: Box::new(writer),
                control_path: None,
                _ssh: None,
            });
        };
        // A short private path: a socket's path is limited to ~100 bytes.
        let folder = std::env::temp_dir().join(format!("flambe-slot-{}", std::process::id()));
        {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::remove_dir_all(&folder);
            std::fs::DirBuilder::new().mode(0o700).create(&folder)?;
        }
        let folder = TempFolder(folder);
        let control = folder.0.join("ssh");
        let mut child = tokio::process::Command::new("ssh")
            .args(sync.ssh_args())
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no"])
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()))
            .arg(&sync.host)
            .arg(format!(
                "{} slot-feed {}",
                quote(&spec.flambe),
                quote(&spec.socket.display().to_string())
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("ssh without pipes"));
        };
        Ok(Feed {
            reader: Box::new(stdout),
            writer: Box::new(stdin),
            control_path: Some(control),
            _ssh: Some((child, folder)),
        })
    }
}

/// A slot worker's reporter: every message goes to the driver, tagged
/// with its trial.
struct FeedReporter {
    trial: String,
    echo: bool,
    out: mpsc::UnboundedSender<FromWorker>,
}

impl Reporter for FeedReporter {
    fn say(&self, message: &Message) {
        let _ = self.out.send(FromWorker::Said {
            trial: self.trial.clone(),
            message: message.clone(),
        });
    }

    fn wants_output(&self) -> bool {
        self.echo
    }

    fn output(&self, stderr: bool, line: &str) {
        let _ = self.out.send(FromWorker::Output {
            trial: self.trial.clone(),
            stderr,
            line: line.to_string(),
        });
    }
}

/// Run a slot worker; returns its exit code.
pub async fn run_slot(spec: SlotSpec) -> i32 {
    let feed = match Feed::open(&spec).await {
        Ok(feed) => feed,
        Err(e) => {
            eprintln!(
                "flambe slot worker {}: cannot open the feed to its driver: {e}",
                spec.slot
            );
            return 1;
        }
    };
    let Feed {
        reader,
        mut writer,
        control_path,
        _ssh,
    } = feed;
    let (out, mut outgoing) = mpsc::unbounded_channel::<FromWorker>();
    let writing = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if writer.write_all(&line_of(&message)).await.is_err() || writer.flush().await.is_err()
            {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let (incoming_tx, mut incoming) = mpsc::unbounded_channel::<ToWorker>();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(message) => {
                    if incoming_tx.send(message).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("flambe slot worker: a feed line it cannot read: {e}"),
            }
        }
        // Dropping the sender tells the worker the feed is closed.
    });
    let _ = out.send(FromWorker::Hello {
        slot: spec.slot.clone(),
    });
    let signals = stop_signal();
    tokio::pin!(signals);
    let mut code = 0;
    loop {
        let message = tokio::select! {
            message = incoming.recv() => message,
            signal = &mut signals => { code = 128 + signal; break; }
        };
        let Some(ToWorker::Run { spec: trial }) = message else {
            match message {
                // Nothing of it runs: its outcome was told already.
                Some(ToWorker::Cancel { .. }) => continue,
                _ => break,
            }
        };
        let mut trial = *trial;
        if let (Some(sync), Some(path)) = (trial.sync.as_mut(), &control_path) {
            sync.control_path = Some(path.clone());
        }
        let id = trial.id.clone();
        let reporter = FeedReporter {
            trial: id.clone(),
            echo: trial.echo,
            out: out.clone(),
        };
        let cancel = Notify::new();
        let running = run_trial_with(trial, &reporter, async {
            cancel.notified().await;
            libc::SIGTERM
        });
        tokio::pin!(running);
        // Set when the worker is to end once this trial has stopped.
        let mut ending: Option<i32> = None;
        loop {
            tokio::select! {
                _ = &mut running => break,
                message = incoming.recv(), if ending.is_none() => match message {
                    Some(ToWorker::Cancel { trial }) if trial == id => cancel.notify_one(),
                    Some(_) => {}
                    None => {
                        // The driver is gone: nobody would hear of the trial.
                        cancel.notify_one();
                        ending = Some(0);
                    }
                },
                signal = &mut signals, if ending.is_none() => {
                    cancel.notify_one();
                    ending = Some(128 + signal);
                }
            }
        }
        if let Some(c) = ending {
            code = c;
            break;
        }
    }
    drop(out);
    let _ = writing.await;
    code
}
