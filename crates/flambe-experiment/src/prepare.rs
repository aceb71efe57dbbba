//! Opening a results folder for a run: resume it when the config is the
//! one recorded, refuse a changed one (naming what changed), or set the old
//! results aside (`--force`, a script's rerun). Never deletes anything.

use crate::error::EngineError;
use crate::extend::{Change, classify};
use crate::layout::ResultsDir;
use crate::options::RunOptions;
use crate::state::Store;
use flambe_config::Experiment;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, EngineError>;

/// left out: it says where to run, not what.
pub(crate) fn fingerprint(exp: &Experiment, opts: &RunOptions) -> serde_json::Value {
    let mut exp = exp.clone();
    exp.devices = Default::default();
    let mut value = serde_json::to_value(&exp).unwrap_or_default();
    if let (Some(py), Some(map)) = (&opts.python, value.as_object_mut()) {
        map.insert("extensions".into(), serde_json::json!(py.key));
    }
    value
}

/// An opened results folder.
pub(crate) struct Prepared {
    pub store: Store,
    /// A recorded run goes on.
    pub resumed: bool,
    /// Where `--force` moved the old results.
    pub set_aside_to: Option<PathBuf>,
    /// What grows, when the config only adds trials to the recorded run.
    pub grows: Vec<String>,
}

/// Open (or create) the results folder and its store; a changed config
/// that only adds trials extends the recorded run; any other change is
/// refused unless `force`, which moves the old folder aside.
pub(crate) fn prepare(
    exp: &Experiment,
    results: &ResultsDir,
    opts: &RunOptions,
) -> Result<Prepared> {
    let dir = results.path();
    let mut set_aside_to = None;
    let (force, restart) = (opts.force, opts.restart);
    let db = results.state_db();
    let config = fingerprint(exp, opts);
    let state_err = |source| EngineError::State {
        path: db.clone(),
        source,
    };
    if db.exists() {
        let store = Store::open(&db).map_err(state_err)?;
        let old: Option<serde_json::Value> = store
            .meta("config")
            .map_err(state_err)?
            .and_then(|s| serde_json::from_str(&s).ok());
        match old {
            Some(old) if old == config && !restart => {
                return Ok(Prepared {
                    store,
                    resumed: true,
                    set_aside_to: None,
                    grows: Vec::new(),
                });
            }
            old => {
                let change = old.map_or_else(
                    || Change::Refused(vec!["(no config recorded)".to_string()]),
                    |o| classify(&o, &config),
                );
                let changes = match change {
                    Change::Grows(grows) if !(force || restart) => {
                        store
                            .set_meta("config", &config.to_string())
                            .map_err(state_err)?;
                        return Ok(Prepared {
                            store,
                            resumed: true,
                            set_aside_to: None,
                            grows,
                        });
                    }
                    Change::Grows(_) => Vec::new(),
                    Change::Refused(changes) => changes,
                };
                if !(force || restart) {
                    return Err(EngineError::ChangedConfig {
                        name: exp.name.clone(),
                        dir: dir.to_path_buf(),
                        changes,
                    });
                }
                drop(store);
                set_aside_to = Some(set_aside(dir)?);
            }
        }
    }
    std::fs::create_dir_all(results.trials()).map_err(|source| EngineError::Io {
        what: format!("cannot create the results folder {}", dir.display()),
        source,
    })?;
    let store = Store::open(&db).map_err(state_err)?;
    store
        .set_meta("config", &config.to_string())
        .map_err(state_err)?;
    store
        .set_meta("created", &crate::state::now().to_string())
        .map_err(state_err)?;
    Ok(Prepared {
        store,
        resumed: false,
        set_aside_to,
        grows: Vec::new(),
    })
}

/// `dir` → `dir.old-<unix time>` (then `-2`, `-3`… when two `--force`
/// runs fall in the same second): old results are kept, never deleted.
fn set_aside(dir: &Path) -> Result<PathBuf> {
    let stamp = crate::state::now() as u64;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1;
    loop {
        let aside = match n {
            1 => dir.with_file_name(format!("{name}.old-{stamp}")),
            n => dir.with_file_name(format!("{name}.old-{stamp}-{n}")),
        };
        // Never onto something that exists: rename would replace an empty
        // folder, and fails on a full one.
        if std::fs::symlink_metadata(&aside).is_err() {
            std::fs::rename(dir, &aside).map_err(|source| EngineError::Io {
                what: format!("cannot move {} aside to {}", dir.display(), aside.display()),
                source,
            })?;
            return Ok(aside);
        }
        n += 1;
    }
}

/// Dotted paths where two configs differ (stages named, not numbered).
pub fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    match y.get(k) {
                        Some(vb) => walk(&join(k), va, vb, out),
                        None => out.push(join(k)),
                    }
                }
                out.extend(y.keys().filter(|k| !x.contains_key(*k)).map(|k| join(k)));
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    let label = va
                        .get("name")
                        .and_then(Value::as_str)
                        .map_or_else(|| i.to_string(), str::to_string);
                    walk(&join(&label), va, vb, out);
                }
            }
            _ if a != b => out.push(if path.is_empty() {
                "(everything)".into()
            } else {
                path.to_string()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    // Name the fields the user wrote: `run`, not its parsed parts; a param,
    // not the inside of its search spec.
    let mut named: Vec<String> = Vec::new();
    for path in out {
        let path = path.split(".run.").next().map_or(path.clone(), |p| {
            if p.len() < path.len() {
                format!("{p}.run")
            } else {
                path.clone()
            }
        });
        let path = path.split(".spec").next().unwrap_or(&path).to_string();
        if !named.contains(&path) {
            named.push(path);
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_stages_and_fields() {
        let stage = |lr: f64, run: &str| {
            json!({"name": "train", "run": {"source": run, "parts": [run]},
                   "params": [{"name": "lr", "spec": {"grid": [lr, 0.5]}}]})
        };
        let a = json!({"seed": 1, "pipeline": [stage(0.1, "a"), {"name": "eval"}]});
        let b = json!({"seed": 2, "pipeline": [stage(0.2, "b"), {"name": "eval"}]});
        assert_eq!(
            diff(&a, &b),
            vec!["seed", "pipeline.train.run", "pipeline.train.params.lr"]
        );
    }
}
