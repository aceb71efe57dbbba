//! The engine against a scripted executor: retries, ASHA stopping, resume
//! after an interrupted run, and `reduce` feeding the next stage. The
//! executor plays each trial's part (metrics one at a time, then an exit
//! code, or hanging until it is cancelled) from the trial's params and
//! attempt, so every decision here is the engine's own.

use crate::engine::run_on;
use crate::options::{Event, Observer, RunOptions};
use crate::results::Report;
use crate::{EngineError, Status};
use flambe_config::{Experiment, Runnable, load_str};
use flambe_executor::{BoxFuture, Executor, JobEvent, JobSpec, MetricLine, Outcome};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What a trial does, by its params and attempt.
pub(crate) enum Part {
    /// Report these `acc` values at steps 1, 2, …, then exit with `code`.
    Run { acc: Vec<f64>, code: i32 },
    /// Report nothing and run until cancelled.
    Hang,
}

pub(crate) struct Job {
    pub id: String,
    pub attempt: u32,
    pub params: serde_json::Value,
    /// `$FLAMBE_CHECKPOINT`.
    pub checkpoint: PathBuf,
    /// `$FLAMBE_RESTORE_DONOR`: PBT's donor, on the attempt after an exploit.
    pub restore_donor: Option<String>,
}

pub(crate) type Script = Arc<dyn Fn(&Job) -> Part + Send + Sync>;

struct Fake {
    tx: mpsc::UnboundedSender<JobEvent>,
    slots: usize,
    running: HashSet<String>,
    script: Script,
    /// Every launch, in order: (trial id, attempt).
    launched: Arc<Mutex<Vec<(String, u32)>>>,
    cancelled: Mutex<Vec<(String, Arc<AtomicBool>)>>,
    /// Fired when a trial hangs: the test's interrupt.
    on_hang: Mutex<Option<oneshot::Sender<()>>>,
}

fn env_of<'a>(spec: &'a JobSpec, key: &str) -> &'a str {
    spec.env
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

impl Executor for Fake {
    fn fits(&self, _cpus: f64, _gpus: u32) -> bool {
        self.running.len() < self.slots
    }
    fn running(&self) -> usize {
        self.running.len()
    }
    fn launch(&mut self, spec: JobSpec) {
        let job = Job {
            id: spec.id.clone(),
            attempt: env_of(&spec, "FLAMBE_ATTEMPT").parse().unwrap(),
            params: serde_json::from_str(env_of(&spec, "FLAMBE_PARAMS")).unwrap(),
            checkpoint: PathBuf::from(env_of(&spec, "FLAMBE_CHECKPOINT")),
            restore_donor: Some(env_of(&spec, "FLAMBE_RESTORE_DONOR"))
                .filter(|d| !d.is_empty())
                .map(str::to_string),
        };
        self.launched
            .lock()
            .unwrap()
            .push((job.id.clone(), job.attempt));
        self.running.insert(job.id.clone());
        let stop = Arc::new(AtomicBool::new(false));
        self.cancelled
            .lock()
            .unwrap()
            .push((job.id.clone(), stop.clone()));
        let part = (self.script)(&job);
        if matches!(part, Part::Hang)
            && let Some(fire) = self.on_hang.lock().unwrap().take()
        {
            let _ = fire.send(());
        }
        let tx = self.tx.clone();
        let id = job.id;
        tokio::spawn(async move {
            let send = |e| {
                let _ = tx.send(e);
            };
            send(JobEvent::Started {
                id: id.clone(),
                pid: 0,
                gpus: vec![],
            });
            let (acc, code) = match part {
                Part::Run { acc, code } => (acc, Some(code)),
                Part::Hang => (vec![], None),
            };
            for (i, value) in acc.into_iter().enumerate() {
                // Let the engine read each metric (and decide) before the next.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                send(JobEvent::Metric {
                    id: id.clone(),
                    line: i + 1,
                    metric: MetricLine {
                        step: Some(i as i64 + 1),
                        values: vec![("acc".into(), value)],
                    },
                });
            }
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            while code.is_none() && !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let outcome = match code {
                _ if stop.load(Ordering::SeqCst) => Outcome::Cancelled,
                Some(code) => Outcome::Exited(code),
                None => Outcome::Cancelled,
            };
            send(JobEvent::Finished { id, outcome });
        });
    }
    fn release(&mut self, id: &str) {
        self.running.remove(id);
    }
    fn cancel(&self, id: &str) {
        for (job, stop) in self.cancelled.lock().unwrap().iter() {
            if job == id {
                stop.store(true, Ordering::SeqCst);
            }
        }
    }
    fn cancel_all(&self) {
        for (_, stop) in self.cancelled.lock().unwrap().iter() {
            stop.store(true, Ordering::SeqCst);
        }
    }
    fn host(&self) -> &str {
        "fake"
    }
    fn stop_leftovers<'a>(&'a self, _outs: &'a [PathBuf]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

struct Quiet;
impl Observer for Quiet {
    fn on(&mut self, _: Event<'_>) {}
}

pub(crate) fn experiment(dir: &Path, yaml: &str) -> Experiment {
    let text = format!(
        "!Experiment\nname: exp\nsave_path: {}\nmax_failures: 1\npipeline:\n{yaml}",
        dir.display()
    );
    match load_str(Path::new("exp.yaml"), &text, &|_| None)
        .unwrap()
        .runnable
    {
        Runnable::Experiment(e) => e,
        _ => unreachable!(),
    }
}

pub(crate) struct Run {
    pub result: Result<Report, EngineError>,
    pub launched: Vec<(String, u32)>,
}

/// Run `exp` on a fake with `slots` at once; a hanging trial interrupts
/// the run.
pub(crate) async fn run(exp: &Experiment, slots: usize, script: Script) -> Run {
    let launched = Arc::new(Mutex::new(Vec::new()));
    let (fire, hung) = oneshot::channel::<()>();
    let log = launched.clone();
    let make = move |_cpus, _gpus, tx| -> Box<dyn Executor> {
        Box::new(Fake {
            tx,
            slots,
            running: HashSet::new(),
            script,
            launched: log,
            cancelled: Mutex::new(Vec::new()),
            on_hang: Mutex::new(Some(fire)),
        })
    };
    let interrupt = Box::pin(async move {
        if hung.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let result = run_on(exp, &RunOptions::default(), &mut Quiet, interrupt, make).await;
    let launched = launched.lock().unwrap().clone();
    Run { result, launched }
}

pub(crate) fn lr(job: &Job) -> f64 {
    job.params["lr"].as_f64().unwrap()
}

const TRAIN: &str = "  train: !Stage\n    run: train {lr}\n    params:\n      lr: !g [1, 2, 3, 4]\n    metric: acc\n    mode: max\n";

#[tokio::test]
async fn a_failed_attempt_is_retried_and_a_trial_failing_every_time_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), TRAIN);
    // lr 2 fails once, then succeeds; lr 4 always fails.
    let script: Script = Arc::new(|job| match (lr(job) as i32, job.attempt) {
        (2, 1) | (4, _) => Part::Run {
            acc: vec![0.1],
            code: 1,
        },
        _ => Part::Run {
            acc: vec![lr(job) / 10.0],
            code: 0,
        },
    });
    let run = run(&exp, 2, script).await;
    let report = run.result.unwrap();
    let rows = &report.stages[0].rows;
    let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row("train-001").status, Status::Succeeded);
    assert_eq!(row("train-001").attempts, 2);
    assert_eq!(row("train-003").status, Status::Failed);
    // max_failures: 1 → two attempts in all, no third.
    assert_eq!(row("train-003").attempts, 2);
    let of = |id: &str| run.launched.iter().filter(|(t, _)| t == id).count();
    assert_eq!(
        (of("train-000"), of("train-001"), of("train-003")),
        (1, 2, 2)
    );
    // The failed trial ranks last, the best succeeded one first.
    assert_eq!(rows[0].id, "train-002");
    assert_eq!(rows.last().unwrap().id, "train-003");
}

#[tokio::test]
async fn asha_stops_the_trials_behind_at_a_rung_and_the_stage_still_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        &format!(
            "{TRAIN}    scheduler: !ASHA {{max_t: 8, grace_period: 2, reduction_factor: 2}}\n"
        ),
    );
    // One at a time, best first: every later trial is behind at step 2.
    let script: Script = Arc::new(|job| Part::Run {
        acc: (1..=10).map(|s| s as f64 / lr(job)).collect(),
        code: 0,
    });
    let report = run(&exp, 1, script).await.result.unwrap();
    let stage = &report.stages[0];
    for row in &stage.rows {
        assert_eq!(row.status, Status::Stopped, "{row:?}");
        let stopped_at = if row.id == "train-000" { 8 } else { 2 };
        assert_eq!(row.best_step, Some(stopped_at), "{row:?}");
        assert!(
            row.error
                .as_deref()
                .is_some_and(|e| e.contains("ASHA") && e.contains(&format!("step {stopped_at}"))),
            "{row:?}"
        );
    }
    assert_eq!(stage.rows[0].id, "train-000");
    assert!(report.stages_without_success().is_empty());
}

#[tokio::test]
async fn an_interrupted_run_resumes_running_only_what_did_not_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), TRAIN);
    let done = |job: &Job| Part::Run {
        acc: vec![lr(job) / 10.0],
        code: 0,
    };
    // lr 3 hangs: the run is interrupted while it runs.
    let first = run(
        &exp,
        1,
        Arc::new(move |job| {
            if lr(job) == 3.0 {
                Part::Hang
            } else {
                done(job)
            }
        }),
    )
    .await;
    match first.result {
        Err(EngineError::Interrupted { running, .. }) => assert_eq!(running, 1),
        other => panic!("expected an interrupted run, got {other:?}"),
    }
    assert_eq!(
        first.launched,
        vec![
            ("train-000".into(), 1),
            ("train-001".into(), 1),
            ("train-002".into(), 1)
        ]
    );
    let second = run(&exp, 1, Arc::new(done)).await;
    let report = second.result.unwrap();
    // The finished trials are not run again; the interrupted one runs as
    // its next attempt, and the one never started as its first.
    assert_eq!(
        second.launched,
        vec![("train-002".into(), 2), ("train-003".into(), 1)]
    );
    assert!(
        report.stages[0]
            .rows
            .iter()
            .all(|r| r.status == Status::Succeeded)
    );
    assert_eq!(report.stages[0].rows[0].id, "train-003");
    // And a third run has nothing left to do.
    let third = run(&exp, 1, Arc::new(done)).await;
    assert!(third.result.is_ok());
    assert!(third.launched.is_empty(), "{:?}", third.launched);
}

#[tokio::test]
async fn reduce_sends_only_the_best_trials_on_to_the_next_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        &format!(
            "{TRAIN}    reduce: 2\n  eval: !Stage\n    run: eval {{train.out}}\n    metric: acc\n    mode: max\n"
        ),
    );
    // lr 3 is best, then 1; eval reports its parent's value back.
    let script: Script = Arc::new(|job| {
        let acc = match job.params.get("lr").and_then(|v| v.as_f64()) {
            Some(lr) => [0.5, 0.2, 0.9, 0.1][lr as usize - 1],
            None => 0.7,
        };
        Part::Run {
            acc: vec![acc],
            code: 0,
        }
    });
    let report = run(&exp, 2, script).await.result.unwrap();
    assert_eq!(report.stages[0].survivors, vec!["train-000", "train-002"]);
    let mut parents: Vec<String> = report.stages[1]
        .rows
        .iter()
        .map(|r| r.parent.clone().unwrap())
        .collect();
    parents.sort();
    assert_eq!(parents, vec!["train-000", "train-002"]);
    assert_eq!(report.stages[1].rows.len(), 2);
}
