//! `flambe FILE.yaml [--cluster C.yaml] [--force] [--dry-run]`

use crate::cli::RunArgs;
use crate::progress::Console;
use anyhow::{Context, anyhow, bail};
use flambe_config::{AwsCluster, ConfigFile, Experiment, Runnable, SshCluster, load_file};
use flambe_experiment::{
    EngineError, ExperimentPlan, RayTarget, Report, RunOptions, render_value, run_experiment,
    trial_id,
};
use std::process::ExitCode;

/// Trials listed per stage in a dry run before the rest is summed up.
const LISTED_TRIALS: usize = 40;

pub fn run(args: RunArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    let file = args.file.clone().context("no config file given")?;
    let config = load_file(&file)?;
    let cluster = args.cluster.as_deref().map(load_file).transpose()?;
    if let Some(c) = &cluster {
        if !matches!(
            c.runnable,
            Runnable::SshCluster(_) | Runnable::AwsCluster(_)
        ) {
            bail!(
                "--cluster {} holds a {}, not a cluster\nhint: pass a file tagged !SSHCluster or !AWSCluster",
                c.path.display(),
                c.runnable.tag()
            );
        }
        if matches!(
            config.runnable,
            Runnable::SshCluster(_) | Runnable::AwsCluster(_)
        ) {
            bail!(
                "{} is itself a cluster; --cluster takes the cluster an experiment or script runs on\nhint: run `flambe {}` alone to create the cluster",
                file.display(),
                file.display()
            );
        }
    }
    if args.dry_run {
        super::quit_on_closed_stdout();
        print_dry_run(&config, cluster.as_ref());
        return Ok(ExitCode::SUCCESS);
    }
    match (&config.runnable, &cluster) {
        (Runnable::Experiment(exp), None) => {
            run_here(exp, &config, &args, verbose, Finish::RankedTable)
        }
        (Runnable::Script(script), None) => run_here(
            &script.as_experiment(),
            &config,
            &args,
            verbose,
            Finish::ScriptOutput,
        ),
        (Runnable::SshCluster(c), None) => super::cluster::up_ssh(c),
        (Runnable::AwsCluster(c), None) => super::cluster::up_aws(c),
        (runnable @ (Runnable::Experiment(_) | Runnable::Script(_)), Some(cluster_file)) => {
            let target = match &cluster_file.runnable {
                Runnable::SshCluster(c) => super::remote::ClusterConfig::Ssh(c),
                Runnable::AwsCluster(c) => super::remote::ClusterConfig::Aws(c),
                _ => unreachable!("checked above: --cluster holds a cluster"),
            };
            let path = &cluster_file.path;
            let opts = flambe_cluster::remote::LaunchOptions {
                force: args.force,
                tensorboard: !args.site.no_tensorboard,
            };
            match runnable {
                Runnable::Script(script) => super::remote::run(
                    script,
                    &config.extensions,
                    &script.as_experiment(),
                    target,
                    path,
                    opts,
                    Finish::ScriptOutput,
                ),
                Runnable::Experiment(exp) => super::remote::run(
                    exp,
                    &config.extensions,
                    exp,
                    target,
                    path,
                    opts,
                    Finish::RankedTable,
                ),
                _ => unreachable!("matched above"),
            }
        }
        // Refused above, before anything ran.
        (runnable, Some(_)) => bail!("a {} does not run on a cluster", runnable.tag()),
    }
}

/// The extensions' environment on this machine (made or found), or none
/// without extensions. Runs before any trial: a failed install stops here.
fn python_env(config: &ConfigFile) -> anyhow::Result<Option<flambe_executor::pyenv::PythonEnv>> {
    if config.extensions.is_empty() {
        return Ok(None);
    }
    let packages = flambe_cluster::extensions::packages(&config.extensions);
    let envs = flambe_cluster::home::flambe_home().join("envs");
    eprintln!(
        "Extensions: preparing their environment in {}…",
        envs.display()
    );
    let env = flambe_executor::pyenv::ensure_here(&envs, &packages).map_err(|e| {
        anyhow!("{e}\nhint: fix the extension (try `pip install` of it by hand), then run the same command again; no trial was started")
    })?;
    eprintln!(
        "Extensions: {} ({})",
        if env.installed {
            "installed"
        } else {
            "up to date, nothing installed"
        },
        env.dir.display()
    );
    Ok(Some(env))
}

/// What a run prints when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An experiment: the ranked table of every stage.
    RankedTable,
    /// A script (an experiment of one trial): how it ended and where its
    /// output is; the exit code is the script's success.
    ScriptOutput,
}

fn run_here(
    exp: &Experiment,
    config: &ConfigFile,
    args: &RunArgs,
    verbose: u8,
    finish: Finish,
) -> anyhow::Result<ExitCode> {
    let file = config.path.as_path();
    let python = python_env(config)?;
    let ray = match &args.ray_address {
        Some(address) => Some(RayTarget {
            address: address.clone(),
            flambe: std::env::current_exe()
                .context("cannot find the running flambe binary")?
                .display()
                .to_string(),
            max_in_flight: 64,
            sync_host: args.sync_host.clone(),
            secrets_file: args.secrets.clone(),
        }),
        None => None,
    };
    let opts = RunOptions {
        force: args.force,
        restart: args.force && finish == Finish::ScriptOutput,
        python,
        cpus: args.cpus,
        gpus: args.gpus,
        echo: verbose > 0,
        ray,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut console = Console::new();
    let dir = exp.save_path.join(&exp.name);
    // A script that ran to its end is not run again by a rerun (its output
    // is a result like any other): say how to.
    let ran_before = std::fs::read_to_string(dir.join("status"))
        .is_ok_and(|s| s.trim() == "finished")
        && !args.force;
    let result = runtime.block_on(async {
        // Another driver on these results is refused before the site's URL
        // is printed: a URL above the refusal would point at nothing.
        if let Err(e) = flambe_experiment::lock::acquire(&dir, &exp.name) {
            return Ok(Err(flambe_experiment::EngineError::Lock(e)));
        }
        let views = if args.site.no_site { None } else { Some(super::site::start(&dir, &args.site).await?) };
        if let Some(v) = &views {
            eprintln!("Report site: {}", v.site.url);
            match &v.tensorboard {
                Some(tb) => eprintln!("TensorBoard: {}", tb.url),
                None => eprintln!("TensorBoard: not installed (pip install tensorboard), or run `tensorboard --logdir {}`", dir.display()),
            }
        }
        let interrupt = Box::pin(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
            }
        });
        Ok::<_, anyhow::Error>(run_experiment(exp, &opts, &mut console, interrupt).await)
    })?;
    let rerun = format!("flambe {}", file.display());
    match result {
        Ok(report) if finish == Finish::ScriptOutput => {
            let code = print_script_end(&report);
            if ran_before {
                println!(
                    "(an earlier run's result: `{rerun} --force` runs the script again, keeping this one next to it)"
                );
            }
            Ok(code)
        }
        Ok(report) => {
            print_ranked_table(&report);
            println!("\nResults: {}", report.csv_path().display());
            println!("TensorBoard: tensorboard --logdir {}", report.dir.display());
            // A stage where nothing succeeded is a failed experiment, for
            // scripts and CI that check the exit code.
            let empty: Vec<&str> = report
                .stages
                .iter()
                .filter(|s| {
                    // Stopped early by the scheduler still counts: it ran,
                    // and its metric ranks it.
                    !s.rows.iter().any(|r| {
                        matches!(
                            r.status,
                            flambe_experiment::Status::Succeeded
                                | flambe_experiment::Status::Stopped
                        )
                    })
                })
                .map(|s| s.name.as_str())
                .collect();
            if empty.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: no trial succeeded in stage {}: see the table above and the trials' logs",
                    empty.join(", ")
                );
                Ok(ExitCode::from(3))
            }
        }
        Err(EngineError::Interrupted { dir, running }) => {
            eprintln!(
                "\nInterrupted: stopped {running} running trials; finished trials are kept in {}.\nRun the same command to resume: {rerun}",
                dir.display()
            );
            Ok(ExitCode::from(130))
        }
        Err(err @ EngineError::ChangedConfig { .. }) => Err(anyhow!(
            "{err}\nhint: rerun with --force to set the old results aside (kept next to them as `{}.old-<time>`) and start afresh, or give the experiment another `name`",
            exp.name
        )),
        Err(err @ EngineError::Resources { .. }) => Err(anyhow!(
            "{err}\nhint: lower the stage's `cpus`/`gpus`, or tell flambe what this machine has with --cpus N / --gpus N (or `devices:` in the experiment)"
        )),
        Err(err @ EngineError::SecretWithoutFile { .. }) => Err(anyhow!(
            "{err}\nhint: run it with `--cluster cluster.yaml`, or here without --ray-address"
        )),
        Err(err @ EngineError::UnsetSecret { .. }) => Err(anyhow!(
            "{err}\nhint: export it in this shell, then run `{rerun}` again"
        )),
        Err(err) => Err(err.into()),
    }
}

/// How a script ended, where its output and logs are (under `dir`), and the
/// end of its stderr when it failed. Exit 0 only when it succeeded.
pub fn print_script_end(report: &Report) -> ExitCode {
    let Some(row) = report.stages.first().and_then(|s| s.rows.first()) else {
        eprintln!("the script did not run; see {}", report.dir.display());
        return ExitCode::FAILURE;
    };
    let trial = report.dir.join("trials").join(&row.id);
    let time = row
        .duration_s
        .map_or(String::new(), |d| format!(" in {d:.1}s"));
    let ok = row.status == flambe_experiment::Status::Succeeded;
    println!(
        "Script `{}` {}{time}{}",
        row.stage,
        if ok { "succeeded" } else { "failed" },
        row.host
            .as_deref()
            .filter(|h| *h != "local")
            .map_or(String::new(), |h| format!(" on {h}"))
    );
    if !ok {
        if let Some(error) = &row.error {
            println!("  {error}");
        }
        let stderr = std::fs::read_to_string(trial.join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        for line in tail.into_iter().rev() {
            println!("  | {line}");
        }
    }
    println!("Output: {}", trial.join("out").display());
    println!(
        "Logs:   {} and stderr.log",
        trial.join("stdout.log").display()
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Rows shown per stage in the final table.
const TABLE_ROWS: usize = 5;

fn print_ranked_table(report: &Report) {
    for stage in &report.stages {
        let metric = stage.metric.as_deref().unwrap_or("-");
        println!(
            "\nstage {} (ranked by {metric}{})",
            stage.name,
            if stage.metric.is_some() {
                match stage.mode {
                    flambe_config::Mode::Max => ", max",
                    flambe_config::Mode::Min => ", min",
                }
            } else {
                ""
            }
        );
        println!(
            "  {:<4} {:<14} {:<10} {:>10} {:>6} {:>8}  params",
            "rank", "trial", "status", metric, "step", "time"
        );
        for (rank, row) in stage.rows.iter().enumerate().take(TABLE_ROWS) {
            let value = row
                .best_metric
                .map_or("-".to_string(), |v| format!("{v:.4}"));
            let step = row.best_step.map_or("-".to_string(), |s| s.to_string());
            let time = row
                .duration_s
                .map_or("-".to_string(), |d| format!("{d:.1}s"));
            let mut params: Vec<String> = row
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", render_value(v)))
                .collect();
            if let Some(parent) = &row.parent {
                params.insert(0, format!("(from {parent})"));
            }
            let keep =
                if stage.survivors.contains(&row.id) && stage.survivors.len() < stage.rows.len() {
                    "*"
                } else {
                    " "
                };
            println!(
                "  {:<4} {:<14} {:<10} {value:>10} {step:>6} {time:>8}  {}",
                format!("{}{keep}", rank + 1),
                row.id,
                row.status.as_str(),
                params.join(" ")
            );
        }
        if stage.rows.len() > TABLE_ROWS {
            println!("  … {} more in results.csv", stage.rows.len() - TABLE_ROWS);
        }
    }
}

fn print_dry_run(config: &ConfigFile, cluster: Option<&ConfigFile>) {
    if let Some(c) = cluster {
        print_runnable(c);
        println!();
    }
    print_runnable(config);
    println!("\nDry run: nothing was run, created or changed.");
}

fn print_runnable(config: &ConfigFile) {
    if !config.extensions.is_empty() {
        println!("Extensions:");
        for ext in &config.extensions {
            println!("  {:<16} {:?}", ext.name, ext.source);
        }
    }
    match &config.runnable {
        Runnable::Experiment(e) => print_experiment(e, &flambe_experiment::plan(e)),
        Runnable::Script(s) => {
            println!(
                "Script `{}`: results in {}",
                s.name,
                s.save_path.join(&s.name).display()
            );
            println!("  run: {}", s.run);
            println!("  {} each", resources_text(s.cpus, s.gpus));
            print_env("  ", &s.env);
        }
        Runnable::SshCluster(c) => print_ssh_cluster(c),
        Runnable::AwsCluster(c) => print_aws_cluster(c),
    }
}

/// The environment a runnable sets; secrets masked (their values are never
/// even read by a dry run).
fn print_env(indent: &str, vars: &[flambe_config::EnvVar]) {
    if vars.is_empty() {
        return;
    }
    let shown: Vec<String> = vars
        .iter()
        .map(|v| match &v.value {
            flambe_config::EnvValue::Literal(s) => format!("{}={s}", v.name),
            flambe_config::EnvValue::FromEnv(var) => {
                format!("{}=****** (secret, from ${var})", v.name)
            }
        })
        .collect();
    println!("{indent}env: {}", shown.join(", "));
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn resources_text(cpus: f64, gpus: u32) -> String {
    let cpus = if cpus == 1.0 {
        "1 CPU".to_string()
    } else {
        format!("{cpus} CPUs")
    };
    match gpus {
        0 => cpus,
        1 => format!("{cpus} + 1 GPU"),
        n => format!("{cpus} + {n} GPUs"),
    }
}

fn print_experiment(exp: &Experiment, plan: &ExperimentPlan) {
    println!(
        "Experiment `{}`: results in {}",
        exp.name,
        exp.save_path.join(&exp.name).display()
    );
    println!("  seed {} · max_failures {}", exp.seed, exp.max_failures);
    print_env("  ", &exp.env);
    let total: u64 = plan.stages.iter().map(|s| s.trials).sum();
    for (stage, sp) in exp.pipeline.iter().zip(&plan.stages) {
        let origin = match sp.parents {
            None => plural(sp.variants.len() as u64, "variant"),
            Some(p) => format!(
                "{} × {}",
                plural(p, "surviving trial"),
                plural(sp.variants.len() as u64, "variant")
            ),
        };
        println!(
            "\nstage {}: {} trials ({origin}), {} each",
            sp.name,
            sp.trials,
            resources_text(sp.cpus, sp.gpus)
        );
        if let Some(metric) = &stage.metric {
            let mode = match stage.mode {
                flambe_config::Mode::Max => "max",
                flambe_config::Mode::Min => "min",
            };
            let keeps = stage
                .reduce
                .map_or("keeps all".to_string(), |r| format!("keeps the best {r}"));
            println!("  metric {metric} ({mode}), {keeps}");
        }
        println!("  run: {}", stage.run);
        print_env("  ", &stage.env);
        let label = if sp.parents.is_none() {
            "trials"
        } else {
            "variants (per surviving trial)"
        };
        println!("  {label}:");
        for (i, params) in sp.variants.iter().enumerate().take(LISTED_TRIALS) {
            let params: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", render_value(v)))
                .collect();
            let id = if sp.parents.is_none() {
                trial_id(stage, i)
            } else {
                format!("#{i}")
            };
            println!(
                "    {id:<14} {}",
                if params.is_empty() {
                    "(no params)".into()
                } else {
                    params.join(" ")
                }
            );
        }
        if sp.variants.len() > LISTED_TRIALS {
            println!("    … and {} more", sp.variants.len() - LISTED_TRIALS);
        }
    }
    println!("\n{total} trials in all.");
}

fn print_ssh_cluster(c: &SshCluster) {
    println!(
        "SSH cluster `{}`: {} hosts, user `{}`, port {}",
        c.name,
        1 + c.factories.len(),
        c.username,
        c.port
    );
    println!(
        "  connect on the {} addresses",
        if c.use_public { "public" } else { "private" }
    );
    for host in flambe_cluster::ssh_hosts(c) {
        println!(
            "    {:<13} {:<28} {} (private {})",
            host.role.to_string(),
            host.name,
            host.connect,
            host.private
        );
    }
    print_setup(&c.setup_cmds);
}

fn print_aws_cluster(c: &AwsCluster) {
    println!(
        "AWS cluster `{}`: would create {} instances in {}",
        c.name,
        1 + c.factories_num,
        c.region_name.as_deref().unwrap_or("the default region")
    );
    println!(
        "  subnet {} · security group {} · key pair {} · {} GB {} volumes{}",
        c.subnet_id,
        c.security_group,
        c.key_name,
        c.volume_size,
        c.volume_type,
        if c.dedicated {
            " · dedicated tenancy"
        } else {
            ""
        }
    );
    for inst in flambe_cluster::aws_instances(c) {
        let idle = inst
            .idle_timeout_hours
            .map_or("never stops by itself".to_string(), |h| {
                format!("terminated after {h} h idle")
            });
        println!(
            "    {:<13} {:<28} {:<12} {:<22} {idle}",
            inst.role.to_string(),
            inst.name,
            inst.instance_type,
            inst.ami.as_deref().unwrap_or("(default AMI)")
        );
    }
    let tags: Vec<String> =
        flambe_cluster::plan::instance_tags(c, flambe_cluster::Role::Factory, "…")
            .into_iter()
            .filter(|(k, _)| k != "Name")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
    println!("  tags: {}", tags.join(", "));
    print_setup(&c.setup_cmds);
}

fn print_setup(cmds: &[String]) {
    if cmds.is_empty() {
        return;
    }
    println!("  setup_cmds on every host, in order:");
    for cmd in cmds {
        println!("    $ {cmd}");
    }
}
