//! The typed runnables. Everything here has been validated by the loader:
//! code downstream never re-checks ranges, names or references.

use crate::template::Template;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// One config file: optional extensions, then one runnable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub extensions: Vec<Extension>,
    pub runnable: Runnable,
}

/// A package the trials' environment must have, named in the untagged
/// document before the runnable (Flambé's layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub source: ExtensionSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionSource {
    /// A package folder on this machine, already expanded to an absolute path.
    LocalFolder(PathBuf),
    /// A pip requirement such as `transformers==4.46.0`.
    Pip(String),
    /// A git URL, optionally with `@revision`.
    Git(String),
}

// One runnable per loaded file: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Runnable {
    Experiment(Experiment),
    Script(Script),
    #[serde(rename = "SSHCluster")]
    SshCluster(SshCluster),
    #[serde(rename = "AWSCluster")]
    AwsCluster(AwsCluster),
}

impl Runnable {
    pub fn tag(&self) -> &'static str {
        match self {
            Runnable::Experiment(_) => "!Experiment",
            Runnable::Script(_) => "!Script",
            Runnable::SshCluster(_) => "!SSHCluster",
            Runnable::AwsCluster(_) => "!AWSCluster",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Runnable::Experiment(e) => &e.name,
            Runnable::Script(s) => &s.name,
            Runnable::SshCluster(c) => &c.name,
            Runnable::AwsCluster(c) => &c.name,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    /// Results go to `save_path/name/`.
    pub save_path: PathBuf,
    pub resources: Vec<Resource>,
    pub seed: u64,
    /// Retries of a failed trial: a trial runs at most `max_failures + 1` times.
    pub max_failures: u32,
    pub env: Vec<EnvVar>,
    /// Stages in pipeline order.
    pub pipeline: Vec<Stage>,
    /// Overrides of what this machine offers to local trials.
    pub devices: Devices,
}

impl Experiment {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.pipeline.iter().find(|s| s.name == name)
    }

    /// The local environment variables its `!env` values read, each once.
    pub fn secrets(&self) -> Vec<String> {
        secret_names(
            self.env
                .iter()
                .chain(self.pipeline.iter().flat_map(|s| &s.env)),
        )
    }
}

/// The variables `!env` reads among `vars`, in order, each once.
pub fn secret_names<'a>(vars: impl Iterator<Item = &'a EnvVar>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for v in vars {
        if let EnvValue::FromEnv(name) = &v.value
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    names
}

/// CPUs and GPUs a local run may use; `None` means "detect".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    pub cpus: Option<f64>,
    pub gpus: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub location: ResourceLocation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceLocation {
    /// A path on this machine (absolute after expansion), uploaded to clusters.
    Local(PathBuf),
    /// `!cluster PATH`: already on every host of the cluster, never uploaded.
    Cluster(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvValue {
    Literal(String),
    /// `!env NAME`: a secret read from the local environment at submit time.
    FromEnv(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Max,
    Min,
}

impl Mode {
    /// True when `a` is strictly better than `b` under this mode.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Mode::Max => a > b,
            Mode::Min => a < b,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub run: Template,
    pub params: Vec<Param>,
    /// Random draws of `!c`/`!u`/`!lu` per grid point.
    pub samples: u32,
    /// How the stage's trials are chosen: the grid (the default), random
    /// draws or TPE.
    pub search: Search,
    pub cpus: f64,
    pub gpus: u32,
    pub metric: Option<String>,
    pub mode: Mode,
    /// Keep this many best trials for the next stage; `None` keeps all.
    pub reduce: Option<u32>,
    pub scheduler: Option<Scheduler>,
    #[serde(with = "duration_secs")]
    pub timeout: Option<Duration>,
    pub env: Vec<EnvVar>,
}

impl Stage {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// How many parameter combinations this stage's own search space yields.
    pub fn variant_count(&self) -> u64 {
        match self.search {
            Search::Grid => {}
            Search::Random { trials } | Search::Tpe { trials, .. } => return u64::from(trials),
        }
        let grid: u64 = self
            .params
            .iter()
            .map(|p| match &p.spec {
                ParamSpec::Grid(values) => values.len() as u64,
                ParamSpec::Sample { k, .. } => u64::from(*k),
                _ => 1,
            })
            .fold(1u64, |acc, n| acc.saturating_mul(n));
        grid.saturating_mul(u64::from(self.samples))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub spec: ParamSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSpec {
    /// A plain value: the same in every trial.
    Fixed(Value),
    /// `!g [a, b, c]`: every value.
    Grid(Vec<Value>),
    /// `!s [low, high, k]`: k uniform draws made once, then used as a grid;
    /// integers when both bounds are integers.
    Sample {
        low: f64,
        high: f64,
        k: u32,
        integer: bool,
    },
    /// `!c [a, b, c]`: one value drawn per sample.
    Choice(Vec<Value>),
    /// `!u [low, high]`: uniform, drawn per sample.
    Uniform { low: f64, high: f64 },
    /// `!lu [low, high]`: log-uniform, drawn per sample.
    LogUniform { low: f64, high: f64 },
    /// `!i [low, high]`: an integer in low..=high, drawn per sample.
    Int { low: i64, high: i64 },
}

/// A stage's `search:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Search {
    /// `!Grid`: every `!g`/`!s` combination, `samples` times, drawing the
    /// other params per trial (the default).
    Grid,
    /// `!Random {trials: N}`: N trials, every param drawn (`!g` values as
    /// a choice, `!s` as a range).
    Random { trials: u32 },
    /// `!TPE {trials, startup, concurrency}`: N trials chosen one at a time
    /// by a tree-structured Parzen estimator from the results so far; the
    /// first `startup` are random, at most `concurrency` run at once.
    #[serde(rename = "TPE")]
    Tpe {
        trials: u32,
        startup: u32,
        concurrency: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Scheduler {
    /// Asynchronous successive halving (Ray Tune's ASHA).
    #[serde(rename = "ASHA")]
    Asha {
        max_t: u64,
        grace_period: u64,
        reduction_factor: u64,
    },
    /// Asynchronous HyperBand (Ray Tune's `AsyncHyperBandScheduler`): ASHA
    /// over `brackets` brackets, trials spread over them in turn, bracket
    /// `b` starting its rungs at `grace_period × reduction_factor^b`.
    HyperBand {
        max_t: u64,
        grace_period: u64,
        reduction_factor: u64,
        brackets: u64,
    },
    /// Ray Tune's `MedianStoppingRule`: past `grace_period` steps, a trial
    /// whose best value so far is worse than the median of the other
    /// trials' running means at that step stops, once `min_samples`
    /// trials have reported there.
    MedianStopping { grace_period: u64, min_samples: u64 },
    /// Population-based training (Ray Tune's `PopulationBasedTraining`):
    /// every `perturbation_interval` steps, a trial in the bottom
    /// `quantile` stops and goes on from the checkpoint of one in the top
    /// `quantile`, with each of `mutations` resampled from its own spec
    /// (with `resample_probability`) or moved: numbers ×0.8 or ×1.2 within
    /// their range, lists one value either way.
    #[serde(rename = "PBT")]
    Pbt {
        perturbation_interval: u64,
        quantile: f64,
        resample_probability: f64,
        mutations: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Script {
    pub name: String,
    pub run: Template,
    pub save_path: PathBuf,
    pub resources: Vec<Resource>,
    pub env: Vec<EnvVar>,
    pub cpus: f64,
    pub gpus: u32,
    #[serde(with = "duration_secs")]
    pub timeout: Option<Duration>,
}

impl Script {
    /// The local environment variables its `!env` values read, each once.
    pub fn secrets(&self) -> Vec<String> {
        secret_names(self.env.iter())
    }

    /// The script as the engine runs it: an experiment of one stage (named
    /// after the script) with one trial and no retries, so that a script gets
    /// the same state, logs, resume, report site and cluster path as any
    /// experiment. Its output is `save_path/NAME/trials/NAME-000/out`.
    pub fn as_experiment(&self) -> Experiment {
        Experiment {
            name: self.name.clone(),
            save_path: self.save_path.clone(),
            resources: self.resources.clone(),
            seed: 0,
            max_failures: 0,
            env: self.env.clone(),
            pipeline: vec![Stage {
                name: self.name.clone(),
                run: self.run.clone(),
                params: Vec::new(),
                samples: 1,
                search: Search::Grid,
                cpus: self.cpus,
                gpus: self.gpus,
                metric: None,
                mode: Mode::Max,
                reduce: None,
                scheduler: None,
                timeout: self.timeout,
                env: Vec::new(),
            }],
            devices: Devices::default(),
        }
    }
}

/// A host's address as reached from here (`public`) and from the other
/// hosts (`private`); the same when the config gives one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAddr {
    pub public: String,
    pub private: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshCluster {
    pub name: String,
    pub orchestrator: HostAddr,
    pub factories: Vec<HostAddr>,
    pub username: String,
    /// The user's private key, used until the cluster's own key is installed.
    pub key: PathBuf,
    pub use_public: bool,
    pub port: u16,
    pub setup_cmds: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsCluster {
    pub name: String,
    pub factories_num: u32,
    pub factories_type: String,
    pub orchestrator_type: String,
    /// Hours of low CPU before the orchestrator is terminated; -1 never.
    pub orchestrator_timeout: f64,
    pub factories_timeout: f64,
    pub creator: String,
    pub key_name: String,
    pub key: PathBuf,
    pub tags: Vec<(String, String)>,
    pub subnet_id: String,
    pub security_group: String,
    pub volume_size: u32,
    pub volume_type: String,
    pub orchestrator_ami: Option<String>,
    pub factory_ami: Option<String>,
    pub region_name: Option<String>,
    pub username: String,
    pub dedicated: bool,
    pub use_public: bool,
    pub setup_cmds: Vec<String>,
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(Duration::from_secs_f64))
    }
}
