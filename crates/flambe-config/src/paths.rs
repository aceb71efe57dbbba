//! `~`, `$VAR` and `${VAR}` in paths, and relative paths made absolute
//! against the folder of the config file (as docker compose and cargo do), so
//! that `flambe some/dir/exp.yaml` means the same from any working directory.

use std::path::{Path, PathBuf};

/// Why a path could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    UnsetVariable(String),
    NoHome,
}

/// Expand `~` (at the start) and environment variables in `raw`.
pub fn expand_vars(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    if rest == "~" || rest.starts_with("~/") {
        out.push_str(&env("HOME").ok_or(ExpandError::NoHome)?);
        rest = &rest[1..];
    }
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let len = after
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(after.len(), |(i, _)| i);
            (&after[..len], len)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&env(name).ok_or_else(|| ExpandError::UnsetVariable(name.to_string()))?);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Expand and make absolute against `base` (the config file's folder).
pub fn expand_path(
    raw: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ExpandError> {
    let expanded = PathBuf::from(expand_vars(raw, env)?);
    Ok(if expanded.is_absolute() {
        expanded
    } else {
        normalize(&base.join(expanded))
    })
}

/// Remove `.` and resolve `..` lexically (the path may not exist yet).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "DATA" => Some("/data".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_home_and_variables() {
        assert_eq!(expand_vars("~/x", &env).unwrap(), "/home/u/x");
        assert_eq!(expand_vars("$DATA/sst", &env).unwrap(), "/data/sst");
        assert_eq!(expand_vars("${DATA}x", &env).unwrap(), "/datax");
        assert_eq!(expand_vars("a$", &env).unwrap(), "a$");
        assert_eq!(
            expand_vars("$NOPE/x", &env),
            Err(ExpandError::UnsetVariable("NOPE".into()))
        );
    }

    #[test]
    fn relative_paths_are_against_the_config_folder() {
        let p = expand_path("./data/../runs", Path::new("/cfg"), &env).unwrap();
        assert_eq!(p, PathBuf::from("/cfg/runs"));
        assert_eq!(
            expand_path("/abs", Path::new("/cfg"), &env).unwrap(),
            PathBuf::from("/abs")
        );
    }
}
