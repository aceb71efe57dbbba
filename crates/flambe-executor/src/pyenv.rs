//! The trials' Python environment: a venv with the runnable's extensions.
//!
//! Extensions (the untagged first document of a config file) are installed
//! into a venv under `ENVS/<key>/`, where the key is a hash of what they are:
//! each name and source, and for a local folder the content of its files.
//! Two experiments with different extensions therefore never share (or
//! clobber) an environment, an unchanged rerun finds its venv ready and
//! installs nothing, and one changed file makes a new key and a fresh
//! install. The same install script runs here (`bash`) and on every host of
//! a cluster (over SSH), so a host installs exactly what a local run would.
//!
//! The venv sees the host's own packages (`--system-site-packages`: a
//! machine image's torch stays usable) with the extensions first. Local
//! folders are copied into the venv and installed from there with plain
//! `pip install` (build isolation and all, as by hand), so the user's folder
//! gets no `build/` or `*.egg-info`. pip's own configuration applies (index,
//! `find-links`, `no-index`: `pip.conf` or `PIP_*` variables), which is how
//! hosts without network install from a wheel folder.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One extension as the install script sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// The import name (or the folder's name).
    pub name: String,
    /// Where pip gets it.
    pub source: PackageSource,
}

/// What pip installs a package from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageSource {
    /// A folder on the machine that installs (uploaded there first when it
    /// is a cluster host).
    Folder(PathBuf),
    /// Anything pip takes as a requirement: `transformers==4.46.0`,
    /// `git+https://…@rev`.
    Requirement(String),
}

/// Files that never count as a folder's content: what builds and
/// interpreters leave behind.
const IGNORED: &[&str] = &["__pycache__", ".git", "build", "dist", ".eggs"];

fn ignored(name: &str) -> bool {
    IGNORED.contains(&name) || name.ends_with(".egg-info") || name.ends_with(".pyc")
}

/// A hash of a folder's files (relative paths and bytes), the same wherever
/// the folder lives.
pub fn folder_hash(root: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if ignored(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        let bytes = std::fs::read(&file)?;
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment's key: 16 hex digits of a hash of every package's name,
/// source kind, requirement or folder content. Folder paths do not count, so
/// an uploaded copy has the key of the original.
pub fn env_key(packages: &[Package]) -> Result<String, EnvError> {
    let mut hash = Sha256::new();
    for p in packages {
        hash.update(p.name.as_bytes());
        hash.update([0]);
        match &p.source {
            PackageSource::Folder(dir) => {
                hash.update(b"folder\0");
                let content = folder_hash(dir).map_err(|source| EnvError::Folder {
                    path: dir.clone(),
                    source,
                })?;
                hash.update(content.as_bytes());
            }
            PackageSource::Requirement(r) => {
                hash.update(b"requirement\0");
                hash.update(r.as_bytes());
            }
        }
        hash.update([0]);
    }
    Ok(hex(&hash.finalize())[..16].to_string())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Lines the install script prints for whoever runs it.
pub const READY: &str = "@@flambe-env:ready";
pub const INSTALLED: &str = "@@flambe-env:installed";
pub const FAILED: &str = "@@flambe-env:failed ";

/// The bash script that makes `envs/key` ready: nothing when it already is
/// (prints [`READY`]), else a fresh venv with every package (prints
/// [`INSTALLED`]); on a failure it prints [`FAILED`]`NAME` and the end of
/// pip's output, and exits 3. `envs` may start with `~/`. Concurrent runs
/// for the same key wait for each other (flock).
pub fn install_script(envs: &str, key: &str, packages: &[Package]) -> String {
    let envs = match envs.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
        None => sh_quote(envs),
    };
    let mut s = format!(
        "set -u\nmkdir -p {envs}\nENV={envs}/{key}\nexec 9>\"$ENV.lock\"\nflock 9\n\
         if [ -f \"$ENV/.ready\" ]; then echo {READY}; exit 0; fi\n\
         rm -rf \"$ENV\"\n\
         if ! out=$(python3 -m venv --system-site-packages \"$ENV\" 2>&1); then echo '{FAILED}(venv)'; echo \"$out\" | tail -20; exit 3; fi\n\
         pip_() {{ \"$ENV/bin/pip\" --no-input --disable-pip-version-check \"$@\"; }}\n"
    );
    for p in packages {
        let name = sh_quote(&p.name);
        let install = match &p.source {
            PackageSource::Folder(dir) => format!(
                "mkdir -p \"$ENV/src/\"{name} && cp -R {src} \"$ENV/src/\"{name} && pip_ install \"$ENV/src/\"{name}",
                src = sh_quote(&format!("{}/.", dir.display()))
            ),
            PackageSource::Requirement(r) => format!("pip_ install {}", sh_quote(r)),
        };
        s.push_str(&format!(
            "if ! out=$({install} 2>&1); then echo '{FAILED}'{name}; echo \"$out\" | grep -v '^ *$' | tail -20; exit 3; fi\n"
        ));
    }
    s.push_str(
        "\"$ENV/bin/pip\" list --local --format=json --disable-pip-version-check > \"$ENV/packages.json\" 2>/dev/null || echo '[]' > \"$ENV/packages.json\"\n",
    );
    s.push_str(&format!("touch \"$ENV/.ready\"\necho {INSTALLED}\n"));
    s
}

/// What running the install script said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The venv was there already: nothing installed.
    Ready,
    /// The venv was made now.
    Installed,
    /// `name` (or `(venv)`) failed; `error` is the end of its output.
    Failed {
        /// The package that failed (or `(venv)`).
        name: String,
        /// The end of its output.
        error: String,
    },
}

/// Read the script's stdout.
pub fn parse_outcome(stdout: &str) -> InstallOutcome {
    if stdout.lines().any(|l| l == READY) {
        return InstallOutcome::Ready;
    }
    if stdout.lines().any(|l| l == INSTALLED) {
        return InstallOutcome::Installed;
    }
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(FAILED));
    match lines.next() {
        Some(first) => InstallOutcome::Failed {
            name: first.trim_start_matches(FAILED).to_string(),
            error: lines.collect::<Vec<_>>().join("\n"),
        },
        None => InstallOutcome::Failed {
            name: "(install script)".into(),
            error: stdout.trim().to_string(),
        },
    }
}

/// A ready environment on this machine.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The venv's folder.
    pub dir: PathBuf,
    /// What it holds, hashed: the folder's name.
    pub key: String,
    /// True when this call installed it (false: it was ready).
    pub installed: bool,
    /// `pip list --local` of the venv: what was installed, with versions.
    pub packages: serde_json::Value,
    /// The extensions as given.
    pub extensions: Vec<Package>,
}

impl PythonEnv {
    /// What the results keep (`extensions.json`): the extensions as given
    /// and what they resolved to, with versions.
    pub fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "env": self.dir,
            "key": self.key,
            "extensions": self.extensions,
            "installed": self.packages,
        })
    }

    /// The environment a trial gets on top of its own.
    pub fn trial_env(&self) -> Vec<(String, String)> {
        vec![("VIRTUAL_ENV".into(), self.dir.display().to_string())]
    }

    /// Its `bin` folder, put first on trials' PATH.
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
}

/// Why an environment could not be made here.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] message is its documentation
pub enum EnvError {
    #[error("cannot read extension folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run the install script: {0}")]
    Spawn(std::io::Error),
    #[error("extension `{name}` failed to install here:\n{error}")]
    Failed { name: String, error: String },
}

/// Make (or find) the environment for `packages` under `envs` here.
pub fn ensure_here(envs: &Path, packages_given: &[Package]) -> Result<PythonEnv, EnvError> {
    let key = env_key(packages_given)?;
    let script = install_script(&envs.display().to_string(), &key, packages_given);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(EnvError::Spawn)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed = match parse_outcome(&stdout) {
        InstallOutcome::Ready => false,
        InstallOutcome::Installed => true,
        InstallOutcome::Failed { name, error } => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(EnvError::Failed {
                name,
                error: format!("{error}{}", stderr.trim()),
            });
        }
    };
    let dir = envs.join(&key);
    let packages = std::fs::read_to_string(dir.join("packages.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok(PythonEnv {
        dir,
        key,
        installed,
        packages,
        extensions: packages_given.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_content_not_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("pkg/__pycache__")).unwrap();
            std::fs::write(d.join("pkg/m.py"), "X = 1\n").unwrap();
        }
        std::fs::write(b.path().join("pkg/__pycache__/m.pyc"), "junk").unwrap();
        let pkgs = |d: &Path| {
            vec![Package {
                name: "m".into(),
                source: PackageSource::Folder(d.join("pkg")),
            }]
        };
        assert_eq!(
            env_key(&pkgs(a.path())).unwrap(),
            env_key(&pkgs(b.path())).unwrap()
        );
        std::fs::write(b.path().join("pkg/m.py"), "X = 2\n").unwrap();
        assert_ne!(
            env_key(&pkgs(a.path())).unwrap(),
            env_key(&pkgs(b.path())).unwrap()
        );
    }

    #[test]
    fn outcomes_are_read_from_the_script_output() {
        assert_eq!(parse_outcome(&format!("{READY}\n")), InstallOutcome::Ready);
        assert_eq!(
            parse_outcome(&format!("{FAILED}my_models\nERROR: boom\n")),
            InstallOutcome::Failed {
                name: "my_models".into(),
                error: "ERROR: boom".into()
            }
        );
    }
}
