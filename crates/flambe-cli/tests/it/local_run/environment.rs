//! What trials find around them: TensorBoard over their scalars, a
//! script's resources, secrets, and the extensions' Python environment.

use super::*;

#[test]
fn tensorboard_reads_every_reported_scalar() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let exp = Exp::new(
        "tb",
        "pipeline:\n  s: !Stage\n    run: |-\n      for step in 1 2 3; do echo \"{\\\"step\\\": $step, \\\"acc\\\": 0.{i}$step, \\\"loss\\\": $step.5}\" >> $FLAMBE_METRICS; done\n    params:\n      i: !g [1, 2]\n    metric: acc\n    mode: max\n",
    );
    exp.run_ok();
    let script = r#"
import json, sys, glob, os
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for d in sorted(glob.glob(os.path.join(sys.argv[1], "trials", "*"))):
    acc = EventAccumulator(d)
    acc.Reload()
    out[os.path.basename(d)] = {tag: [[e.step, round(e.value, 5)] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(exp.path("runs/tb"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (id, i) in [("s-000", 1), ("s-001", 2)] {
        let acc: Vec<(i64, f64)> = (1..=3)
            .map(|s| (s, format!("0.{i}{s}").parse().unwrap()))
            .collect();
        let loss: Vec<(i64, f64)> = (1..=3).map(|s| (s, s as f64 + 0.5)).collect();
        let got = |tag: &str| -> Vec<(i64, f64)> {
            seen[id][tag]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect()
        };
        assert_eq!(got("acc"), acc, "{seen}");
        assert_eq!(got("loss"), loss, "{seen}");
    }
}

/// The Python with TensorBoard that scripts/test.sh installs. Missing is a
/// failure under CI and a loud skip elsewhere.
fn tensorboard_python() -> Option<String> {
    let python = std::env::var("FLAMBE_TEST_PYTHON")
        .unwrap_or_else(|_| "/opt/flambe-test/venv/bin/python".to_string());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    flambe_testbed::missing_prerequisite(
        "tensorboard_reads_every_reported_scalar",
        &format!("{python} cannot import tensorboard; scripts/test.sh installs it"),
    );
    None
}

#[test]
fn a_script_runs_once_with_its_resources_and_says_where_its_output_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/words.txt"), "a b c\n").unwrap();
    let config = dir.path().join("count.yaml");
    std::fs::write(
        &config,
        "!Script\nname: count\nsave_path: ./out\nresources:\n  data: ./data\nenv:\n  GREETING: hello\nrun: |-\n  wc -w < {resources.data}/words.txt > {out}/count && echo \"$GREETING from {trial}\"\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        flambe()
            .arg(&config)
            .arg("--no-site")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trial = dir.path().join("out/count/trials/count-000");
    assert!(stdout.contains("Script `count` succeeded"), "{stdout}");
    assert!(
        stdout.contains(&format!("Output: {}", trial.join("out").display())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(trial.join("out/count"))
            .unwrap()
            .trim(),
        "3"
    );
    let log = std::fs::read_to_string(trial.join("stdout.log")).unwrap();
    assert!(log.contains("hello from count-000"), "{log}");

    // A rerun shows the earlier result; --force runs it again and keeps the
    // earlier output next to it.
    let again = run(&[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("--force` runs the script again"),
        "{stdout}"
    );
    std::fs::write(dir.path().join("data/words.txt"), "a b c d e\n").unwrap();
    assert!(run(&["--force"]).status.success());
    assert_eq!(
        std::fs::read_to_string(trial.join("out/count"))
            .unwrap()
            .trim(),
        "5"
    );
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("count.old-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // A failing script: exit 1, its error and the end of its stderr shown.
    std::fs::write(
        &config,
        "!Script\nname: broken\nrun: |-\n  echo 'no such file: model.pt' >&2; exit 4\n",
    )
    .unwrap();
    let failed = run(&[]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Script `broken` failed"), "{stdout}");
    assert!(stdout.contains("exited with code 4"), "{stdout}");
    assert!(stdout.contains("| no such file: model.pt"), "{stdout}");
}

#[test]
fn a_secret_reaches_trials_and_is_written_and_printed_nowhere() {
    let secret = "s3cr3t-7f1e9a";
    let exp = Exp::new(
        "secret",
        "pipeline:\n  s: !Stage\n    run: |-\n      test \"$TOKEN\" = \"$AGAIN\" && test \"${#TOKEN}\" = 13 && echo ok > {out}/checked\n    env:\n      AGAIN: !env FLAMBE_TEST_TOKEN\n",
    );
    // The experiment-wide `env` (Exp::new's has T) gets the secret too.
    let text = std::fs::read_to_string(&exp.config).unwrap().replacen(
        "env:\n",
        "env:\n  TOKEN: !env FLAMBE_TEST_TOKEN\n",
        1,
    );
    std::fs::write(&exp.config, text).unwrap();
    // Unset: a clear error naming the variable, and nothing created.
    let unset = exp.run(&["--no-site"]);
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert_eq!(unset.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "`TOKEN: !env FLAMBE_TEST_TOKEN` needs the environment variable `FLAMBE_TEST_TOKEN`"
        ),
        "{stderr}"
    );
    assert!(!exp.path("runs/secret").exists(), "nothing half-created");

    let dry = flambe()
        .arg(&exp.config)
        .arg("--dry-run")
        .env("FLAMBE_TEST_TOKEN", secret)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&dry.stdout);
    assert!(
        shown.contains("TOKEN=****** (secret, from $FLAMBE_TEST_TOKEN)"),
        "{shown}"
    );

    let out = flambe()
        .arg(&exp.config)
        .args(["--cpus", "2"])
        .env("FLAMBE_TEST_TOKEN", secret)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        shown
    );
    assert!(out.status.success(), "{printed}");
    assert_eq!(
        std::fs::read_to_string(exp.path("runs/secret/trials/s-000/out/checked")).unwrap(),
        "ok\n",
        "the trial saw the value"
    );
    assert!(!printed.contains(secret), "printed: {printed}");
    assert_eq!(
        common::files_containing(exp.dir.path(), secret),
        Vec::<PathBuf>::new()
    );
}

/// The wheel folder `scripts/test.sh` fills (setuptools and wheel for
/// isolated builds), or None (with a SKIPPED line, a failure under CI).
fn test_wheels(test: &str) -> Option<PathBuf> {
    let wheels = flambe_testbed::tools_dir().join("wheels");
    if wheels.join("setuptools-75.8.0-py3-none-any.whl").exists() {
        return Some(wheels);
    }
    flambe_testbed::missing_prerequisite(
        test,
        &format!("needs {} (scripts/test.sh fills it)", wheels.display()),
    );
    None
}

#[test]
fn extensions_are_installed_into_the_trials_environment_here() {
    let Some(wheels) = test_wheels("extensions_are_installed_into_the_trials_environment_here")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    common::write_package(dir.path(), "my_models", "v1");
    let config = dir.path().join("exp.yaml");
    std::fs::write(
        &config,
        "my_models: ./my_models\n---\n!Experiment\nname: ext\nsave_path: ./runs\npipeline:\n  s: !Stage\n    run: |-\n      python -c \"import my_models, sys; print(my_models.MARK, sys.prefix)\" > {out}/seen\n",
    )
    .unwrap();
    let home = dir.path().join("home");
    // pip without network: an index nowhere, setuptools and wheel from the folder.
    let run = |extra: &[&str]| {
        let out = flambe()
            .arg(&config)
            .args(["--no-site", "--cpus", "2"])
            .args(extra)
            .env("FLAMBE_HOME", &home)
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &wheels)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let seen =
        || std::fs::read_to_string(dir.path().join("runs/ext/trials/s-000/out/seen")).unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Extensions: installed"), "{text}");
    let first = seen();
    assert!(
        first.starts_with(&format!("v1 {}", home.join("envs").display())),
        "the trial's python is the extensions' venv: {first}"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/ext/extensions.json")).unwrap(),
    )
    .unwrap();
    assert!(
        record["installed"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |p| p["name"].as_str().map(|n| n.replace('-', "_")).as_deref() == Some("my_models")
                    && p["version"] == "0.3"
            ),
        "{record}"
    );
    assert!(
        !dir.path().join("my_models/build").exists(),
        "the user's folder is left alone"
    );

    // Unchanged: nothing installed.
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("up to date, nothing installed"), "{text}");

    // One file changed: another environment, and the rerun must be asked for.
    common::write_package(dir.path(), "my_models", "v2");
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("changed: extensions"), "{text}");
    let (code, text) = run(&["--force"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(seen().starts_with("v2 "), "{}", seen());
    let envs = std::fs::read_dir(home.join("envs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join(".ready").exists())
        .count();
    assert_eq!(envs, 2, "the first environment is kept for the first set");

    // A broken extension stops the run before any trial, naming it.
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(
        dir.path().join("broken/setup.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        "broken: ./broken\n---\n!Experiment\nname: bad\nsave_path: ./runs\npipeline:\n  s: !Stage\n    run: echo never\n",
    )
    .unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("extension `broken` failed to install here"),
        "{text}"
    );
    assert!(text.contains("broken on purpose"), "{text}");
    assert!(!dir.path().join("runs/bad").exists(), "no trial started");
}
