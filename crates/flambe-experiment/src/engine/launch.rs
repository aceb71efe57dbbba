//! A trial's attempt launched: its folders made ready (a fresh output
//! folder, the checkpoint folder kept), its command rendered, its
//! `FLAMBE_*` environment built, and the job handed to the executor.

use super::{Engine, Result, RunningTrial};
use crate::environment::Secrets;
use crate::error::EngineError;
use crate::options::Event;
use crate::state::{Status, Trial};
use flambe_executor::{JobSpec, MARKER_VAR};
use std::path::Path;

impl Engine<'_> {
    /// Trial `id`'s folder takes the results of attempt `attempt` only,
    /// where results come back from elsewhere (see
    /// [`flambe_executor::Executor::sends_results_back`]).
    pub(super) fn guard_attempt(&self, id: &str, attempt: u32) -> Result<()> {
        if !self.executor.sends_results_back() {
            return Ok(());
        }
        self.dir
            .trial(id)
            .write_attempt(attempt)
            .map_err(|source| EngineError::Io {
                what: format!("cannot write the attempt of {id}"),
                source,
            })
    }

    pub(super) fn launch(&mut self, stage_index: usize, trial: Trial) -> Result<()> {
        let stage = &self.exp.pipeline[stage_index];
        let host = self.executor.host().to_string();
        let attempt = self.state(self.store.start_attempt(&trial.id, &host))?;
        let dir = self.dir.trial(&trial.id);
        let out = dir.out();
        let io = |what: String| move |source| EngineError::Io { what, source };
        // A new attempt starts from an empty output folder.
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(io(format!("cannot clear {}", out.display())))?;
        }
        std::fs::create_dir_all(&out).map_err(io(format!("cannot create {}", out.display())))?;
        // The checkpoint folder is the one thing an attempt inherits.
        let checkpoint = dir.checkpoint();
        std::fs::create_dir_all(&checkpoint)
            .map_err(io(format!("cannot create {}", checkpoint.display())))?;
        // PBT may have given this attempt other params, and a donor's
        // checkpoint to restore.
        let (params, exploited) = self.attempt_params(&trial, attempt)?;
        let trial = Trial { params, ..trial };
        let params_json = serde_json::Value::Object(trial.params.clone()).to_string();
        std::fs::write(dir.params(), &params_json)
            .map_err(io(format!("cannot write params of {}", trial.id)))?;
        // The attempt whose results the folder takes: a factory that was cut
        // off and comes back late with an older attempt's results is refused.
        self.guard_attempt(&trial.id, attempt)?;
        let command = match self.render(stage, &trial, &out) {
            Ok(c) => c,
            Err(why) => {
                let why = why.to_string();
                self.state(self.store.finish_attempt(
                    &trial.id,
                    attempt,
                    &why,
                    true,
                    Status::Failed,
                ))?;
                self.observer.on(Event::TrialFinished {
                    stage: &stage.name,
                    id: &trial.id,
                    status: Status::Failed,
                    detail: &why,
                });
                return Ok(());
            }
        };
        let mut env = vec![
            (MARKER_VAR.to_string(), out.display().to_string()),
            (
                "FLAMBE_METRICS".to_string(),
                dir.metrics().display().to_string(),
            ),
            ("FLAMBE_TRIAL".to_string(), trial.id.clone()),
            ("FLAMBE_STAGE".to_string(), stage.name.clone()),
            ("FLAMBE_PARAMS".to_string(), params_json),
            ("FLAMBE_ATTEMPT".to_string(), attempt.to_string()),
            (
                "FLAMBE_CHECKPOINT".to_string(),
                checkpoint.display().to_string(),
            ),
        ];
        if let Some(e) = &exploited {
            // The checkpoint folder already holds the donor's copy.
            env.push((
                "FLAMBE_RESTORE_FROM".to_string(),
                checkpoint.display().to_string(),
            ));
            env.push(("FLAMBE_RESTORE_DONOR".to_string(), e.donor.clone()));
        }
        let stage_env = &self.stage_envs[stage_index];
        env.extend(stage_env.values.iter().cloned());
        let secret_env = stage_env.secret_refs.clone();
        let header = format!("=== flambe: {} attempt {attempt}: {command}\n", trial.id);
        for log in [dir.stdout(), dir.stderr()] {
            append(&log, &header).map_err(io(format!("cannot write {}", log.display())))?;
        }
        tracing::info!(trial = %trial.id, attempt, host = %host, "trial launched");
        tracing::debug!(trial = %trial.id, %command, "trial command");
        self.observer.on(Event::TrialStarted {
            stage: &stage.name,
            id: &trial.id,
            attempt,
            dir: dir.path(),
        });
        // An attempt going on from a donor has reported what the donor had.
        let reported = match (&exploited, &stage.metric) {
            (Some(_), Some(metric)) => {
                self.state(self.store.metric_summary(&trial.id, metric, false))?
                    .steps
                    > 0
            }
            _ => false,
        };
        self.executor.launch(JobSpec {
            id: trial.id.clone(),
            command,
            cwd: out,
            env,
            cpus: stage.cpus,
            gpus: stage.gpus,
            timeout: stage.timeout,
            stdout: dir.stdout(),
            stderr: dir.stderr(),
            metrics: dir.metrics(),
            echo: self.echo,
            inputs: self.ancestor_outputs(&trial),
            sync: self.sync.clone(),
            secrets_file: match &self.secrets {
                Secrets::File(path) if !secret_env.is_empty() => Some(path.clone()),
                _ => None,
            },
            secret_env,
            path_prefix: self.python_bin.clone(),
            ray_venv: self.ray_venv.clone(),
            checkpoint: Some(checkpoint),
        });
        self.running.insert(
            trial.id.clone(),
            RunningTrial {
                stage: stage_index,
                trial,
                attempt,
                reported,
                early_stop: None,
                exploit: None,
            },
        );
        Ok(())
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}
