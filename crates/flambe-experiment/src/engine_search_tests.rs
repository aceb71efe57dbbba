//! The engine's search and schedulers against the scripted executor of
//! [`crate::engine_tests`]: known learning curves, one trial at a time, so
//! the set of trials each rule stops is known exactly.

use crate::engine_tests::{Job, Part, Script, experiment, lr, run};
use crate::{EngineError, Status};
use std::sync::Arc;

/// Six trials, `lr` 1..=6, each reporting `acc` = curve(lr, step) at steps
/// 1..=6 and exiting 0.
fn six(scheduler: &str) -> String {
    format!(
        "  train: !Stage\n    run: train {{lr}}\n    params:\n      lr: !g [1, 2, 3, 4, 5, 6]\n    metric: acc\n    mode: max\n    scheduler: {scheduler}\n"
    )
}

fn curves(curve: fn(f64, f64) -> f64) -> Script {
    Arc::new(move |job: &Job| Part::Run {
        acc: (1..=6).map(|step| curve(lr(job), step as f64)).collect(),
        code: 0,
    })
}

/// (id, error) of every stopped trial, by id.
fn stopped(report: &crate::Report) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report.stages[0]
        .rows
        .iter()
        .filter(|r| r.status == Status::Stopped)
        .map(|r| (r.id.clone(), r.error.clone().unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn median_stopping_stops_exactly_the_trials_below_the_others_median() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        &six("!MedianStopping {grace_period: 2, min_samples: 2}"),
    );
    // Flat curves: each trial's running mean is its value.
    //   000 0.5, 001 0.9: too few others yet;
    //   002 0.3 < median(0.5, 0.9) = 0.7 → stops at step 2;
    //   003 0.8 > median(0.5, 0.9, 0.3) = 0.5, and > 0.7 at step 3 on;
    //   004 0.4 < median(0.5, 0.9, 0.3, 0.8) = 0.65 → stops at step 2;
    //   005 0.95 is above every median.
    let report = run(
        &exp,
        1,
        curves(|lr, _| [0.5, 0.9, 0.3, 0.8, 0.4, 0.95][lr as usize - 1]),
    )
    .await
    .result
    .unwrap();
    let stopped = stopped(&report);
    let ids: Vec<&str> = stopped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["train-002", "train-004"], "{stopped:?}");
    assert!(stopped[0].1.contains("median 0.7 at step 2"), "{stopped:?}");
    assert!(
        stopped[1].1.contains("median 0.65 at step 2"),
        "{stopped:?}"
    );
    let succeeded = report.stages[0].count(Status::Succeeded);
    assert_eq!(succeeded, 4);
}

#[tokio::test]
async fn hyperband_judges_each_bracket_at_its_own_rungs() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        &six("!HyperBand {max_t: 8, grace_period: 1, reduction_factor: 2, brackets: 2}"),
    );
    // acc = c × step. Bracket 0 (even trials) has rungs 1, 2, 4; bracket 1
    // (odd trials) 2 and 4. c by trial: 1, 2, 3, 0.5, 0.5, 3.
    //   004 (c 0.5) is behind 000 and 002 at rung 1 of bracket 0;
    //   003 (c 0.5) is first judged at step 2, behind 001, in bracket 1;
    //   the rest lead their rungs, and no curve reaches max_t.
    let report = run(
        &exp,
        1,
        curves(|lr, step| [1.0, 2.0, 3.0, 0.5, 0.5, 3.0][lr as usize - 1] * step),
    )
    .await
    .result
    .unwrap();
    let stopped = stopped(&report);
    let ids: Vec<&str> = stopped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["train-003", "train-004"], "{stopped:?}");
    assert!(
        stopped[0]
            .1
            .contains("HyperBand (bracket 1): behind at step 2"),
        "{stopped:?}"
    );
    assert!(
        stopped[1]
            .1
            .contains("HyperBand (bracket 0): behind at step 1"),
        "{stopped:?}"
    );
}

const TPE: &str = "  train: !Stage\n    run: train {x} {k}\n    params:\n      x: !u [0, 1]\n      k: !c [a, b]\n    search: !TPE {trials: 12, startup: 4}\n    metric: acc\n    mode: max\n";

/// Best at x = 0.3 with `b`.
fn score(job: &Job) -> f64 {
    let x = job.params["x"].as_f64().unwrap();
    let k = if job.params["k"] == "b" { 0.0 } else { 0.2 };
    -(x - 0.3).powi(2) - k
}

fn params_by_id(report: &crate::Report) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report.stages[0]
        .rows
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                serde_json::Value::Object(r.params.clone()).to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_tpe_study_runs_its_budget_repeats_with_the_seed_and_resumes_where_it_was() {
    let done: Script = Arc::new(|job| Part::Run {
        acc: vec![score(job)],
        code: 0,
    });
    let whole = tempfile::tempdir().unwrap();
    let exp = experiment(whole.path(), TPE);
    let first = run(&exp, 1, done.clone()).await;
    let report = first.result.unwrap();
    let ids: Vec<&str> = first.launched.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("train-{i:03}")).collect();
    assert_eq!(ids, expected);
    let trials = params_by_id(&report);
    // The same config and seed, elsewhere: the same trials.
    let again = tempfile::tempdir().unwrap();
    let same = run(&experiment(again.path(), TPE), 1, done.clone()).await;
    assert_eq!(params_by_id(&same.result.unwrap()), trials);

    // Cut short while trial 7 runs, then rerun: the same study.
    let cut = tempfile::tempdir().unwrap();
    let exp = experiment(cut.path(), TPE);
    let hang_7: Script = Arc::new(move |job| {
        if job.id == "train-007" {
            Part::Hang
        } else {
            Part::Run {
                acc: vec![score(job)],
                code: 0,
            }
        }
    });
    let interrupted = run(&exp, 1, hang_7).await;
    assert!(matches!(
        interrupted.result,
        Err(EngineError::Interrupted { running: 1, .. })
    ));
    assert_eq!(interrupted.launched.len(), 8);
    let resumed = run(&exp, 1, done).await;
    assert_eq!(resumed.launched[0], ("train-007".to_string(), 2));
    assert_eq!(resumed.launched.len(), 5);
    assert_eq!(params_by_id(&resumed.result.unwrap()), trials);
    // The model's later picks are better than its random start.
    let best_of = |range: std::ops::Range<usize>| {
        report.stages[0]
            .rows
            .iter()
            .filter(|r| range.contains(&r.index))
            .filter_map(|r| r.best_metric)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    assert!(best_of(4..12) > best_of(0..4));
}

fn done_by_lr() -> Script {
    Arc::new(|job: &Job| Part::Run {
        acc: vec![job.params.get("lr").and_then(|v| v.as_f64()).unwrap_or(0.5)],
        code: 0,
    })
}

fn launched_ids(run: &crate::engine_tests::Run) -> Vec<String> {
    run.launched.iter().map(|(id, _)| id.clone()).collect()
}

#[tokio::test]
async fn a_finished_experiment_grown_runs_exactly_the_new_trials_and_keeps_the_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let stage = |values: &str, extra: &str| {
        experiment(
            tmp.path(),
            &format!(
                "  train: !Stage\n    run: train {{lr}}\n    params:\n      lr: !g [{values}]\n    metric: acc\n    mode: max\n{extra}"
            ),
        )
    };
    let first = run(&stage("1, 2", ""), 1, done_by_lr()).await;
    assert_eq!(launched_ids(&first), ["train-000", "train-001"]);
    let before = params_by_id(&first.result.unwrap());
    // One grid value added, in the middle: only it runs, as a new id.
    let grown = run(&stage("1, 5, 2", ""), 1, done_by_lr()).await;
    assert_eq!(launched_ids(&grown), ["train-002"]);
    let report = grown.result.unwrap();
    let after = params_by_id(&report);
    assert_eq!(after[..2], before[..]);
    assert_eq!(after[2], ("train-002".into(), r#"{"lr":5}"#.into()));
    // More samples: exactly the added repetitions run.
    let sampled = run(&stage("1, 5, 2", "    samples: 2\n"), 1, done_by_lr()).await;
    assert_eq!(
        launched_ids(&sampled),
        ["train-003", "train-004", "train-005"]
    );
    // A change that would make the results wrong is still refused.
    // A stage appended: only its trials run (one per train trial).
    let eval =
        "    samples: 2\n  eval: !Stage\n    run: e {train.out}\n    metric: acc\n    mode: min\n";
    let appended = run(&stage("1, 5, 2", eval), 1, done_by_lr()).await;
    assert_eq!(launched_ids(&appended).len(), 6);
    assert!(
        launched_ids(&appended)
            .iter()
            .all(|id| id.starts_with("eval-"))
    );
    let other = experiment(
        tmp.path(),
        "  train: !Stage\n    run: other {lr}\n    params:\n      lr: !g [1, 5, 2]\n    samples: 2\n    metric: acc\n    mode: max\n  eval: !Stage\n    run: e {train.out}\n    metric: acc\n    mode: min\n",
    );
    let refused = run(&other, 1, done_by_lr()).await;
    assert!(refused.launched.is_empty());
    match refused.result {
        Err(EngineError::ChangedConfig { changes, .. }) => {
            assert_eq!(changes, ["pipeline.train.run"])
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn random_samples_added_later_leave_the_earlier_draws_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let stage = |n: u32| {
        experiment(
            tmp.path(),
            &format!(
                "  train: !Stage\n    run: train {{lr}}\n    params:\n      lr: !u [0, 1]\n    search: !Random {{trials: {n}}}\n    metric: acc\n    mode: max\n"
            ),
        )
    };
    let first = run(&stage(3), 2, done_by_lr()).await;
    let before = params_by_id(&first.result.unwrap());
    let grown = run(&stage(5), 2, done_by_lr()).await;
    let mut ids = launched_ids(&grown);
    ids.sort();
    assert_eq!(ids, ["train-003", "train-004"]);
    assert_eq!(params_by_id(&grown.result.unwrap())[..3], before[..]);
}

#[tokio::test]
async fn pbt_trials_go_on_from_their_donors_checkpoint_with_explored_params() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        "  train: !Stage\n    run: train {lr}\n    params:\n      lr: !g [1, 2, 3, 4]\n    metric: acc\n    mode: max\n    scheduler: !PBT {perturbation_interval: 2, quantile: 0.25, resample_probability: 0, mutations: [lr]}\n",
    );
    // Each attempt writes who it is into its checkpoint as it starts, and
    // the test keeps what each attempt found there: (id, attempt) →
    // (donor it was told of, owner of the checkpoint it found, its lr).
    type Seen = std::collections::HashMap<(String, u32), (Option<String>, String, f64)>;
    let seen = Arc::new(std::sync::Mutex::new(Seen::new()));
    let log = seen.clone();
    let script: Script = Arc::new(move |job: &Job| {
        let owner_file = job.checkpoint.join("owner");
        let found = std::fs::read_to_string(&owner_file).unwrap_or_default();
        std::fs::write(&owner_file, &job.id).unwrap();
        log.lock().unwrap().insert(
            (job.id.clone(), job.attempt),
            (job.restore_donor.clone(), found, lr(job)),
        );
        Part::Run {
            acc: (1..=8).map(|step| lr(job) * step as f64).collect(),
            code: 0,
        }
    });
    let report = run(&exp, 4, script).await.result.unwrap();
    let seen = seen.lock().unwrap();
    let rows = &report.stages[0].rows;
    let worst = rows.iter().find(|r| r.id == "train-000").unwrap();
    assert!(
        !worst.schedule.is_empty(),
        "the lowest lr is always in the bottom quarter once others are scored: {rows:#?}"
    );
    for r in rows {
        // Exploited attempts are neither failures nor retries.
        assert_eq!(r.status, Status::Succeeded, "{r:?}");
        assert_eq!(r.attempts as usize, 1 + r.schedule.len(), "{r:?}");
        for e in &r.schedule {
            let (donor, found, lr) = &seen[&(r.id.clone(), e.attempt)];
            assert_eq!(donor.as_deref(), Some(e.donor.as_str()), "{r:?}");
            assert_eq!(
                found, &e.donor,
                "{}'s checkpoint is not {}'s copy",
                r.id, e.donor
            );
            assert_eq!(Some(*lr), e.params["lr"].as_f64(), "{r:?}");
            assert_ne!(e.donor, r.id);
            assert!([1.0, 2.0, 3.0, 4.0].contains(lr), "{lr}");
        }
    }
    // The results table's params are those each trial started with.
    let mut start: Vec<f64> = rows
        .iter()
        .map(|r| r.params["lr"].as_f64().unwrap())
        .collect();
    start.sort_by(f64::total_cmp);
    assert_eq!(start, [1.0, 2.0, 3.0, 4.0]);
}
