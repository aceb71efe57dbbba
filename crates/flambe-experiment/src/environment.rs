//! A trial's environment: the config's `env` (the experiment's, the
//! stage's), with `!env` secrets either read here (a local run) or passed
//! as keys into a secrets file (Ray), and the checks made before any trial.

use crate::error::EngineError;
use flambe_config::{EnvValue, EnvVar, Experiment};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, EngineError>;

/// Where the values of `!env NAME` come from.
pub(crate) enum Secrets {
    /// This process's environment (a local run): values go into the
    /// trial's environment directly, in memory only.
    Environment,
    /// A secrets file whose keys were checked: trials get the keys and read
    /// the values themselves (`flambe trial-run`).
    File(PathBuf),
    /// Ray without a secrets file: `!env` cannot reach trials.
    Unavailable,
}

/// A trial's environment: plain values, and secrets to read where it runs.
#[derive(Default)]
pub(crate) struct TrialEnv {
    pub(crate) values: Vec<(String, String)>,
    /// (variable, key in the secrets file)
    pub(crate) secret_refs: Vec<(String, String)>,
}

pub(crate) fn check_resources(exp: &Experiment, cpus: f64, gpus: u32) -> Result<()> {
    for stage in &exp.pipeline {
        if stage.cpus > cpus + 1e-9 || stage.gpus > gpus {
            return Err(EngineError::Resources {
                stage: stage.name.clone(),
                need: format!("{} CPUs and {} GPUs", stage.cpus, stage.gpus),
                have: format!("{cpus} CPUs and {gpus} GPUs"),
            });
        }
    }
    Ok(())
}

/// Literal values as written; `!env NAME` from this process's environment
/// or as a reference into the secrets file.
pub(crate) fn resolve_env(vars: &[EnvVar], secrets: &Secrets) -> Result<TrialEnv> {
    let mut env = TrialEnv::default();
    for v in vars {
        match (&v.value, secrets) {
            (EnvValue::Literal(s), _) => env.values.push((v.name.clone(), s.clone())),
            (EnvValue::FromEnv(var), Secrets::Environment) => {
                let value = std::env::var(var).map_err(|_| EngineError::UnsetSecret {
                    name: v.name.clone(),
                    var: var.clone(),
                })?;
                env.values.push((v.name.clone(), value));
            }
            (EnvValue::FromEnv(var), Secrets::File(_)) => {
                env.secret_refs.push((v.name.clone(), var.clone()))
            }
            (EnvValue::FromEnv(var), Secrets::Unavailable) => {
                return Err(EngineError::SecretWithoutFile {
                    name: v.name.clone(),
                    var: var.clone(),
                });
            }
        }
    }
    Ok(env)
}

/// The secrets file holds every key the experiment reads (its values stay
/// in this function).
pub(crate) fn check_secrets_file(exp: &Experiment, path: &Path) -> Result<()> {
    let fail = |detail: String| EngineError::SecretsFile {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let map: HashMap<String, String> =
        serde_json::from_str(&text).map_err(|_| fail("not a JSON map of strings".into()))?;
    for key in exp.secrets() {
        if !map.contains_key(&key) {
            return Err(fail(format!("it has no `{key}`")));
        }
    }
    Ok(())
}
