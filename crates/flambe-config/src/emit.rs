//! Runnables back to YAML: the config a cluster runnable ships to the
//! orchestrator is plain YAML that the remote `flambe` loads like any other.
//! Every value is written so that it loads back to exactly the same thing
//! (strings as JSON strings, floats always with a decimal point or exponent,
//! so `!s` bounds keep their int/float nature).

use crate::model::*;
use serde_json::Value;
use std::fmt::Write;

/// An experiment as plain `!Experiment` YAML that loads back to the same experiment.
pub fn experiment_yaml(exp: &Experiment) -> String {
    let mut y = String::from("!Experiment\n");
    let _ = writeln!(y, "name: {}", q(&exp.name));
    let _ = writeln!(y, "save_path: {}", q(&exp.save_path.display().to_string()));
    resources(&mut y, &exp.resources);
    let _ = writeln!(y, "seed: {}", exp.seed);
    let _ = writeln!(y, "max_failures: {}", exp.max_failures);
    env(&mut y, "", &exp.env);
    if exp.devices != Devices::default() {
        y.push_str("devices:\n");
        if let Some(c) = exp.devices.cpus {
            let _ = writeln!(y, "  cpus: {}", float(c));
        }
        if let Some(g) = exp.devices.gpus {
            let _ = writeln!(y, "  gpus: {g}");
        }
    }
    y.push_str("pipeline:\n");
    for s in &exp.pipeline {
        stage(&mut y, s);
    }
    y
}

/// The extensions document (first of the file, untagged), with its `---`.
pub fn extensions_yaml(extensions: &[Extension]) -> String {
    let mut y = String::new();
    for e in extensions {
        let spec = match &e.source {
            ExtensionSource::LocalFolder(p) => p.display().to_string(),
            ExtensionSource::Pip(s) | ExtensionSource::Git(s) => s.clone(),
        };
        let _ = writeln!(y, "{}: {}", q(&e.name), q(&spec));
    }
    y.push_str("---\n");
    y
}

/// A script as plain `!Script` YAML that loads back to the same script.
pub fn script_yaml(script: &Script) -> String {
    let mut y = String::from("!Script\n");
    let _ = writeln!(y, "name: {}", q(&script.name));
    let _ = writeln!(y, "run: {}", q(&script.run.source));
    let _ = writeln!(
        y,
        "save_path: {}",
        q(&script.save_path.display().to_string())
    );
    resources(&mut y, &script.resources);
    env(&mut y, "", &script.env);
    let _ = writeln!(y, "cpus: {}", float(script.cpus));
    let _ = writeln!(y, "gpus: {}", script.gpus);
    if let Some(t) = script.timeout {
        let _ = writeln!(y, "timeout: {}", float(t.as_secs_f64()));
    }
    y
}

fn resources(y: &mut String, resources: &[Resource]) {
    if resources.is_empty() {
        return;
    }
    y.push_str("resources:\n");
    for r in resources {
        let _ = match &r.location {
            ResourceLocation::Local(p) => {
                writeln!(y, "  {}: {}", r.name, q(&p.display().to_string()))
            }
            ResourceLocation::Cluster(p) => writeln!(y, "  {}: !cluster {}", r.name, q(p)),
        };
    }
}

fn stage(y: &mut String, s: &Stage) {
    let _ = writeln!(y, "  {}: !Stage", s.name);
    let _ = writeln!(y, "    run: {}", q(&s.run.source));
    if !s.params.is_empty() {
        y.push_str("    params:\n");
        for p in &s.params {
            let _ = writeln!(y, "      {}: {}", p.name, spec(&p.spec));
        }
    }
    if s.search == Search::Grid {
        let _ = writeln!(y, "    samples: {}", s.samples);
    }
    let _ = writeln!(y, "    cpus: {}", float(s.cpus));
    let _ = writeln!(y, "    gpus: {}", s.gpus);
    if let Some(m) = &s.metric {
        let _ = writeln!(y, "    metric: {}", q(m));
        let _ = writeln!(
            y,
            "    mode: {}",
            if s.mode == Mode::Max { "max" } else { "min" }
        );
    }
    if let Some(r) = s.reduce {
        let _ = writeln!(y, "    reduce: {r}");
    }
    match s.search {
        Search::Grid => {}
        Search::Random { trials } => {
            let _ = writeln!(y, "    search: !Random {{trials: {trials}}}");
        }
        Search::Tpe {
            trials,
            startup,
            concurrency,
        } => {
            let _ = writeln!(
                y,
                "    search: !TPE {{trials: {trials}, startup: {startup}, concurrency: {concurrency}}}"
            );
        }
    }
    match &s.scheduler {
        None => {}
        Some(Scheduler::Asha {
            max_t,
            grace_period,
            reduction_factor,
        }) => {
            let _ = writeln!(
                y,
                "    scheduler: !ASHA {{max_t: {max_t}, grace_period: {grace_period}, reduction_factor: {reduction_factor}}}"
            );
        }
        Some(Scheduler::HyperBand {
            max_t,
            grace_period,
            reduction_factor,
            brackets,
        }) => {
            let _ = writeln!(
                y,
                "    scheduler: !HyperBand {{max_t: {max_t}, grace_period: {grace_period}, reduction_factor: {reduction_factor}, brackets: {brackets}}}"
            );
        }
        Some(Scheduler::MedianStopping {
            grace_period,
            min_samples,
        }) => {
            let _ = writeln!(
                y,
                "    scheduler: !MedianStopping {{grace_period: {grace_period}, min_samples: {min_samples}}}"
            );
        }
        Some(Scheduler::Pbt {
            perturbation_interval,
            quantile,
            resample_probability,
            mutations,
        }) => {
            let names: Vec<String> = mutations.iter().map(|m| q(m)).collect();
            let _ = writeln!(
                y,
                "    scheduler: !PBT {{perturbation_interval: {perturbation_interval}, quantile: {}, resample_probability: {}, mutations: [{}]}}",
                float(*quantile),
                float(*resample_probability),
                names.join(", ")
            );
        }
    }
    if let Some(t) = s.timeout {
        let _ = writeln!(y, "    timeout: {}", float(t.as_secs_f64()));
    }
    env(y, "    ", &s.env);
}

fn env(y: &mut String, indent: &str, vars: &[EnvVar]) {
    if vars.is_empty() {
        return;
    }
    let _ = writeln!(y, "{indent}env:");
    for v in vars {
        let _ = match &v.value {
            EnvValue::Literal(s) => writeln!(y, "{indent}  {}: {}", v.name, q(s)),
            EnvValue::FromEnv(name) => writeln!(y, "{indent}  {}: !env {}", v.name, q(name)),
        };
    }
}

fn spec(s: &ParamSpec) -> String {
    match s {
        ParamSpec::Fixed(v) => value(v),
        ParamSpec::Grid(vs) => format!("!g {}", list(vs)),
        ParamSpec::Choice(vs) => format!("!c {}", list(vs)),
        ParamSpec::Sample {
            low,
            high,
            k,
            integer: true,
        } => format!("!s [{}, {}, {k}]", *low as i64, *high as i64),
        ParamSpec::Sample { low, high, k, .. } => {
            format!("!s [{}, {}, {k}]", float(*low), float(*high))
        }
        ParamSpec::Uniform { low, high } => format!("!u [{}, {}]", float(*low), float(*high)),
        ParamSpec::LogUniform { low, high } => format!("!lu [{}, {}]", float(*low), float(*high)),
        ParamSpec::Int { low, high } => format!("!i [{low}, {high}]"),
    }
}

fn list(vs: &[Value]) -> String {
    format!("[{}]", vs.iter().map(value).collect::<Vec<_>>().join(", "))
}

/// JSON is YAML: strings come out double-quoted, floats keep their point.
fn value(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), float),
        Value::Array(items) => list(items),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", q(k), value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A float that reads back as a float (`1.0`, not `1`).
fn float(f: f64) -> String {
    format!("{f:?}")
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_example_round_trips() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Ok(cfg) = crate::load_file(&path) else {
                continue;
            };
            let (text, before) = match &cfg.runnable {
                Runnable::Experiment(e) => (experiment_yaml(e), serde_json::to_value(e).unwrap()),
                Runnable::Script(s) => (script_yaml(s), serde_json::to_value(s).unwrap()),
                _ => continue,
            };
            let back = match crate::load_str(Path::new("/shipped/exp.yaml"), &text, &|_| None) {
                Ok(c) => c,
                Err(e) => panic!("{e}\n{text}"),
            };
            let after = match back.runnable {
                Runnable::Experiment(e) => serde_json::to_value(&e).unwrap(),
                Runnable::Script(s) => serde_json::to_value(&s).unwrap(),
                _ => panic!("{text}"),
            };
            assert_eq!(before, after, "{text}");
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    fn tricky_values_survive() {
        let text = "!Experiment\nname: t\nenv:\n  K: !env SECRET\n  L: \"a: b\"\npipeline:\n  s: !Stage\n    run: \"echo '{x}' \\\"q\\\" ${HOME}\"\n    params:\n      x: !s [0.0, 1.0, 2]\n      n: !s [1, 9, 2]\n      f: {a: [1, 2.5, \"x y\"]}\n      c: !c [\"1\", 1, true, null]\n    timeout: 90\n";
        let exp = match crate::load_str(Path::new("/a/t.yaml"), text, &|_| None)
            .unwrap()
            .runnable
        {
            Runnable::Experiment(e) => e,
            _ => unreachable!(),
        };
        let back = match crate::load_str(Path::new("/a/t.yaml"), &experiment_yaml(&exp), &|_| None)
            .unwrap()
            .runnable
        {
            Runnable::Experiment(e) => e,
            _ => unreachable!(),
        };
        assert_eq!(
            serde_json::to_value(&exp).unwrap(),
            serde_json::to_value(&back).unwrap()
        );
    }
}
