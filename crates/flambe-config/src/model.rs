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
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The untagged extensions document before the runnable, if any.
    pub extensions: Vec<Extension>,
    /// The one runnable the file holds.
    pub runnable: Runnable,
}

/// A package the trials' environment must have, named in the untagged
/// document before the runnable (Flambé's layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    /// The name the runnable imports it by.
    pub name: String,
    /// Where pip gets it from.
    pub source: ExtensionSource,
}

/// Where an extension comes from.
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
/// What a config file runs, by its tag.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Runnable {
    /// `!Experiment`: stages with a search.
    Experiment(Experiment),
    /// `!Script`: one command, run once.
    Script(Script),
    #[serde(rename = "SSHCluster")]
    /// `!SSHCluster`: machines the user has.
    SshCluster(SshCluster),
    #[serde(rename = "AWSCluster")]
    /// `!AWSCluster`: EC2 instances flambe makes.
    AwsCluster(AwsCluster),
    /// `!CommandCluster`, or `!FooCluster` served by the plugin
    /// `flambe-cluster-foo`: hosts made or found by a program.
    CustomCluster(CustomCluster),
}

impl Runnable {
    /// The YAML tag, as written (`!Experiment`).
    pub fn tag(&self) -> &str {
        match self {
            Runnable::Experiment(_) => "!Experiment",
            Runnable::Script(_) => "!Script",
            Runnable::SshCluster(_) => "!SSHCluster",
            Runnable::AwsCluster(_) => "!AWSCluster",
            Runnable::CustomCluster(c) => &c.tag,
        }
    }

    /// The runnable's `name`.
    pub fn name(&self) -> &str {
        match self {
            Runnable::Experiment(e) => &e.name,
            Runnable::Script(s) => &s.name,
            Runnable::SshCluster(c) => &c.name,
            Runnable::AwsCluster(c) => &c.name,
            Runnable::CustomCluster(c) => &c.name,
        }
    }
}

/// An `!Experiment`: a pipeline of stages, each a search over params.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Experiment {
    /// Names the results folder (`save_path/NAME`) and the run on a cluster.
    pub name: String,
    /// Results go to `save_path/name/`.
    pub save_path: PathBuf,
    /// Files or URLs the stages' commands read, by name.
    pub resources: Vec<Resource>,
    /// Seeds every search, so a rerun draws the same trials.
    pub seed: u64,
    /// Retries of a failed trial: a trial runs at most `max_failures + 1` times.
    pub max_failures: u32,
    /// Environment variables of every trial (literals or secrets).
    pub env: Vec<EnvVar>,
    /// Stages in pipeline order.
    pub pipeline: Vec<Stage>,
    /// Overrides of what this machine offers to local trials.
    pub devices: Devices,
}

impl Experiment {
    /// The stage named `name`.
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
    /// CPUs this run may use (None: all of them).
    pub cpus: Option<f64>,
    /// GPUs this run may use (None: all found).
    pub gpus: Option<u32>,
}

/// A named resource a command can refer to as `{resources.NAME}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Its name in placeholders.
    pub name: String,
    /// A local path or a remote URL.
    pub location: ResourceLocation,
}

/// Where a resource is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceLocation {
    /// A path on this machine (absolute after expansion), uploaded to clusters.
    Local(PathBuf),
    /// `!cluster PATH`: already on every host of the cluster, never uploaded.
    Cluster(String),
}

/// One environment variable of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value, or the secret it comes from.
    pub value: EnvValue,
}

/// An environment value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvValue {
    /// Written in the config.
    Literal(String),
    /// `!env NAME`: a secret read from the local environment at submit time.
    FromEnv(String),
}

/// Whether a metric's best value is its largest or its smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Larger is better.
    Max,
    /// Smaller is better.
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

/// One stage of an experiment's pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    /// Names the stage's trials (`NAME-000`) and its placeholders.
    pub name: String,
    /// The command each trial runs, with `{placeholders}`.
    pub run: Template,
    /// The search space, one param per name.
    pub params: Vec<Param>,
    /// Random draws of `!c`/`!u`/`!lu` per grid point.
    pub samples: u32,
    /// How the stage's trials are chosen: the grid (the default), random
    /// draws or TPE.
    pub search: Search,
    /// CPUs each trial takes.
    pub cpus: f64,
    /// GPUs each trial takes.
    pub gpus: u32,
    /// The metric trials are ranked by (from `$FLAMBE_METRICS`).
    pub metric: Option<String>,
    /// Whether `metric` is maximised or minimised.
    pub mode: Mode,
    /// Keep this many best trials for the next stage; `None` keeps all.
    pub reduce: Option<u32>,
    /// Stops or mutates trials early (ASHA, HyperBand, median, PBT).
    pub scheduler: Option<Scheduler>,
    #[serde(with = "duration_secs")]
    /// How long one attempt may run before it is stopped.
    pub timeout: Option<Duration>,
    /// Environment variables of this stage's trials, over the experiment's.
    pub env: Vec<EnvVar>,
}

impl Stage {
    /// The param named `name`.
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

/// One named hyperparameter of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Its name in `{params.NAME}`.
    pub name: String,
    /// The values it takes.
    pub spec: ParamSpec,
}

/// How a param's values are chosen.
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
        /// Lowest value.
        low: f64,
        /// Highest value.
        high: f64,
        /// How many values (grid points).
        k: u32,
        /// Whether the values are integers.
        integer: bool,
    },
    /// `!c [a, b, c]`: one value drawn per sample.
    Choice(Vec<Value>),
    /// `!u [low, high]`: uniform, drawn per sample.
    Uniform {
        /// Lowest value.
        low: f64,
        /// Highest value.
        high: f64,
    },
    /// `!lu [low, high]`: log-uniform, drawn per sample.
    LogUniform {
        /// Lowest value (positive).
        low: f64,
        /// Highest value.
        high: f64,
    },
    /// `!i [low, high]`: an integer in low..=high, drawn per sample.
    Int {
        /// Lowest value.
        low: i64,
        /// Highest value (inclusive).
        high: i64,
    },
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
    Random {
        /// How many trials.
        trials: u32,
    },
    /// `!TPE {trials, startup, concurrency}`: N trials chosen one at a time
    /// by a tree-structured Parzen estimator from the results so far; the
    /// first `startup` are random, at most `concurrency` run at once.
    #[serde(rename = "TPE")]
    Tpe {
        /// How many trials the study runs.
        trials: u32,
        /// How many trials are drawn at random before TPE models the results.
        startup: u32,
        /// How many trials run at once.
        concurrency: u32,
    },
}

/// A stage's trial scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Scheduler {
    /// Asynchronous successive halving (Ray Tune's ASHA).
    #[serde(rename = "ASHA")]
    Asha {
        /// The most steps a trial runs.
        max_t: u64,
        /// Steps every trial runs before it can be stopped.
        grace_period: u64,
        /// 1/factor of the trials go on at each rung.
        reduction_factor: u64,
    },
    /// Asynchronous HyperBand (Ray Tune's `AsyncHyperBandScheduler`): ASHA
    /// over `brackets` brackets, trials spread over them in turn, bracket
    /// `b` starting its rungs at `grace_period × reduction_factor^b`.
    HyperBand {
        /// The most steps a trial runs.
        max_t: u64,
        /// Steps of the most aggressive bracket's first rung.
        grace_period: u64,
        /// 1/factor of the trials go on at each rung.
        reduction_factor: u64,
        /// How many brackets trials are dealt into.
        brackets: u64,
    },
    /// Ray Tune's `MedianStoppingRule`: past `grace_period` steps, a trial
    /// whose best value so far is worse than the median of the other
    /// trials' running means at that step stops, once `min_samples`
    /// trials have reported there.
    MedianStopping {
        /// Steps every trial runs before it can be stopped.
        grace_period: u64,
        /// Trials that must have reported at a step before it judges there.
        min_samples: u64,
    },
    /// Population-based training (Ray Tune's `PopulationBasedTraining`):
    /// every `perturbation_interval` steps, a trial in the bottom
    /// `quantile` stops and goes on from the checkpoint of one in the top
    /// `quantile`, with each of `mutations` resampled from its own spec
    /// (with `resample_probability`) or moved: numbers ×0.8 or ×1.2 within
    /// their range, lists one value either way.
    #[serde(rename = "PBT")]
    Pbt {
        /// Steps between exploit/explore decisions.
        perturbation_interval: u64,
        /// The fraction of trials at the bottom (and top) of the population.
        quantile: f64,
        /// How often an explored param is resampled instead of perturbed.
        resample_probability: f64,
        /// The params that are explored.
        mutations: Vec<String>,
    },
}

/// A `!Script`: one command, run once, like an experiment's trial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Script {
    /// Names its results folder.
    pub name: String,
    /// The command, with `{resources.NAME}` placeholders.
    pub run: Template,
    /// Where its results folder goes.
    pub save_path: PathBuf,
    /// Files or URLs the command reads, by name.
    pub resources: Vec<Resource>,
    /// Its environment variables.
    pub env: Vec<EnvVar>,
    /// CPUs it takes.
    pub cpus: f64,
    /// GPUs it takes.
    pub gpus: u32,
    #[serde(with = "duration_secs")]
    /// How long it may run.
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
    /// The address to connect to.
    pub public: String,
    /// The address hosts reach each other at.
    pub private: String,
}

/// An `!SSHCluster`: machines the user has, reached over SSH.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshCluster {
    /// The cluster's name (`~/.flambe/clusters/NAME`).
    pub name: String,
    /// The orchestrator: driver, Ray head, report site.
    pub orchestrator: HostAddr,
    /// The factories: where trials run.
    pub factories: Vec<HostAddr>,
    /// The login on every host.
    pub username: String,
    /// The user's private key, used until the cluster's own key is installed.
    pub key: PathBuf,
    /// Connect to the public addresses (else the private ones).
    pub use_public: bool,
    /// The SSH port of every host.
    pub port: u16,
    /// Commands run once on every host after creation.
    pub setup_cmds: Vec<String>,
}

/// A cluster whose hosts a program makes or finds: `!CommandCluster`
/// (shell commands in the file) or a plugin's tag. Everything after the
/// hosts are known is an `!SSHCluster`'s path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomCluster {
    /// The tag as written (`!CommandCluster`, `!SlurmCluster`).
    pub tag: String,
    /// The cluster's name (`~/.flambe/clusters/NAME`).
    pub name: String,
    /// What makes the hosts.
    pub source: HostSource,
    /// The login on every host.
    pub username: String,
    /// The user's private key, used until the cluster's own key is installed.
    pub key: PathBuf,
    /// Connect to the public addresses (else the private ones).
    pub use_public: bool,
    /// The SSH port of every host.
    pub port: u16,
    /// Commands run once on every host after creation.
    pub setup_cmds: Vec<String>,
    /// The document's fields as JSON, for the program (every field, flambe's
    /// and its own).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The config file's folder: the commands run there.
    pub dir: PathBuf,
    /// The config file, for errors about its fields (a plugin's `validate`).
    pub file: PathBuf,
}

/// Where a custom cluster's hosts come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSource {
    /// `!CommandCluster`: shell commands, run with `sh -c` in the file's folder.
    Commands {
        /// Makes or finds the hosts and prints them as JSON (idempotent).
        up: String,
        /// Releases them (`cluster down`, and the rollback of a bring-up
        /// whose hosts never answered).
        down: String,
        /// Says how they stand, when given.
        status: Option<String>,
    },
    /// A plugin on `PATH` (`flambe-cluster-foo` for `!FooCluster`),
    /// run as `PROGRAM validate|up|down|status`.
    Plugin {
        /// The executable found.
        program: PathBuf,
    },
}

/// An `!AWSCluster`: EC2 instances flambe creates and tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsCluster {
    /// The cluster's name (and its instances' tag).
    pub name: String,
    /// How many factory instances.
    pub factories_num: u32,
    /// The factories' instance type.
    pub factories_type: String,
    /// The orchestrator's instance type.
    pub orchestrator_type: String,
    /// Hours of low CPU before the orchestrator is terminated; -1 never.
    pub orchestrator_timeout: f64,
    /// Hours a factory may be idle before it stops itself (0: never).
    pub factories_timeout: f64,
    /// Tagged as the instances' creator.
    pub creator: String,
    /// The EC2 key pair the instances are launched with.
    pub key_name: String,
    /// That key pair's private key here.
    pub key: PathBuf,
    /// Extra tags of every instance.
    pub tags: Vec<(String, String)>,
    /// The subnet instances are launched in.
    pub subnet_id: String,
    /// The security group of every instance.
    pub security_group: String,
    /// The root volume's size (GiB).
    pub volume_size: u32,
    /// The root volume's type (gp3, gp2, io1, …).
    pub volume_type: String,
    /// The orchestrator's AMI (None: Debian's).
    pub orchestrator_ami: Option<String>,
    /// The factories' AMI (None: Debian's).
    pub factory_ami: Option<String>,
    /// The region (None: the SDK's default).
    pub region_name: Option<String>,
    /// The login on the instances.
    pub username: String,
    /// Dedicated tenancy.
    pub dedicated: bool,
    /// Connect to public addresses.
    pub use_public: bool,
    /// Commands run once on every instance after creation.
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
