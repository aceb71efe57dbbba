//! One driver per results folder.
//!
//! A driver holds an OS file lock (`flock`, through `File::try_lock`) for
//! its whole run on `save_path/.NAME.lock`, beside the results folder rather
//! than in it, because `--force` moves the folder aside. The lock file says
//! who holds it (pid, host, start time), so a second driver is refused with
//! those facts and how to follow the first. The kernel releases the lock
//! when its holder dies, however it dies: a dead driver's lock is simply
//! taken over, and recovery goes on as before.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who holds a results folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Unix seconds.
    pub started: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "experiment `{name}` is already running: driver pid {} on {} since {} (unix time {:.0}), on the results in {}",
        .holder.pid, .holder.host, since(.holder.started), .holder.started, .dir.display()
    )]
    Held {
        name: String,
        dir: PathBuf,
        holder: Holder,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn since(started: f64) -> String {
    let minutes = ((crate::state::now() - started) / 60.0).max(0.0);
    format!("{minutes:.0} minutes ago")
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ResultsLock {
    _file: File,
}

/// The lock file of experiment `name` whose results live in `dir`.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.with_file_name(format!(".{name}.lock"))
}

/// Take the lock of the results folder `dir`, or say who holds it.
pub fn acquire(dir: &Path, name: &str) -> Result<ResultsLock, LockError> {
    let path = lock_path(dir, name);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = serde_json::from_str(&text).unwrap_or(Holder {
                pid: 0,
                host: "an unknown host".to_string(),
                started: 0.0,
            });
            return Err(LockError::Held {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let me = Holder {
        pid: std::process::id(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "this host".to_string()),
        started: crate::state::now(),
    };
    let json = serde_json::to_vec(&me).unwrap_or_default();
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(&json).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(ResultsLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_facts() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("exp");
        let first = acquire(&results, "exp").unwrap();
        let err = acquire(&results, "exp").unwrap_err();
        let e = err.to_string();
        assert!(
            e.contains(&format!("driver pid {}", std::process::id())),
            "{e}"
        );
        use flambe_config::Hint;
        let hint = crate::EngineError::Lock(err).hint().unwrap_or_default();
        assert!(hint.contains("flambe site"), "{hint}");
        drop(first);
        acquire(&results, "exp").unwrap();
    }
}
