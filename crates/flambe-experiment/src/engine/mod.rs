//! The driver: runs an experiment's stages in order on an executor,
//! recording everything in the [`Store`] as it happens.
//!
//! For each stage it creates the trials (surviving parents × the stage's own
//! variants; existing ones are kept, so a rerun resumes), launches pending
//! trials as the executor has room, reads their metrics live, applies the
//! stage's scheduler, retries failures up to `max_failures`, and ranks the
//! finished trials to pick the survivors. What happens is reported to an
//! [`Observer`] (progress bars, TensorBoard files), which never decides
//! anything.

use crate::environment::{Secrets, TrialEnv, check_resources, check_secrets_file, resolve_env};
use crate::error::EngineError;
use crate::layout::{ResultsDir, RunStatus};
use crate::options::{Event, Observer, RayTarget, RunOptions};
use crate::prepare::prepare;
use crate::results::{Report, stage_result, write_results};
use crate::schedulers::{StageScheduler, Verdict};
use crate::state::{Status, Store, Trial};
use flambe_config::{Experiment, Search};
use flambe_executor::{Executor, JobEvent, LocalExecutor, Outcome, RayExecutor};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::sync::mpsc;

mod launch;
mod pbt;
mod render;
mod trials;

type Result<T> = std::result::Result<T, EngineError>;

/// Run (or resume) an experiment, here or on the Ray cluster of
/// `opts.ray`. Returns when every stage is done, or with
/// [`EngineError::Interrupted`] once `interrupt` fires and the running
/// trials are stopped (a rerun resumes).
pub async fn run_experiment(
    exp: &Experiment,
    opts: &RunOptions,
    observer: &mut dyn Observer,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<Report> {
    let ray = opts.ray.clone();
    let name = exp.name.clone();
    let make = move |cpus, gpus, tx| -> Box<dyn Executor> {
        match &ray {
            None => Box::new(LocalExecutor::new(cpus, gpus, tx)),
            Some(ray) => {
                let run = format!("{name}-{}", crate::state::now() as u64);
                Box::new(
                    RayExecutor::new(&ray.address, &ray.flambe, &run, ray.max_in_flight, tx)
                        .job_per_trial(ray.job_per_trial),
                )
            }
        }
    };
    run_on(exp, opts, observer, interrupt, make).await
}

/// [`run_experiment`] on the executor `make_executor` returns for the
/// CPUs and GPUs to fill and the channel it reports on (the engine's unit
/// tests give it a scripted one).
pub(crate) async fn run_on(
    exp: &Experiment,
    opts: &RunOptions,
    observer: &mut dyn Observer,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
    make_executor: impl FnOnce(f64, u32, mpsc::UnboundedSender<JobEvent>) -> Box<dyn Executor>,
) -> Result<Report> {
    let dir = ResultsDir::new(&exp.save_path, &exp.name);
    let cpus = opts
        .cpus
        .or(exp.devices.cpus)
        .unwrap_or_else(flambe_executor::detect_cpus);
    let gpus = opts
        .gpus
        .or(exp.devices.gpus)
        .unwrap_or_else(flambe_executor::detect_gpus);
    // Here the machine's size bounds a trial; on Ray the cluster's does.
    if opts.ray.is_none() {
        check_resources(exp, cpus, gpus)?;
    }
    let secrets = match &opts.ray {
        None => Secrets::Environment,
        Some(RayTarget {
            secrets_file: Some(path),
            ..
        }) => {
            check_secrets_file(exp, path)?;
            Secrets::File(path.clone())
        }
        Some(_) => Secrets::Unavailable,
    };
    // Each stage's environment (the experiment's, the extensions', the
    // stage's own), resolved once: every secret is checked before any trial.
    let mut base_env = resolve_env(&exp.env, &secrets)?;
    if let Some(py) = &opts.python {
        base_env.values.extend(py.trial_env());
    }
    let stage_envs = exp
        .pipeline
        .iter()
        .map(|stage| {
            let own = resolve_env(&stage.env, &secrets)?;
            let mut env = TrialEnv {
                values: base_env.values.clone(),
                secret_refs: base_env.secret_refs.clone(),
            };
            env.values.extend(own.values);
            env.secret_refs.extend(own.secret_refs);
            Ok(env)
        })
        .collect::<Result<Vec<_>>>()?;
    // Held until this run ends: before `prepare`, which may move the
    // results aside (`--force`) or recover a dead driver's trials.
    let _lock = crate::lock::acquire(dir.path(), &exp.name)?;
    let prepared = prepare(exp, &dir, opts)?;
    let (store, resumed, set_aside_to) = (prepared.store, prepared.resumed, prepared.set_aside_to);
    if !prepared.grows.is_empty() {
        observer.on(Event::Extended {
            grows: &prepared.grows,
        });
    }
    if let Some(aside) = &set_aside_to {
        observer.on(Event::Warning(format!(
            "the old results are set aside in {}",
            aside.display()
        )));
    }
    if let Some(py) = &opts.python {
        let path = dir.extensions();
        let text = serde_json::to_string_pretty(&py.record()).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| EngineError::Io {
            what: format!("cannot write {}", path.display()),
            source,
        })?;
    }
    let on = match &opts.ray {
        Some(ray) => format!("Ray at {}", ray.address),
        None => format!("this machine ({cpus} CPUs, {gpus} GPUs)"),
    };
    observer.on(Event::Begin {
        dir: dir.path(),
        on,
        resumed,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let executor = make_executor(cpus, gpus, tx);
    let mut engine = Engine {
        exp,
        dir,
        store,
        observer,
        executor,
        events: rx,
        running: HashMap::new(),
        stage_envs,
        secrets,
        python_bin: opts.python.as_ref().map(|p| p.bin()),
        echo: opts.echo,
        sync: opts.ray.as_ref().and_then(|r| r.sync.clone()),
        ray_venv: opts.ray.as_ref().and_then(|r| r.ray_venv.clone()),
        interrupt,
    };
    engine.run().await
}

struct RunningTrial {
    stage: usize,
    /// As this attempt runs it: with PBT's latest params for it.
    trial: Trial,
    attempt: u32,
    reported: bool,
    early_stop: Option<String>,
    /// PBT's exploit, decided at this step, to carry out once it stops.
    exploit: Option<pbt::PendingExploit>,
}

struct Engine<'a> {
    exp: &'a Experiment,
    dir: ResultsDir,
    store: Store,
    observer: &'a mut dyn Observer,
    executor: Box<dyn Executor>,
    events: mpsc::UnboundedReceiver<JobEvent>,
    running: HashMap<String, RunningTrial>,
    /// Per stage, in pipeline order: what its trials get on top of their
    /// own `FLAMBE_*` variables.
    stage_envs: Vec<TrialEnv>,
    secrets: Secrets,
    /// The extensions' venv `bin`, first on every trial's PATH.
    python_bin: Option<PathBuf>,
    echo: bool,
    sync: Option<flambe_executor::SyncHost>,
    ray_venv: Option<PathBuf>,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Engine<'_> {
    fn state<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|source| EngineError::State {
            path: self.dir.state_db(),
            source,
        })
    }

    /// Run every stage, recording the run's [`RunStatus`] and times for
    /// whoever reads the state.
    async fn run(&mut self) -> Result<Report> {
        let now = crate::state::now().to_string();
        if self.state(self.store.meta("started"))?.is_none() {
            self.state(self.store.set_meta("started", &now))?;
        }
        self.state(self.store.set_meta("status", RunStatus::Running.as_str()))?;
        let _ = std::fs::remove_file(self.dir.status_marker());
        let result = self.run_stages().await;
        let status = match &result {
            Ok(_) => RunStatus::Finished,
            Err(EngineError::Interrupted { .. }) => RunStatus::Interrupted,
            Err(_) => RunStatus::Stopped,
        };
        self.state(self.store.set_meta("status", status.as_str()))?;
        self.state(
            self.store
                .set_meta("ended", &crate::state::now().to_string()),
        )?;
        // A plain marker of how the run ended, for whoever watches from
        // afar once the driver (and its site) is gone.
        let _ = std::fs::write(self.dir.status_marker(), format!("{status}\n"));
        result
    }

    async fn run_stages(&mut self) -> Result<Report> {
        // Trials an earlier driver left running: whatever is left of them
        // (here, or as Ray jobs) goes before any of them runs again.
        let stale = self.state(self.store.recover())?;
        let outs: Vec<PathBuf> = stale.iter().map(|t| self.out_dir(&t.id)).collect();
        self.executor.stop_leftovers(&outs).await;
        let mut parents: Vec<Option<Trial>> = vec![None];
        for (index, stage) in self.exp.pipeline.iter().enumerate() {
            self.create_trials(stage, &parents)?;
            let trials = self.state(self.store.stage_trials(&stage.name))?;
            // A TPE stage's trials are created as it runs: its total is its budget.
            let total = match stage.search {
                Search::Tpe { trials: budget, .. } => {
                    trials.len().max(budget as usize * parents.len())
                }
                _ => trials.len(),
            };
            self.observer.on(Event::StageBegin {
                stage,
                total,
                done: trials.iter().filter(|t| t.status.is_done()).count(),
                failed: trials.iter().filter(|t| t.status == Status::Failed).count(),
            });
            let pending: VecDeque<Trial> =
                trials.into_iter().filter(|t| !t.status.is_done()).collect();
            let outcome = self.run_stage(index, pending, &parents).await;
            if let Err(e) = outcome {
                write_results(self.dir.path(), self.exp, &self.store)?;
                return Err(e);
            }
            let result = self.state(stage_result(&self.store, stage))?;
            self.observer.on(Event::StageEnd { result: &result });
            if result.survivors.is_empty() && index + 1 < self.exp.pipeline.len() {
                self.observer.on(Event::Warning(format!(
                    "no trial of stage `{}` finished with its metric: the stages after it have nothing to run",
                    stage.name
                )));
            }
            parents = result
                .survivors
                .iter()
                .map(|id| self.state(self.store.trial(id)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .map(|t| Some(t.expect("a survivor is a recorded trial")))
                .collect();
            write_results(self.dir.path(), self.exp, &self.store)?;
        }
        Ok(write_results(self.dir.path(), self.exp, &self.store)?)
    }

    async fn run_stage(
        &mut self,
        index: usize,
        queue: VecDeque<Trial>,
        parents: &[Option<Trial>],
    ) -> Result<()> {
        let span = tracing::info_span!("stage", stage = %self.exp.pipeline[index].name);
        tracing::Instrument::instrument(self.run_stage_in_span(index, queue, parents), span).await
    }

    async fn run_stage_in_span(
        &mut self,
        index: usize,
        mut queue: VecDeque<Trial>,
        parents: &[Option<Trial>],
    ) -> Result<()> {
        let stage = &self.exp.pipeline[index];
        tracing::info!(trials = queue.len(), "stage started");
        let mut scheduler = stage
            .scheduler
            .as_ref()
            .map(|s| StageScheduler::new(s, stage, self.exp.seed));
        if let (Some(scheduler), Some(metric)) = (scheduler.as_mut(), &stage.metric) {
            self.replay_finished(stage, metric, scheduler)?;
        }
        loop {
            while !queue.is_empty() && self.executor.fits(stage.cpus, stage.gpus) {
                let trial = queue.pop_front().expect("queue is not empty");
                self.launch(index, trial)?;
            }
            // A TPE stage asks for its next trial whenever a slot is free.
            let mut exhausted = true;
            if let Search::Tpe {
                trials,
                startup,
                concurrency,
            } = stage.search
            {
                while queue.is_empty()
                    && self.running.len() < concurrency as usize
                    && self.executor.fits(stage.cpus, stage.gpus)
                {
                    let Some(trial) = self.next_suggestion(stage, parents, trials, startup)? else {
                        break;
                    };
                    self.launch(index, trial)?;
                }
                exhausted = self.suggest_slot(stage, parents, trials)?.is_none();
            }
            if queue.is_empty() && self.executor.running() == 0 && exhausted {
                return Ok(());
            }
            tokio::select! {
                event = self.events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    if let Some(retry) = self.handle(event, scheduler.as_mut())? {
                        queue.push_back(retry);
                    }
                }
                () = &mut self.interrupt => {
                    let running = self.stop_all().await?;
                    return Err(EngineError::Interrupted { dir: self.dir.path().to_path_buf(), running });
                }
            }
        }
    }

    fn out_dir(&self, id: &str) -> PathBuf {
        self.dir.trial(id).out()
    }

    /// One executor event; returns a trial to retry.
    fn handle(
        &mut self,
        event: JobEvent,
        scheduler: Option<&mut StageScheduler>,
    ) -> Result<Option<Trial>> {
        match event {
            JobEvent::Started { id, pid, .. } if pid > 0 => {
                self.state(self.store.set_pgid(&id, pid))?
            }
            JobEvent::Started { .. } => {}
            JobEvent::Metric { id, line, metric } => {
                let Some(rt) = self.running.get_mut(&id) else {
                    return Ok(None);
                };
                let stage = &self.exp.pipeline[rt.stage];
                let step = metric.step.unwrap_or(line as i64);
                let attempt = rt.attempt;
                let watched = stage
                    .metric
                    .as_ref()
                    .and_then(|m| metric.values.iter().find(|(k, _)| k == m))
                    .map(|(_, v)| *v);
                if watched.is_some() {
                    rt.reported = true;
                }
                let deciding = rt.early_stop.is_none() && rt.exploit.is_none();
                if let (Some(value), Some(scheduler), true) = (watched, scheduler, deciding) {
                    match scheduler.on_result(&id, rt.trial.index, &rt.trial.params, step, value) {
                        Verdict::Continue => {}
                        Verdict::Stop(reason) => {
                            rt.early_stop = Some(reason);
                            self.executor.cancel(&id);
                        }
                        Verdict::Exploit(exploit) => {
                            // Staged (and the attempt guard moved on) before
                            // the stop: the stopping attempt's last copies
                            // back must not land over the donor's checkpoint.
                            let pending = self.stage_exploit(&id, attempt, step, exploit)?;
                            self.executor.cancel(&id);
                            if let Some(rt) = self.running.get_mut(&id) {
                                rt.exploit = Some(pending);
                            }
                        }
                    }
                }
                self.state(
                    self.store
                        .record_metrics(&id, attempt, step, &metric.values),
                )?;
                self.observer.on(Event::Metrics {
                    stage: &stage.name,
                    id: &id,
                    step,
                    values: &metric.values,
                });
            }
            JobEvent::BadMetricLine { id, line, error } => {
                self.observer.on(Event::Warning(format!(
                    "trial {id}: line {line} of its metrics file is ignored: {error}"
                )));
            }
            JobEvent::Output { id, stderr, line } => self.observer.on(Event::Output {
                id: &id,
                stderr,
                line: &line,
            }),
            JobEvent::Finished { id, outcome } => return self.finish(&id, outcome, scheduler),
        }
        Ok(None)
    }

    fn finish(
        &mut self,
        id: &str,
        outcome: Outcome,
        scheduler: Option<&mut StageScheduler>,
    ) -> Result<Option<Trial>> {
        self.executor.release(id);
        let Some(mut rt) = self.running.remove(id) else {
            return Ok(None);
        };
        // A trial that ended by itself before PBT's stop reached it is done
        // (its attempt guard back to its own attempt).
        if let Some(pending) = rt.exploit.take() {
            if !matches!(outcome, Outcome::Exited(0)) {
                return self.continue_exploited(rt, pending);
            }
            self.guard_attempt(id, rt.attempt)?;
        }

        let stage = &self.exp.pipeline[rt.stage];
        let (status, failed, detail) = match (&rt.early_stop, &outcome) {
            (Some(reason), _) => (Status::Stopped, false, reason.clone()),
            (None, Outcome::Exited(0)) if rt.reported || stage.metric.is_none() => {
                (Status::Succeeded, false, outcome.to_string())
            }
            (None, Outcome::Exited(0)) => (
                Status::Failed,
                true,
                format!(
                    "exited with code 0 without reporting `{}`",
                    stage.metric.as_deref().unwrap_or("")
                ),
            ),
            (None, other) => (Status::Failed, true, other.to_string()),
        };
        let retry = failed && rt.trial.failures < self.exp.max_failures;
        let status = if retry { Status::Pending } else { status };
        if let (Some(scheduler), false) = (scheduler, retry) {
            scheduler.finished(id);
        }
        tracing::info!(trial = %id, stage = %stage.name, ?status, %detail, retry, "trial finished");
        self.state(
            self.store
                .finish_attempt(id, rt.attempt, &detail, failed, status),
        )?;
        let detail = if retry {
            format!(
                "{detail}; retrying ({} of {} retries)",
                rt.trial.failures + 1,
                self.exp.max_failures
            )
        } else {
            detail
        };
        self.observer.on(Event::TrialFinished {
            stage: &stage.name,
            id,
            status,
            detail: &detail,
        });
        if retry {
            return self.state(self.store.trial(id));
        }
        Ok(None)
    }

    /// Stop every running trial and record it as interrupted.
    async fn stop_all(&mut self) -> Result<usize> {
        let count = self.running.len();
        self.executor.cancel_all();
        while !self.running.is_empty() {
            let Some(event) = self.events.recv().await else {
                break;
            };
            if let JobEvent::Finished { id, .. } = event {
                self.executor.release(&id);
                if let Some(rt) = self.running.remove(&id) {
                    self.state(self.store.interrupt(&id, rt.attempt))?;
                }
            }
        }
        Ok(count)
    }
}
