//! The driver's side of slot workers: a queue of trials, workers by shape
//! (CPUs, GPUs), their Ray jobs, and the feed socket they connect to.
//!
//! One task owns all of it ([`Pool::serve`]); the executor, each worker's
//! connection and the Ray poller send it [`Command`]s. A trial waits in the
//! queue until a connected idle worker of its shape takes it; while more
//! trials of a shape wait than workers of that shape are on their way, new
//! slot jobs are submitted (idle workers of other shapes are let go first,
//! so their slots return to Ray).

use super::capacity::Capacity;
use super::{FromWorker, LINGER, SlotSpec, ToWorker};
use crate::ray::{stop_job, submit_job};
use crate::wrapper::{Heard, encode_hex};
use crate::{JobEvent, JobSpec, Outcome};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod io;

/// How long a connected worker whose Ray job has ended gets for its last
/// lines before its trial counts as lost.
const ENDED_GRACE: Duration = Duration::from_secs(10);
/// Slot jobs on their way at first (each round of Ray job starts costs
/// seconds: a small cluster fills in one round, a large one in doubling
/// rounds from here).
const FIRST_ROUND: usize = 2;
/// The job metadata key naming the trials folder a slot works for.
pub(crate) const SLOTS_METADATA: &str = "flambe_slots_of";

/// A trial's resource needs: workers only take trials of their own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    cpu_bits: u64,
    gpus: u32,
}

impl Shape {
    fn of(spec: &JobSpec) -> Shape {
        Shape {
            cpu_bits: spec.cpus.to_bits(),
            gpus: spec.gpus,
        }
    }
}

/// The trials folder a job's own folder is in (`…/trials/ID/metrics.jsonl`):
/// slot jobs carry it, so a rerun finds its predecessor's.
pub(crate) fn trials_folder(metrics: &Path) -> String {
    metrics
        .parent()
        .and_then(Path::parent)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

pub(super) enum Command {
    Launch(Box<JobSpec>),
    Cancel(String),
    CancelAll,
    Connected {
        slot: String,
        to_worker: mpsc::UnboundedSender<ToWorker>,
    },
    From {
        slot: String,
        message: FromWorker,
    },
    Gone {
        slot: String,
    },
    SubmitFailed {
        slot: String,
        error: String,
    },
    /// The slots' Ray jobs that have ended: status and message.
    Ended(HashMap<String, (String, String)>),
    /// What the cluster can hold, read again now and then.
    Capacity(Capacity),
    /// A slot job ended before its worker reached the driver, and why.
    NeverArrived {
        shape: Shape,
        why: String,
    },
    /// The executor is gone (the driver ends).
    Shutdown,
}

/// The executor's handle on the pool; dropping it lets every worker go.
pub(crate) struct SlotPool {
    commands: mpsc::UnboundedSender<Command>,
    socket: PathBuf,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for SlotPool {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        self.accepting.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A name no other feed socket on this machine has.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

/// What the pool needs of the Ray executor.
pub(crate) struct PoolSetup {
    pub client: reqwest::Client,
    pub base: String,
    pub flambe: String,
    /// The prefix of every slot's submission id.
    pub run: String,
    pub events: mpsc::UnboundedSender<JobEvent>,
}

impl SlotPool {
    /// Listen on a fresh feed socket and start the pool's task.
    pub(crate) fn start(setup: PoolSetup) -> std::io::Result<SlotPool> {
        let socket = std::env::temp_dir().join(format!("flambe-feed-{}.sock", unique_suffix()));
        let listener = tokio::net::UnixListener::bind(&socket)?;
        // Only this user (the cluster's) may hand in results.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let accepting = tokio::spawn(io::accept(listener, commands.clone()));
        tokio::spawn(io::poll_jobs(
            setup.client.clone(),
            setup.base.clone(),
            setup.run.clone(),
            commands.downgrade(),
        ));
        let pool = Pool {
            setup,
            socket: socket.clone(),
            queue: VecDeque::new(),
            workers: HashMap::new(),
            submitted: 0,
            commands: commands.downgrade(),
            capacity: None,
        };
        tokio::spawn(pool.serve(rx));
        Ok(SlotPool {
            commands,
            socket,
            accepting,
        })
    }

    pub(crate) fn launch(&self, spec: JobSpec) {
        let _ = self.commands.send(Command::Launch(Box::new(spec)));
    }

    pub(crate) fn cancel(&self, id: &str) {
        let _ = self.commands.send(Command::Cancel(id.to_string()));
    }

    pub(crate) fn cancel_all(&self) {
        let _ = self.commands.send(Command::CancelAll);
    }
}

/// The trial a worker runs.
struct Assigned {
    id: String,
    echo: bool,
    cancelled: bool,
}

struct Worker {
    shape: Shape,
    /// Its place in submission order.
    number: u64,
    /// Set once it has connected.
    to_worker: Option<mpsc::UnboundedSender<ToWorker>>,
    trial: Option<Assigned>,
    idle_since: Option<Instant>,
    /// When its Ray job was first seen ended while it was connected.
    ended_since: Option<Instant>,
}

struct Pool {
    setup: PoolSetup,
    socket: PathBuf,
    queue: VecDeque<JobSpec>,
    workers: HashMap<String, Worker>,
    submitted: u64,
    commands: mpsc::WeakUnboundedSender<Command>,
    /// What the cluster holds, once read.
    capacity: Option<Capacity>,
}

impl Pool {
    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = rx.recv().await {
            if matches!(command, Command::Shutdown) {
                break;
            }
            self.handle(command);
        }
        // The executor is gone (the driver ends): every worker goes, and
        // slot jobs not yet started are stopped.
        for (slot, worker) in self.workers.drain() {
            match worker.to_worker {
                Some(to_worker) => {
                    let _ = to_worker.send(ToWorker::Exit);
                }
                None => stop_job(&self.setup.client, &self.setup.base, &slot).await,
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Launch(spec) => {
                self.queue.push_back(*spec);
                self.dispatch();
            }
            Command::Cancel(id) => self.cancel(&id),
            Command::CancelAll => {
                let queued: Vec<String> = self.queue.iter().map(|s| s.id.clone()).collect();
                let running: Vec<String> = self
                    .workers
                    .values()
                    .filter_map(|w| w.trial.as_ref().map(|t| t.id.clone()))
                    .collect();
                for id in queued.iter().chain(&running) {
                    self.cancel(id);
                }
            }
            Command::Connected { slot, to_worker } => {
                let Some(worker) = self.workers.get_mut(&slot) else {
                    // Not one of this run's (a leftover, or let go): it ends.
                    return;
                };
                tracing::debug!(%slot, "slot worker connected");
                worker.to_worker = Some(to_worker);
                worker.idle_since = Some(Instant::now());
                self.dispatch();
            }
            Command::From { slot, message } => self.heard(&slot, message),
            Command::Gone { slot } => {
                if let Some(worker) = self.workers.remove(&slot) {
                    self.lose(&slot, worker, "its connection to the driver closed");
                    self.dispatch();
                }
            }
            Command::SubmitFailed { slot, error } => {
                if let Some(worker) = self.workers.remove(&slot) {
                    self.fail_queued(
                        worker.shape,
                        Outcome::SpawnFailed(format!("Ray did not take the job: {error}")),
                    );
                    self.dispatch();
                }
            }
            Command::Ended(ended) => self.tick(&ended),
            Command::NeverArrived { shape, why } => {
                self.fail_queued(shape, Outcome::Lost(why));
                self.dispatch();
            }
            Command::Capacity(capacity) => {
                self.capacity = Some(capacity);
                self.dispatch();
            }
            Command::Shutdown => {}
        }
    }

    /// What a worker said of its trial.
    fn heard(&mut self, slot: &str, message: FromWorker) {
        let Some(worker) = self.workers.get_mut(slot) else {
            return;
        };
        let Some(assigned) = &worker.trial else {
            return;
        };
        let id = assigned.id.clone();
        let event = match message {
            FromWorker::Said { trial, .. } | FromWorker::Output { trial, .. } if trial != id => {
                return;
            }
            FromWorker::Hello { .. } => return,
            FromWorker::Output { stderr, line, .. } => {
                if !assigned.echo {
                    return;
                }
                JobEvent::Output { id, stderr, line }
            }
            FromWorker::Said { message, .. } => match message.heard(&id) {
                Heard::Event(event) => event,
                Heard::Ended(ended) => {
                    let outcome = if assigned.cancelled {
                        Outcome::Cancelled
                    } else {
                        ended
                    };
                    worker.trial = None;
                    worker.idle_since = Some(Instant::now());
                    let _ = self.setup.events.send(JobEvent::Finished { id, outcome });
                    self.dispatch();
                    return;
                }
            },
        };
        let _ = self.setup.events.send(event);
    }

    fn cancel(&mut self, id: &str) {
        if let Some(at) = self.queue.iter().position(|s| s.id == id) {
            self.queue.remove(at);
            let _ = self.setup.events.send(JobEvent::Finished {
                id: id.to_string(),
                outcome: Outcome::Cancelled,
            });
            return;
        }
        for worker in self.workers.values_mut() {
            if let Some(trial) = worker.trial.as_mut().filter(|t| t.id == id) {
                trial.cancelled = true;
                if let Some(to_worker) = &worker.to_worker {
                    let _ = to_worker.send(ToWorker::Cancel {
                        trial: id.to_string(),
                    });
                }
            }
        }
    }

    /// A worker gone mid-trial: its trial is lost (and retried by the
    /// engine); its Ray job is stopped, in case it still holds the slot.
    fn lose(&mut self, slot: &str, worker: Worker, why: &str) {
        if let Some(trial) = worker.trial {
            let outcome = if trial.cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Lost(format!("the slot worker {slot} was lost mid-trial: {why}"))
            };
            let _ = self.setup.events.send(JobEvent::Finished {
                id: trial.id,
                outcome,
            });
        }
        self.stop_in_background(slot);
    }

    /// Ask Ray to stop a slot's job, without waiting for it.
    fn stop_in_background(&self, slot: &str) {
        let (client, base, slot) = (
            self.setup.client.clone(),
            self.setup.base.clone(),
            slot.to_string(),
        );
        tokio::spawn(async move { stop_job(&client, &base, &slot).await });
    }

    /// The first queued trial of `shape` ends with `outcome` (its slot job
    /// could not start): a slot that never comes must not hold it forever.
    fn fail_queued(&mut self, shape: Shape, outcome: Outcome) {
        if let Some(at) = self.queue.iter().position(|s| Shape::of(s) == shape)
            && let Some(spec) = self.queue.remove(at)
        {
            let _ = self.setup.events.send(JobEvent::Finished {
                id: spec.id,
                outcome,
            });
        }
    }

    /// Every second: slots whose Ray job ended, idle workers let go.
    fn tick(&mut self, ended: &HashMap<String, (String, String)>) {
        let now = Instant::now();
        let slots: Vec<String> = self.workers.keys().cloned().collect();
        for slot in slots {
            let Some(worker) = self.workers.get_mut(&slot) else {
                continue;
            };
            if let Some((status, message)) = ended.get(&slot) {
                if worker.to_worker.is_none() {
                    // It never reached the driver: a trial of its shape
                    // fails as a lost job would (and is retried), with the
                    // worker's last words from its log, which say why.
                    let shape = worker.shape;
                    self.workers.remove(&slot);
                    let why = format!("Ray reports the job {status}: {message}");
                    let (client, base, commands) = (
                        self.setup.client.clone(),
                        self.setup.base.clone(),
                        self.commands.clone(),
                    );
                    tokio::spawn(async move {
                        let why = match io::last_words(&client, &base, &slot).await {
                            Some(said) => format!("{why}; the slot worker said: {said}"),
                            None => why,
                        };
                        if let Some(commands) = commands.upgrade() {
                            let _ = commands.send(Command::NeverArrived { shape, why });
                        }
                    });
                    continue;
                }
                let since = *worker.ended_since.get_or_insert(now);
                if now - since >= ENDED_GRACE {
                    if let Some(worker) = self.workers.remove(&slot) {
                        let why = format!("Ray reports the job {status}: {message}");
                        self.lose(&slot, worker, &why);
                    }
                    continue;
                }
            }
            let idle_long =
                worker.trial.is_none() && worker.idle_since.is_some_and(|t| now - t >= LINGER);
            if idle_long
                && let Some(worker) = self.workers.remove(&slot)
                && let Some(to_worker) = worker.to_worker
            {
                tracing::debug!(%slot, "idle slot worker let go");
                let _ = to_worker.send(ToWorker::Exit);
            }
        }
        self.dispatch();
    }

    /// Hand queued trials to idle workers of their shape; submit slots for
    /// what is left.
    fn dispatch(&mut self) {
        let mut at = 0;
        while at < self.queue.len() {
            let shape = Shape::of(&self.queue[at]);
            let idle = self
                .workers
                .iter()
                .find(|(_, w)| w.shape == shape && w.trial.is_none() && w.to_worker.is_some())
                .map(|(slot, _)| slot.clone());
            let Some(slot) = idle else {
                at += 1;
                continue;
            };
            let Some(spec) = self.queue.remove(at) else {
                break;
            };
            self.assign(&slot, spec);
        }
        let mut waiting: Vec<(Shape, usize)> = Vec::new();
        for spec in &self.queue {
            let shape = Shape::of(spec);
            match waiting.iter_mut().find(|(s, _)| *s == shape) {
                Some((_, n)) => *n += 1,
                None => waiting.push((shape, 1)),
            }
        }
        let shapes: Vec<Shape> = self.workers.values().map(|w| w.shape).collect();
        for shape in shapes {
            let n = waiting
                .iter()
                .find(|(s, _)| *s == shape)
                .map_or(0, |(_, n)| *n);
            self.stop_surplus(shape, n);
        }
        for (shape, n) in waiting {
            let coming = self.coming(shape).len();
            let connected = self
                .workers
                .values()
                .filter(|w| w.shape == shape && w.to_worker.is_some())
                .count();
            let bound = self
                .capacity
                .as_ref()
                .and_then(|c| c.slots(f64::from_bits(shape.cpu_bits), shape.gpus));
            let wanted = match bound {
                // No more slots of a shape than the cluster holds (one at
                // least: what fits nowhere waits in Ray, as a job would).
                Some(bound) => n
                    .saturating_sub(coming)
                    .min(bound.max(1).saturating_sub(coming + connected)),
                // Slow start where the cluster's size is unknown: no more
                // slots on their way than have arrived (at least
                // FIRST_ROUND), so a cluster with room fills in doubling
                // rounds and a full one gets a few waiting jobs, not one
                // per trial.
                None => n
                    .saturating_sub(coming)
                    .min(connected.max(FIRST_ROUND).saturating_sub(coming)),
            };
            if wanted == 0 {
                continue;
            }
            self.let_idle_go(|s| s != shape);
            for _ in 0..wanted {
                self.submit(shape);
            }
        }
    }

    /// Slots of `shape` submitted that have not arrived, newest first.
    fn coming(&self, shape: Shape) -> Vec<String> {
        let mut slots: Vec<(u64, String)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.shape == shape && w.to_worker.is_none())
            .map(|(slot, w)| (w.number, slot.clone()))
            .collect();
        slots.sort_by_key(|s| std::cmp::Reverse(s.0));
        slots.into_iter().map(|(_, slot)| slot).collect()
    }

    /// Stop slot jobs on their way beyond the `waiting` trials of their
    /// shape: the queue drained while Ray held them back.
    fn stop_surplus(&mut self, shape: Shape, waiting: usize) {
        let coming = self.coming(shape);
        for slot in coming.iter().take(coming.len().saturating_sub(waiting)) {
            self.workers.remove(slot);
            tracing::debug!(%slot, "slot job no longer needed: stopped");
            self.stop_in_background(slot);
        }
    }

    fn let_idle_go(&mut self, which: impl Fn(Shape) -> bool) {
        let idle: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.trial.is_none() && w.to_worker.is_some() && which(w.shape))
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in idle {
            if let Some(to_worker) = self.workers.remove(&slot).and_then(|w| w.to_worker) {
                let _ = to_worker.send(ToWorker::Exit);
            }
        }
    }

    fn assign(&mut self, slot: &str, spec: JobSpec) {
        let Some(worker) = self.workers.get_mut(slot) else {
            return;
        };
        let Some(to_worker) = &worker.to_worker else {
            return;
        };
        let assigned = Assigned {
            id: spec.id.clone(),
            echo: spec.echo,
            cancelled: false,
        };
        tracing::info!(trial = %spec.id, %slot, "trial handed to a slot worker");
        if to_worker
            .send(ToWorker::Run {
                spec: Box::new(spec),
            })
            .is_ok()
        {
            worker.trial = Some(assigned);
            worker.idle_since = None;
        }
        // A closed connection: its Gone puts nothing back, so the trial
        // is told lost at once (retried by the engine).
        else {
            let _ = self.setup.events.send(JobEvent::Finished {
                id: assigned.id,
                outcome: Outcome::Lost(format!("the slot worker {slot} went away")),
            });
        }
    }

    /// Submit one more slot job of `shape`, its spec from the first queued
    /// trial of that shape.
    fn submit(&mut self, shape: Shape) {
        let Some(template) = self.queue.iter().find(|s| Shape::of(s) == shape) else {
            return;
        };
        self.submitted += 1;
        let slot = format!("{}-slot-{}", self.setup.run, self.submitted);
        let spec = SlotSpec {
            slot: slot.clone(),
            socket: self.socket.clone(),
            sync: template.sync.clone(),
            flambe: self.setup.flambe.clone(),
            ray_venv: template.ray_venv.clone(),
        };
        let body = json!({
            "entrypoint": format!("{} slot-run {}", self.setup.flambe, encode_hex(&spec)),
            "submission_id": slot,
            "metadata": { SLOTS_METADATA: trials_folder(&template.metrics) },
            "entrypoint_num_cpus": template.cpus,
            "entrypoint_num_gpus": template.gpus,
        });
        self.workers.insert(
            slot.clone(),
            Worker {
                shape,
                number: self.submitted,
                to_worker: None,
                trial: None,
                idle_since: None,
                ended_since: None,
            },
        );
        let (client, base, commands) = (
            self.setup.client.clone(),
            self.setup.base.clone(),
            self.commands.clone(),
        );
        tokio::spawn(async move {
            match submit_job(&client, &base, &body).await {
                Ok(()) => tracing::info!(%slot, "slot worker submitted to Ray"),
                Err(e) => {
                    if let Some(commands) = commands.upgrade() {
                        let _ = commands.send(Command::SubmitFailed {
                            slot,
                            error: e.to_string(),
                        });
                    }
                }
            }
        });
    }
}
