//! Growing a recorded experiment instead of refusing it: a config whose
//! only changes add trials (more `!g` values, more `samples`, a bigger
//! `!Random`/`!TPE` budget, a larger `reduce`, stages appended) keeps every
//! recorded trial and runs only what is new. Anything else would make
//! recorded results wrong and is refused, naming it.

use crate::fingerprint::diff;
use flambe_config::{Experiment, ParamSpec, Search, Stage};
use serde_json::Value;

/// What a changed config does to the recorded run.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Additive only: what grows, in words.
    Grows(Vec<String>),
    /// The changes that make recorded results wrong.
    Refused(Vec<String>),
}

/// `old` and `new` are the recorded and the new config fingerprints.
pub fn classify(old: &Value, new: &Value) -> Change {
    let (Some(o), Some(n)) = (stages_of(old), stages_of(new)) else {
        return Change::Refused(diff(old, new));
    };
    let mut refused = diff(&without_pipeline(old), &without_pipeline(new));
    let mut grows = Vec::new();
    if n.len() < o.len() || o.iter().zip(&n).any(|(a, b)| a.name != b.name) {
        refused.push("pipeline (stages removed or reordered)".into());
    } else {
        for (a, b) in o.iter().zip(&n) {
            match stage_growth(a, b) {
                Ok(g) => grows.extend(g),
                Err(r) => refused.extend(r),
            }
        }
        grows.extend(
            n[o.len()..]
                .iter()
                .map(|s| format!("stage `{}` appended", s.name)),
        );
    }
    if refused.is_empty() {
        Change::Grows(grows)
    } else {
        Change::Refused(refused)
    }
}

fn stages_of(fingerprint: &Value) -> Option<Vec<Stage>> {
    serde_json::from_value::<Experiment>(fingerprint.clone())
        .ok()
        .map(|e| e.pipeline)
}

fn without_pipeline(fingerprint: &Value) -> Value {
    let mut v = fingerprint.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("pipeline");
    }
    v
}

/// What grows in a stage, or the changes that are not growth.
fn stage_growth(old: &Stage, new: &Stage) -> Result<Vec<String>, Vec<String>> {
    let mut grows = Vec::new();
    let mut refused = Vec::new();
    // `new` brought back to `old` wherever it only grew; what differs after
    // that is refused.
    let mut back = new.clone();
    let name = &old.name;
    if new.samples > old.samples {
        grows.push(format!(
            "`{name}`: samples {} → {}",
            old.samples, new.samples
        ));
        back.samples = old.samples;
    }
    match (old.search, new.search) {
        (Search::Random { trials: a }, Search::Random { trials: b }) if b > a => {
            grows.push(format!("`{name}`: {a} → {b} random trials"));
            back.search = old.search;
        }
        (
            Search::Tpe {
                trials: a,
                startup,
                concurrency,
            },
            Search::Tpe {
                trials: b,
                startup: s2,
                concurrency: c2,
            },
        ) if b > a && (startup, concurrency) == (s2, c2) => {
            grows.push(format!("`{name}`: TPE budget {a} → {b}"));
            back.search = old.search;
        }
        _ => {}
    }
    match (old.reduce, new.reduce) {
        (Some(a), Some(b)) if b > a => {
            grows.push(format!("`{name}`: reduce {a} → {b}"));
            back.reduce = old.reduce;
        }
        (Some(a), None) => {
            grows.push(format!("`{name}`: reduce {a} → all"));
            back.reduce = old.reduce;
        }
        _ => {}
    }
    // Per-trial draws follow the grid's size: with any, a bigger grid
    // would redraw the recorded trials.
    let draws = old.params.iter().any(|p| {
        matches!(
            p.spec,
            ParamSpec::Choice(_)
                | ParamSpec::Uniform { .. }
                | ParamSpec::LogUniform { .. }
                | ParamSpec::Int { .. }
        )
    });
    for (p, q) in old.params.iter().zip(back.params.iter_mut()) {
        if let (ParamSpec::Grid(a), ParamSpec::Grid(b)) = (&p.spec, &q.spec)
            && p.name == q.name
            && b.len() > a.len()
            && a.iter().all(|v| b.contains(v))
        {
            if draws && old.search == Search::Grid {
                refused.push(format!(
                    "pipeline.{name}.params.{} (more grid values would redraw the stage's `!c`/`!u`/`!lu`/`!i` params)",
                    p.name
                ));
            } else {
                let more = b.len() - a.len();
                let values = if more == 1 { "value" } else { "values" };
                grows.push(format!("`{name}`: {more} more {values} of `{}`", p.name));
            }
            q.spec = p.spec.clone();
        }
    }
    // Diffed as one-stage pipelines, so the paths read as in a refusal of
    // the whole config (`pipeline.train.run`).
    let as_pipeline = |s: &Stage| serde_json::json!({ "pipeline": [s] });
    refused.extend(diff(&as_pipeline(old), &as_pipeline(&back)));
    if refused.is_empty() {
        Ok(grows)
    } else {
        Err(refused)
    }
}

/// What a dry run tells of an existing results folder: how the config
/// stands to the recorded run, and per stage (in pipeline order) the
/// identities of its recorded finished trials, to mark a plan's trials as
/// kept or to run.
pub struct Recorded {
    /// How the config stands to the recorded run (None: unchanged).
    pub change: Option<Change>,
    /// Per stage: (parent, params as JSON, id) of each finished trial.
    pub finished: Vec<Vec<(Option<String>, String, String)>>,
}

/// The recorded run in `exp`'s results folder, if there is one.
pub fn recorded(exp: &Experiment) -> Option<Recorded> {
    let dir = crate::layout::ResultsDir::new(&exp.save_path, &exp.name);
    let db = dir.state_db();
    if !db.exists() {
        return None;
    }
    let store = crate::state::Store::open_read_only(&db).ok()?;
    // Extensions are left out on both sides: a dry run does not build them.
    let strip = |mut v: Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("extensions");
        }
        v
    };
    let new = strip(crate::fingerprint::fingerprint(exp, &Default::default()));
    let change = store
        .meta("config")
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .map(strip)
        .map(|old| {
            if old == new {
                Change::Grows(Vec::new())
            } else {
                classify(&old, &new)
            }
        });
    let finished = exp
        .pipeline
        .iter()
        .map(|stage| {
            store
                .stage_trials(&stage.name)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.status.is_done())
                .map(|t| (t.parent, Value::Object(t.params).to_string(), t.id))
                .collect()
        })
        .collect();
    Some(Recorded { change, finished })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flambe_config::{Runnable, load_str};
    use std::path::Path;

    fn fingerprint(pipeline: &str) -> Value {
        let text = format!("!Experiment\nname: e\nseed: 1\npipeline:\n{pipeline}");
        match load_str(Path::new("/e.yaml"), &text, &|_| None)
            .unwrap()
            .runnable
        {
            Runnable::Experiment(e) => serde_json::to_value(e).unwrap(),
            _ => unreachable!(),
        }
    }

    const TRAIN: &str = "  train: !Stage\n    run: t {lr}\n    metric: a\n    mode: max\n";

    #[test]
    fn additive_changes_grow_and_the_rest_is_refused() {
        let old = fingerprint(&format!(
            "{TRAIN}    params:\n      lr: !g [1, 2]\n    reduce: 1\n"
        ));
        let more = fingerprint(&format!(
            "{TRAIN}    params:\n      lr: !g [1, 3, 2]\n    reduce: 2\n    samples: 2\n  eval: !Stage\n    run: e\n"
        ));
        let Change::Grows(g) = classify(&old, &more) else {
            panic!("{:?}", classify(&old, &more))
        };
        assert_eq!(g.len(), 4, "{g:?}");
        let other_run = fingerprint(
            "  train: !Stage\n    run: u {lr}\n    metric: a\n    mode: max\n    params:\n      lr: !g [1, 2]\n    reduce: 1\n",
        );
        assert_eq!(
            classify(&old, &other_run),
            Change::Refused(vec!["pipeline.train.run".into()])
        );
        let fewer = fingerprint(&format!(
            "{TRAIN}    params:\n      lr: !g [1]\n    reduce: 1\n"
        ));
        assert!(matches!(classify(&old, &fewer), Change::Refused(_)));
        let with_draws = |g: &str| {
            fingerprint(&format!(
                "{TRAIN}    params:\n      lr: !g {g}\n      d: !u [0, 1]\n"
            ))
        };
        assert!(matches!(
            classify(&with_draws("[1, 2]"), &with_draws("[1, 2, 3]")),
            Change::Refused(_)
        ));
    }
}
