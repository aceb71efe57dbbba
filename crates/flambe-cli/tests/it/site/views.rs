//! The views people would rather look at: a stage's curves in one call,
//! a site over a save_path of several experiments, and, in Chromium, the
//! overlaid curves, parallel coordinates, compare, hover, zoom and log y.

use super::*;
use std::collections::BTreeSet;

/// A two-stage search over `lr` (log-uniform) and `width` (grid): each
/// trial reports `score` and `loss` at steps 1..=20; `score` is highest
/// for wide trials with lr near 10^-1.5.
fn write_search(dir: &Path, name: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    let yaml = r#"!Experiment
name: NAME
save_path: ./runs
seed: 3
pipeline:
  train: !Stage
    run: |-
      python3 -c "import json, math, os; f = open(os.environ['FLAMBE_METRICS'], 'a'); [f.write(json.dumps({'step': s, 'score': {width} * s / 20 - (math.log10({lr}) + 1.5) ** 2 / 10, 'loss': 1 / (s * {width})}) + chr(10)) for s in range(1, 21)]"
    params:
      lr: !lu [0.001, 1.0]
      width: !g [1, 2, 3]
    samples: 3
    cpus: 1
    metric: score
    mode: max
    reduce: 2
  test: !Stage
    run: |-
      echo '{"step": 1, "acc": 0.5}' >> $FLAMBE_METRICS
    metric: acc
    mode: max
"#
    .replace("NAME", name);
    std::fs::write(&config, yaml).unwrap();
    config
}

fn points(v: &Value) -> Vec<(i64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_stage_s_curves_come_whole_thinned_on_request_then_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_search(dir.path(), "curves");
    run_ok(&config);
    let (mut site, url) = start_site(&config);

    let (s, stage) = get_json(&url, "/api/v1/stages/train");
    assert_eq!(s, 200);
    assert_eq!(stage["log_params"], serde_json::json!(["lr"]));
    let (s, all) = get_json(&url, "/api/v1/stages/train/metrics");
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["metric"], "score");
    assert_eq!(all["metrics"], serde_json::json!(["loss", "score"]));
    assert_eq!(all["full"], true);
    let trials = all["trials"].as_object().unwrap();
    assert_eq!(trials.len(), 9);
    for (id, curve) in trials {
        // The same points as the trial's own metrics.
        let (_, own) = get_json(&url, &format!("/api/v1/trials/{id}/metrics"));
        assert_eq!(
            points(&curve["points"]),
            points(&own["metrics"]["score"]),
            "{id}"
        );
    }
    let cursor = all["cursor"].as_i64().unwrap();
    assert!(cursor > 0);

    // Thinned: the first and last steps and the extremes between stay.
    let (_, thin) = get_json(&url, "/api/v1/stages/train/metrics?metric=loss&points=6");
    assert_eq!(thin["metric"], "loss");
    for (id, curve) in thin["trials"].as_object().unwrap() {
        let pts = points(&curve["points"]);
        assert!(pts.len() <= 6, "{id}: {pts:?}");
        assert_eq!(curve["thinned_from"], 20, "{id}");
        assert_eq!((pts[0].0, pts[pts.len() - 1].0), (1, 20), "{id}: {pts:?}");
    }

    // Nothing recorded since the cursor: an empty update, not a whole one.
    let (_, next) = get_json(
        &url,
        &format!("/api/v1/stages/train/metrics?after={cursor}"),
    );
    assert_eq!(next["full"], false);
    assert_eq!(next["trials"], serde_json::json!({}));
    assert_eq!(next["cursor"], cursor);
    assert_eq!(get(&url, "/api/v1/stages/nope/metrics").0, 404);
    assert_eq!(
        get(&url, "/api/v1/stages/train/metrics?after=x").0,
        400,
        "a cursor that is not a number"
    );
    site.kill().unwrap();
    site.wait().unwrap();
}

#[test]
fn a_site_over_a_save_path_lists_its_experiments_and_serves_each_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_search(dir.path(), "first");
    run_ok(&first);
    let (mut site, url) = start_site(&dir.path().join("runs"));

    let (s, list) = get_json(&url, "/api/v1/experiments");
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["many"], true);
    assert_eq!(list["experiments"].as_array().unwrap().len(), 1);
    // An experiment that appears while the site runs is listed.
    let second = write_experiment(dir.path(), "second", 0.0);
    run_ok(&second);
    let (_, list) = get_json(&url, "/api/v1/experiments");
    let entries = list["experiments"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(entries[0]["status"], "finished");
    assert_eq!(
        (&entries[0]["done"], &entries[0]["total"]),
        (&11.into(), &11.into())
    );
    assert_eq!(entries[0]["best"]["stage"], "test");
    assert_eq!(entries[1]["best"]["id"], "train-005");
    assert_eq!(entries[1]["href"], "x/second/");

    // Each experiment's own pages and API, under its name.
    let (s, exp) = get_json(&url, "/x/second/api/v1/experiment");
    assert_eq!((s, exp["name"].as_str()), (200, Some("second")));
    let (s, page) = get(&url, "/x/first/");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&page).contains("<!doctype html>"));
    assert_eq!(get(&url, "/x/first/app.js").0, 200);
    assert_eq!(
        get(&url, "/x/first/api/v1/stages/train/metrics?points=3").0,
        200
    );
    assert_eq!(get(&url, "/x/first").0, 308, "to /x/first/");
    for path in [
        "/x/nope/",
        "/x/nope/api/v1/experiment",
        "/x/..%2F/api/v1/experiment",
    ] {
        let (s, body) = get_json(&url, path);
        assert_eq!(s, 404, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("no experiment"),
            "{body}"
        );
    }
    assert_eq!(
        get(&url, "/api/v1/experiment").0,
        404,
        "no one experiment at /"
    );
    site.kill().unwrap();
    site.wait().unwrap();

    // A folder with no experiment in it says what to give instead.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("site")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no experiment results"), "{err}");
    assert!(err.contains("hint:") && err.contains("save_path"), "{err}");
}

#[test]
fn the_views_overlay_curves_brush_params_compare_two_trials_hover_and_zoom() {
    let Some((playwright, chromium)) = super::browser::browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let search = write_search(dir.path(), "views");
    run_ok(&search);
    run_ok(&write_experiment(dir.path(), "other", 0.0));
    // The ASHA example, as a user has it: its stopped trials are marked.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(examples.join("quickstart"))
        .arg(examples.join("search-space.yaml"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    run_ok(&dir.path().join("search-space.yaml"));
    // A PBT run: a trial whose params changed over its steps.
    run_ok(&crate::common::pbt::toy_config(
        dir.path(),
        "pbt",
        crate::common::pbt::PBT_AND_EVAL,
    ));
    let (mut site, url) = start_site(&dir.path().join("runs"));
    let pbt_rows = get_json(&url, "/x/pbt/api/v1/stages/train").1;
    let changed = pbt_rows["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t.get("schedule")
                .is_some_and(|s| s.as_array().is_some_and(|s| !s.is_empty()))
        })
        .expect("PBT changed some trial's params")
        .clone();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("site-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/views.cjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(&url)
        .arg(&shots)
        .arg("views")
        .arg(changed["id"].as_str().unwrap())
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = |path: &str| get_json(&url, &format!("/x/views{path}")).1;
    let stage = api("/api/v1/stages/train");
    let rows = stage["trials"].as_array().unwrap();
    let lr_of = |id: &str| {
        rows.iter().find(|r| r["id"] == id).unwrap()["params"]["lr"]
            .as_f64()
            .unwrap()
    };
    let score_at = |id: &str, step: i64| {
        let m = api(&format!("/api/v1/trials/{id}/metrics"));
        points(&m["metrics"]["score"])
            .into_iter()
            .find(|p| p.0 == step)
            .map(|p| p.1)
    };
    let close = |shown: &str, value: f64| {
        let shown: f64 = shown.parse().unwrap();
        (shown - value).abs() <= 1e-3 * value.abs().max(1e-3)
    };
    assert_eq!(seen["errors"], serde_json::json!([]), "no page errors");

    // The list of experiments, and one opened under its own prefix.
    let listed: Vec<&str> = seen["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["other", "pbt", "search-space", "views"]);
    assert_eq!(seen["overviewPath"], "/x/views/");
    let pipeline = seen["pipeline"].to_string();
    assert!(
        pipeline.contains("9 trials in") && pipeline.contains("top 2 go on"),
        "{pipeline}"
    );
    assert!(
        pipeline.contains("2 trials in"),
        "the test stage gets the survivors: {pipeline}"
    );

    // Every trial's curve on one chart; hover names a real point.
    assert_eq!(seen["curveSeries"].as_array().unwrap().len(), 9);
    let hover = seen["stageHover"].as_str().unwrap();
    let parts: Vec<&str> = hover.split(" · ").collect();
    assert_eq!(parts.len(), 3, "{hover}");
    let step: i64 = parts[1].strip_prefix("step ").unwrap().parse().unwrap();
    let value = parts[2].strip_prefix("score ").unwrap();
    assert!(
        close(value, score_at(parts[0], step).unwrap()),
        "the hovered point is {}'s score at step {step}: {hover}",
        parts[0]
    );

    // The brush kept exactly the trials whose lr is inside it.
    assert!(seen["axes"].to_string().contains("lr"), "{}", seen["axes"]);
    let range = seen["brush"]["lr"].as_array().unwrap();
    let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
    assert!(lo < hi, "{range:?}");
    let shown: BTreeSet<&str> = seen["brushedRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let inside: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .filter(|id| (lo..=hi).contains(&lr_of(id)))
        .collect();
    assert_eq!(shown, inside, "lr in [{lo}, {hi}]");
    assert!(
        !inside.is_empty() && inside.len() < 9,
        "a real filter: {inside:?}"
    );
    assert_eq!(seen["unbrushedRows"], 9, "a click on the axis clears it");

    // Sorted by lr from the keyboard.
    assert_eq!(seen["ariaSort"], "ascending");
    let by_lr: Vec<f64> = seen["sortedLr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| lr_of(id.as_str().unwrap()))
        .collect();
    assert!(by_lr.windows(2).all(|w| w[0] <= w[1]), "{by_lr:?}");

    // Compare overlays exactly the two picked trials' curves.
    let picked: Vec<&str> = seen["compared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let joined = picked.join(",");
    assert!(
        seen["stageUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?sel={joined}")),
        "the selection is in the URL: {}",
        seen["stageUrl"]
    );
    assert!(
        seen["compareUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#/compare/{joined}")),
        "{}",
        seen["compareUrl"]
    );
    assert_eq!(seen["compareHeads"], serde_json::json!(picked));
    let charts = seen["compare"].as_array().unwrap();
    let metrics: Vec<&str> = charts
        .iter()
        .map(|c| c["metric"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["loss", "score"]);
    for chart in charts {
        assert_eq!(
            chart["labels"],
            serde_json::json!(picked),
            "{}",
            chart["metric"]
        );
        let data = chart["data"].as_array().unwrap();
        assert_eq!(data.len(), 3, "steps and exactly two curves");
        for (k, id) in picked.iter().enumerate() {
            let m = api(&format!("/api/v1/trials/{id}/metrics"));
            let want = points(&m["metrics"][chart["metric"].as_str().unwrap()]);
            let got: Vec<(i64, f64)> = data[0]
                .as_array()
                .unwrap()
                .iter()
                .zip(data[k + 1].as_array().unwrap())
                .filter(|(_, y)| !y.is_null())
                .map(|(x, y)| (x.as_i64().unwrap(), y.as_f64().unwrap()))
                .collect();
            assert_eq!(got, want, "{id} {}", chart["metric"]);
        }
    }

    // The trial view: hover shows the step and its value; drag zooms x.
    let legend = seen["trialHover"].as_array().unwrap();
    let step: i64 = legend[0].as_str().unwrap().parse().unwrap();
    assert_eq!(step, 8, "the 8th point was hovered: {legend:?}");
    let value = score_at(picked[0], step).unwrap();
    assert!(
        close(legend[1].as_str().unwrap(), value),
        "{legend:?} vs {value}"
    );
    let before = seen["zoom"]["before"].as_array().unwrap();
    let after = seen["zoom"]["after"].as_array().unwrap();
    let (b0, b1) = (before[0].as_f64().unwrap(), before[1].as_f64().unwrap());
    let (a0, a1) = (after[0].as_f64().unwrap(), after[1].as_f64().unwrap());
    assert!(
        b0 < a0 && a0 < a1 && a1 < b1,
        "zoomed in: {before:?} → {after:?}"
    );
    assert_eq!(
        seen["logY"], 3,
        "the log-y switch makes the y scale logarithmic"
    );

    // Trials the scheduler stopped are marked where they stopped.
    let asha = get_json(&url, "/x/search-space/api/v1/stages/train").1;
    let stopped = asha["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "stopped")
        .count();
    assert!(stopped > 0, "ASHA stopped some: {asha}");
    assert_eq!(seen["stoppedMarks"], stopped, "one × per stopped trial");

    // A PBT trial's params over its steps: where it started, then each change.
    let schedule = changed["schedule"].as_array().unwrap();
    let mut steps = vec![0];
    steps.extend(schedule.iter().map(|e| e["step"].as_i64().unwrap()));
    let mut rates = vec![changed["params"]["lr"].as_f64().unwrap()];
    rates.extend(schedule.iter().map(|e| e["params"]["lr"].as_f64().unwrap()));
    let chart = &seen["pbtParams"];
    assert_eq!(chart["labels"], serde_json::json!(["lr"]), "{chart}");
    let xs: Vec<i64> = chart["data"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let ys: Vec<f64> = chart["data"][1]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!((xs, ys), (steps, rates), "{chart}");

    // A phone-width screen scrolls nothing sideways but the tables.
    assert!(
        seen["phone"]["scrollWidth"].as_i64() <= seen["phone"]["innerWidth"].as_i64(),
        "{}",
        seen["phone"]
    );
    for shot in [
        "experiments.png",
        "overview.png",
        "stage.png",
        "stage-brushed.png",
        "compare.png",
        "trial.png",
        "stage-phone.png",
    ] {
        let file = shots.join(format!("views-{shot}"));
        assert!(file.metadata().unwrap().len() > 1000, "{shot}");
    }
    site.kill().unwrap();
    site.wait().unwrap();
}
