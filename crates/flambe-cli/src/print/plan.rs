//! `--dry-run`: what a config describes, and what would run, without
//! touching anything.

use flambe_config::{AwsCluster, ConfigFile, Experiment, Runnable, Search, SshCluster};
use flambe_experiment::{Change, Recorded};
use flambe_experiment::{ExperimentPlan, ResultsDir, render_value, trial_id};

/// Trials listed per stage in a dry run before the rest is summed up.
const LISTED_TRIALS: usize = 40;

pub fn dry_run(config: &ConfigFile, cluster: Option<&ConfigFile>) {
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
        Runnable::Experiment(e) => print_experiment(
            e,
            &flambe_experiment::plan(e),
            flambe_experiment::recorded_run(e),
        ),
        Runnable::Script(s) => {
            println!(
                "Script `{}`: results in {}",
                s.name,
                ResultsDir::new(&s.save_path, &s.name).path().display()
            );
            println!("  run: {}", s.run);
            println!("  {} each", resources_text(s.cpus, s.gpus));
            print_env("  ", &s.env);
        }
        Runnable::SshCluster(c) => print_ssh_cluster(c),
        Runnable::AwsCluster(c) => print_aws_cluster(c),
        Runnable::CustomCluster(c) => print_custom_cluster(c),
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

fn print_experiment(exp: &Experiment, plan: &ExperimentPlan, recorded: Option<Recorded>) {
    println!(
        "Experiment `{}`: results in {}",
        exp.name,
        ResultsDir::new(&exp.save_path, &exp.name).path().display()
    );
    println!("  seed {} · max_failures {}", exp.seed, exp.max_failures);
    print_env("  ", &exp.env);
    let total: u64 = plan.stages.iter().map(|s| s.trials).sum();
    if let Some(r) = &recorded {
        match &r.change {
            Some(Change::Grows(g)) if g.is_empty() => {
                println!("  a recorded run is here: its finished trials are kept, the rest run")
            }
            Some(Change::Grows(g)) => println!(
                "  extends the recorded run (its finished trials are kept): {}",
                g.join("; ")
            ),
            Some(Change::Refused(changes)) => println!(
                "  the recorded run differs ({}): refused unless --force, which starts afresh",
                changes.join(", ")
            ),
            None => {}
        }
    }
    for (index, (stage, sp)) in exp.pipeline.iter().zip(&plan.stages).enumerate() {
        let own = match sp.search {
            Search::Grid => plural(sp.variants.len() as u64, "variant"),
            Search::Random { trials } => {
                format!("{} drawn at random", plural(trials.into(), "trial"))
            }
            Search::Tpe {
                trials,
                startup,
                concurrency,
            } => format!(
                "{} chosen by TPE, the first {startup} at random, {concurrency} at a time",
                plural(trials.into(), "trial")
            ),
        };
        let origin = match sp.parents {
            None => own,
            Some(p) => format!("{} × {own}", plural(p, "surviving trial")),
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
        if let Some(scheduler) = &stage.scheduler {
            println!("  scheduler: {}", scheduler_text(scheduler));
        }
        println!("  run: {}", stage.run);
        print_env("  ", &stage.env);
        let label = if sp.parents.is_none() {
            "trials"
        } else {
            "variants (per surviving trial)"
        };
        if let Search::Tpe { .. } = sp.search {
            println!("  {label}: chosen one at a time from the results so far");
            continue;
        }
        println!("  {label}:");
        let finished = recorded
            .as_ref()
            .filter(|r| matches!(r.change, Some(Change::Grows(_))))
            .and_then(|r| r.finished.get(index));
        if let (Some(finished), Some(_)) = (finished, sp.parents) {
            println!("  {} finished trials recorded are kept", finished.len());
        }
        for (i, params) in sp.variants.iter().enumerate().take(LISTED_TRIALS) {
            // Only the first stage's trials are known ahead (later ones
            // hang off survivors).
            let kept = finished.filter(|_| sp.parents.is_none()).map(|f| {
                let json = serde_json::Value::Object(params.clone()).to_string();
                f.iter()
                    .find(|(parent, p, _)| parent.is_none() && *p == json)
                    .map(|(_, _, id)| id.clone())
            });
            let params: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", render_value(v)))
                .collect();
            let (id, mark) = match kept {
                Some(Some(id)) => (id, "  (kept)"),
                Some(None) => ("new".to_string(), "  (runs)"),
                None if sp.parents.is_none() => (trial_id(stage, i), ""),
                None => (format!("#{i}"), ""),
            };
            println!(
                "    {id:<14} {}{mark}",
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

fn print_custom_cluster(c: &flambe_config::CustomCluster) {
    println!(
        "{} `{}`: hosts from {}, user `{}`, port {}",
        c.tag,
        c.name,
        match &c.source {
            flambe_config::HostSource::Commands { .. } => "its `up` command".to_string(),
            flambe_config::HostSource::Plugin { program } =>
                format!("the plugin {}", program.display()),
        },
        c.username,
        c.port
    );
    if let flambe_config::HostSource::Commands { up, down, status } = &c.source {
        println!("  up:     {up}");
        println!("  down:   {down}");
        if let Some(status) = status {
            println!("  status: {status}");
        }
    }
    println!(
        "  connect on the {} addresses",
        if c.use_public { "public" } else { "private" }
    );
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
    let tags: Vec<String> = flambe_cluster::instance_tags(c, flambe_cluster::Role::Factory, "…")
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

/// What a stage's scheduler does, in a line.
fn scheduler_text(s: &flambe_config::Scheduler) -> String {
    use flambe_config::Scheduler;
    match s {
        Scheduler::Asha {
            max_t,
            grace_period,
            reduction_factor,
        } => format!("ASHA, rungs from step {grace_period} ×{reduction_factor} up to {max_t}"),
        Scheduler::HyperBand {
            max_t,
            grace_period,
            reduction_factor,
            brackets,
        } => format!(
            "HyperBand, {brackets} brackets, rungs from step {grace_period} ×{reduction_factor} up to {max_t}"
        ),
        Scheduler::MedianStopping {
            grace_period,
            min_samples,
        } => format!(
            "median stopping after step {grace_period}, once {min_samples} trials reported there"
        ),
        Scheduler::Pbt {
            perturbation_interval,
            quantile,
            resample_probability,
            mutations,
        } => format!(
            "PBT every {perturbation_interval} steps: the bottom {q}% go on from the top {q}%'s checkpoints, mutating {} (resampled with p {resample_probability})",
            mutations.join(", "),
            q = quantile * 100.0
        ),
    }
}
