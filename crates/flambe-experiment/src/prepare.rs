//! Opening a results folder for a run: resume it when the config is the
//! one recorded, refuse a changed one (naming what changed), or set the old
//! results aside (`--force`, a script's rerun). Never deletes anything.

use crate::error::EngineError;
use crate::extend::{Change, classify};
use crate::fingerprint::fingerprint;
use crate::layout::ResultsDir;
use crate::options::RunOptions;
use crate::state::Store;
use flambe_config::Experiment;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, EngineError>;

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
