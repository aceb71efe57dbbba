//! Where flambe keeps what it knows locally: `$FLAMBE_HOME`, by default
//! `~/.flambe`. Clusters live in `clusters/NAME/` (state, keys, known_hosts).

use std::path::PathBuf;

/// Where flambe keeps what it knows here: `$FLAMBE_HOME`, else `~/.flambe`.
pub fn flambe_home() -> PathBuf {
    if let Some(home) = std::env::var_os("FLAMBE_HOME") {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".flambe")
}

pub fn clusters_dir() -> PathBuf {
    flambe_home().join("clusters")
}

/// The folder of the known cluster `name`.
pub fn cluster_dir(name: &str) -> PathBuf {
    clusters_dir().join(name)
}
