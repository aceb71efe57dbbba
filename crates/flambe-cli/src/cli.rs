//! Flags and subcommands.

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use std::path::PathBuf;

pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FLAMBE_BUILD"), ")");

#[derive(Parser, Debug)]
#[command(
    name = "flambe",
    version = VERSION,
    about = "Run machine-learning experiments from one YAML file, here or on a cluster",
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  flambe experiment.yaml                          run an experiment here\n  flambe experiment.yaml --dry-run                validate and print the plan\n  flambe cluster.yaml                             create (or reuse) a cluster\n  flambe experiment.yaml --cluster cluster.yaml   run the experiment on the cluster"
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,

    /// -v: trials' output and flambe's steps (hosts, commands, stages, trials, Ray
    /// jobs) on stderr; -vv: flambe's debug detail and the AWS SDK's and HTTP
    /// clients' events. FLAMBE_LOG=target=level,… sets levels by hand
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The runnable to run: an !Experiment, !Script, !SSHCluster or !AWSCluster YAML file
    #[arg(value_name = "FILE.yaml", required = true)]
    pub file: Option<PathBuf>,

    /// Run on this cluster (created if it does not exist yet)
    #[arg(long, value_name = "CLUSTER.yaml")]
    pub cluster: Option<PathBuf>,

    /// Replace what is in the way: a changed experiment's old results are set
    /// aside (never deleted), a busy cluster's running experiment is stopped
    #[arg(long)]
    pub force: bool,

    /// Validate and print the plan; run and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// CPUs local trials may fill (default: the experiment's `devices`, else all)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,

    /// GPUs local trials may use (default: the experiment's `devices`, else what nvidia-smi lists)
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,

    #[command(flatten)]
    pub site: SiteArgs,

    /// Run the trials on a Ray cluster through its Jobs API at this address
    /// (e.g. http://127.0.0.1:8265); every node must have this flambe build
    #[arg(long, value_name = "URL")]
    pub ray_address: Option<String>,
}

/// Where the report site listens.
#[derive(Args, Debug, Clone)]
pub struct SiteArgs {
    /// Address the report site listens on; anything but loopback needs the
    /// token printed with its URL
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub site_host: std::net::IpAddr,

    /// Port of the report site (0: a free one)
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub site_port: u16,

    /// Do not serve the report site
    #[arg(long)]
    pub no_site: bool,

    /// Do not start TensorBoard next to the report site (on a cluster: nor
    /// install it on the orchestrator)
    #[arg(long)]
    pub no_tensorboard: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the report site of an experiment, running or finished, or of
    /// every experiment in a save_path
    Site {
        /// A results folder (save_path/NAME), the experiment's YAML file, a
        /// save_path holding several experiments, or with --cluster the
        /// experiment's name
        target: PathBuf,
        /// The experiment ran (or runs) on this cluster
        #[arg(long, value_name = "CLUSTER.yaml")]
        cluster: Option<PathBuf>,
        #[command(flatten)]
        site: SiteArgs,
    },
    /// Manage clusters made by `flambe CLUSTER.yaml`
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Follow an experiment running on a cluster
    Attach {
        name: String,
        #[arg(long, value_name = "CLUSTER.yaml")]
        cluster: PathBuf,
    },
    /// Copy an experiment's results folder from a cluster
    Pull {
        name: String,
        #[arg(long, value_name = "CLUSTER.yaml")]
        cluster: PathBuf,
        /// Where to put them (default: ./NAME)
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// Run one trial as a Ray job's entrypoint (used by flambe itself)
    #[command(hide = true)]
    TrialRun { spec: String },
    /// Drive an experiment on a cluster's orchestrator, as its
    /// `driver.spec.json` says (used by flambe itself)
    #[command(hide = true)]
    Drive { spec: PathBuf },
    /// Kill a trial's processes once its wrapper is gone (used by flambe itself)
    #[command(hide = true)]
    TrialGuard { marker: String },
    /// Run trials in turn as a slot's Ray job (used by flambe itself)
    #[command(hide = true)]
    SlotRun { spec: String },
    /// Join a slot worker's ssh session to its driver (used by flambe itself)
    #[command(hide = true)]
    SlotFeed { socket: PathBuf },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Hosts of one cluster (or every known cluster): reachable, CPUs, GPUs, flambe build
    Status {
        name: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run a command on every host (or one) and print each host's output
    Exec {
        name: String,
        /// Only this host (e.g. lab_factory_0)
        #[arg(long)]
        host: Option<String>,
        /// The command, after `--`
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Open a shell on a host (the orchestrator by default) with the cluster key
    Ssh { name: String, host: Option<String> },
    /// Copy with rsync; prefix the remote side with `:` (`./data :data`, `:out ./out`)
    Rsync {
        name: String,
        src: String,
        dest: String,
        /// Only this host (uploads go to every host otherwise; downloads come from the orchestrator)
        #[arg(long)]
        host: Option<String>,
        /// Delete files at the destination that the source does not have
        #[arg(long)]
        delete: bool,
    },
    /// Take a cluster down: SSH clusters lose the cluster key on every host, AWS
    /// clusters' instances are terminated; then the cluster is forgotten here
    Down {
        name: String,
        /// SSH clusters: forget the cluster even where its key cannot be removed
        /// (hosts gone or unreachable); says which hosts keep it
        #[arg(long)]
        purge: bool,
    },
}
