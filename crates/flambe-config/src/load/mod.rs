//! From YAML nodes to typed runnables, validating as it goes: the file and
//! the document here, with what every runnable shares (names, paths,
//! resources, env, cpus/gpus, timeouts); `experiment` decodes experiments
//! and scripts, `clusters` the cluster runnables.

mod clusters;
mod custom;
pub use custom::{PathStep, field_error, parse_field_path, plugin_program_name};
mod experiment;
mod references;
mod search;

use crate::checks;
use crate::decode::{self, Fields, closest, type_error};
use crate::error::{ConfigError, Source};
use crate::model::*;
use crate::paths::{ExpandError, expand_path};
use crate::template::is_word;
use crate::yaml::{Node, NodeKind, Pos, Scalar, parse_documents};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Config files larger than this are refused before parsing: a flambe config
/// is a page of YAML, and data belongs in `resources`.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub const RUNNABLE_TAGS: &[&str] = &[
    "!Experiment",
    "!Script",
    "!SSHCluster",
    "!AWSCluster",
    "!CommandCluster",
];
pub const PARAM_TAGS: &[&str] = &["!g", "!s", "!c", "!u", "!lu", "!i"];

/// Where environment variables come from (the process, or a test's map).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Read and load a config file, expanding paths with the process environment.
pub fn load_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = read_text(path)?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError::whole_file(path, format!("cannot read config file: {e}"))
            .hint("check the path; flambe takes a YAML file such as `experiment.yaml`")
    })?;
    if meta.is_dir() {
        return Err(ConfigError::whole_file(
            path,
            "is a directory, not a config file".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::whole_file(
            path,
            format!(
                "config file is {:.1} MB, more than the {} KiB a flambe config may be",
                meta.len() as f64 / 1e6,
                MAX_FILE_BYTES / 1024
            ),
        )
        .hint("keep data out of the config: point to it with `resources:`"));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read config file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let src = Source::new(path, &before);
        src.error_at(
            Pos { line, col },
            1,
            "the file is not valid UTF-8 text".to_string(),
        )
        .expected("a UTF-8 encoded YAML file")
    })
}

/// Load a config from text; `path` names it in errors and anchors relative paths.
pub fn load_str(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<ConfigFile, ConfigError> {
    let src = Source::new(path, text);
    let docs = parse_documents(&src)?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let cx = Cx {
        src: &src,
        base: &base,
        env,
    };
    let (extensions, runnable_node) = match docs.as_slice() {
        [] => {
            return Err(
                ConfigError::whole_file(path, "the config file is empty".into())
                    .expected(format!("one runnable, tagged {}", RUNNABLE_TAGS.join(", ")))
                    .hint("see examples/quickstart.yaml for a complete experiment"),
            );
        }
        [runnable] => (Vec::new(), runnable),
        [ext, runnable] => (cx.extensions(ext)?, runnable),
        [_, _, extra, ..] => {
            return Err(src
                .error_at(
                    extra.pos,
                    extra.width,
                    "more than two YAML documents in one file".into(),
                )
                .expected("an optional extensions document, then one runnable"));
        }
    };
    let runnable = cx.runnable(runnable_node)?;
    Ok(ConfigFile {
        path: path.to_path_buf(),
        extensions,
        runnable,
    })
}

/// Everything the decoders need: the source, the folder relative paths are
/// against, and the environment for `$VAR`.
struct Cx<'a> {
    src: &'a Source,
    base: &'a Path,
    env: EnvLookup<'a>,
}

impl Cx<'_> {
    fn err(&self, node: &Node, message: String) -> ConfigError {
        self.src.error_at(node.pos, node.width, message)
    }

    fn runnable(&self, node: &Node) -> Result<Runnable, ConfigError> {
        let Some(tag) = node.tag.as_deref() else {
            return Err(self
                .err(node, "the runnable has no tag".into())
                .expected(format!(
                    "the document to start with one of {}",
                    RUNNABLE_TAGS.join(", ")
                ))
                .hint("write the tag on the first line, e.g. `!Experiment`"));
        };
        match tag {
            "!Experiment" => self.experiment(node).map(Runnable::Experiment),
            "!Script" => self.script(node).map(Runnable::Script),
            "!SSHCluster" => self.ssh_cluster(node).map(Runnable::SshCluster),
            "!AWSCluster" => self.aws_cluster(node).map(Runnable::AwsCluster),
            "!CommandCluster" => self
                .custom_cluster(node, tag, None)
                .map(Runnable::CustomCluster),
            other if other.ends_with("Cluster") => self
                .plugin_cluster(node, other)
                .map(Runnable::CustomCluster),
            other => Err(self.unknown_tag(node, other, "runnable", RUNNABLE_TAGS)),
        }
    }

    fn unknown_tag(&self, node: &Node, tag: &str, what: &str, known: &[&str]) -> ConfigError {
        let mut err = self
            .src
            .error_at(
                node.pos,
                tag.chars().count(),
                format!("unknown {what} tag `{tag}`"),
            )
            .expected(format!("one of {}", known.join(", ")));
        if let Some(close) = closest(tag, known) {
            err = err.hint(format!("did you mean `{close}`?"));
        }
        err
    }

    fn expect_tag(&self, node: &Node, tag: &str, what: &str) -> Result<(), ConfigError> {
        match node.tag.as_deref() {
            Some(t) if t == tag => Ok(()),
            Some(other) => Err(self.unknown_tag(node, other, what, &[tag])),
            None => Err(self
                .err(node, format!("{what} must be tagged `{tag}`"))
                .expected(format!("`{tag}` before the mapping"))),
        }
    }

    fn name(&self, f: &mut Fields<'_>) -> Result<String, ConfigError> {
        let node = f.required("name", "a name of letters, digits, `_`, `-` or `.`")?;
        let name = decode::nonempty_string(self.src, node, "`name`")?;
        let ok = name.len() <= 63
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(self
                .err(node, format!("`{name}` is not a valid name"))
                .expected(
                    "1 to 63 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
                )
                .hint("the name becomes a folder and a cloud tag, so it must be plain"));
        }
        Ok(name)
    }

    fn path(&self, node: &Node, what: &str) -> Result<PathBuf, ConfigError> {
        let raw = decode::nonempty_string(self.src, node, what)?;
        self.expand(node, &raw, what)
    }

    fn expand(&self, node: &Node, raw: &str, what: &str) -> Result<PathBuf, ConfigError> {
        expand_path(raw, self.base, self.env).map_err(|e| match e {
            ExpandError::UnsetVariable(var) => self
                .err(
                    node,
                    format!("{what} uses the environment variable `{var}`, which is not set"),
                )
                .hint(format!(
                    "export {var}=... before running flambe, or write the path out"
                )),
            ExpandError::NoHome => {
                self.err(node, format!("{what} starts with `~` but HOME is not set"))
            }
        })
    }

    // ----- extensions -----------------------------------------------------

    fn extensions(&self, node: &Node) -> Result<Vec<Extension>, ConfigError> {
        if let Some(tag) = &node.tag {
            return Err(self
                .src
                .error_at(node.pos, tag.chars().count(), format!("the first of two documents is tagged `{tag}`"))
                .expected("an untagged extensions document (names mapped to packages), then the tagged runnable"));
        }
        decode::entries(self.src, node, "the extensions document")?
            .into_iter()
            .map(|(name, _, value)| {
                let spec =
                    decode::nonempty_string(self.src, value, &format!("extension `{name}`"))?;
                let source = if spec.starts_with("git+")
                    || spec.starts_with("git@")
                    || spec.contains(".git@")
                    || spec.ends_with(".git")
                {
                    ExtensionSource::Git(spec)
                } else if spec.starts_with('.') || spec.starts_with('/') || spec.starts_with('~') {
                    ExtensionSource::LocalFolder(self.expand(
                        value,
                        &spec,
                        &format!("extension `{name}`"),
                    )?)
                } else {
                    ExtensionSource::Pip(spec)
                };
                Ok(Extension { name, source })
            })
            .collect()
    }

    // ----- shared pieces ---------------------------------------------------

    fn resources(&self, f: &mut Fields<'_>) -> Result<Vec<Resource>, ConfigError> {
        let Some(node) = f.optional("resources") else {
            return Ok(Vec::new());
        };
        decode::entries(self.src, node, "`resources`")?
            .into_iter()
            .map(|(name, key, value)| {
                self.word(key, &name, "resource")?;
                let what = format!("resource `{name}`");
                let location = match value.tag.as_deref() {
                    None => {
                        let path = self.path(value, &what)?;
                        checks::existing_path(self.src, value, &what, &path)?;
                        ResourceLocation::Local(path)
                    }
                    Some("!cluster") => {
                        let NodeKind::Scalar { value: path, .. } = &value.kind else {
                            return Err(type_error(
                                self.src,
                                value,
                                &what,
                                "`!cluster /path/on/the/hosts`",
                            ));
                        };
                        if !path.starts_with('/') && !path.starts_with('~') {
                            return Err(self
                                .err(
                                    value,
                                    format!(
                                        "{what}: `!cluster` paths must be absolute on the hosts"
                                    ),
                                )
                                .expected("a path starting with `/` or `~`"));
                        }
                        ResourceLocation::Cluster(path.clone())
                    }
                    Some(other) => {
                        return Err(self.unknown_tag(value, other, "resource", &["!cluster"]));
                    }
                };
                Ok(Resource { name, location })
            })
            .collect()
    }

    fn word(&self, key: &Node, name: &str, what: &str) -> Result<(), ConfigError> {
        if is_word(name) {
            Ok(())
        } else {
            Err(self
                .err(key, format!("`{name}` is not a valid {what} name"))
                .expected("a letter or `_`, then letters, digits, `_` or `-`"))
        }
    }

    fn env(&self, f: &mut Fields<'_>) -> Result<Vec<EnvVar>, ConfigError> {
        let Some(node) = f.optional("env") else {
            return Ok(Vec::new());
        };
        decode::entries(self.src, node, "`env`")?
            .into_iter()
            .map(|(name, key, value)| {
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(self
                        .err(
                            key,
                            format!("`{name}` is not a valid environment variable name"),
                        )
                        .expected("letters, digits and `_`, not starting with a digit"));
                }
                let value = match value.tag.as_deref() {
                    Some("!env") => EnvValue::FromEnv(decode::nonempty_string(
                        self.src,
                        &untagged(value),
                        &format!("`!env` of `{name}`"),
                    )?),
                    None | Some("!!str") => EnvValue::Literal(decode::string(
                        self.src,
                        value,
                        &format!("env `{name}`"),
                    )?),
                    Some(other) => return Err(self.unknown_tag(value, other, "env", &["!env"])),
                };
                Ok(EnvVar { name, value })
            })
            .collect()
    }

    fn cpus(&self, f: &mut Fields<'_>) -> Result<f64, ConfigError> {
        match f.optional("cpus") {
            None => Ok(1.0),
            Some(node) => {
                let cpus = decode::number(self.src, node, "`cpus`")?;
                if cpus <= 0.0 || cpus > 4096.0 {
                    return Err(self
                        .err(node, "`cpus` is out of range".to_string())
                        .expected("a number of CPUs per trial above 0 and at most 4096 (fractions allowed)"));
                }
                Ok(cpus)
            }
        }
    }

    fn gpus(&self, f: &mut Fields<'_>) -> Result<u32, ConfigError> {
        match f.optional("gpus") {
            None => Ok(0),
            Some(node) => Ok(decode::int(self.src, node, "`gpus`", 0, 1024)? as u32),
        }
    }

    fn timeout(&self, f: &mut Fields<'_>) -> Result<Option<Duration>, ConfigError> {
        let Some(node) = f.optional("timeout") else {
            return Ok(None);
        };
        let expected = "seconds, or a duration such as `90s`, `30m`, `2h` or `1h30m`";
        let seconds = match decode::scalar(self.src, node, "`timeout`")? {
            Scalar::Int(i) => Some(i as f64),
            Scalar::Float(f) => Some(f),
            Scalar::Str(s) => parse_duration(s),
            _ => None,
        };
        let Some(seconds) = seconds else {
            return Err(type_error(self.src, node, "`timeout`", expected));
        };
        // NaN fails both comparisons, so it lands here too.
        if !(seconds > 0.0 && seconds <= MAX_TIMEOUT_SECONDS) {
            return Err(self
                .err(node, "`timeout` is out of range".to_string())
                .expected(format!(
                    "a duration above 0 and at most 365 days ({MAX_TIMEOUT_SECONDS} seconds)"
                )));
        }
        Ok(Some(Duration::from_secs_f64(seconds)))
    }
}

/// Where `needle` first appears in the source at or after `from`.
fn locate(src: &Source, from: Pos, needle: &str) -> Option<Pos> {
    for (i, line) in src
        .text
        .lines()
        .enumerate()
        .skip(from.line.saturating_sub(1))
    {
        let skip_chars = if i + 1 == from.line { from.col - 1 } else { 0 };
        let skip_bytes = line
            .char_indices()
            .nth(skip_chars)
            .map_or(line.len(), |(b, _)| b);
        if let Some(found) = line[skip_bytes..].find(needle) {
            let col = line[..skip_bytes + found].chars().count() + 1;
            return Some(Pos { line: i + 1, col });
        }
    }
    None
}

fn field_node<'n>(map: &'n Node, key: &str) -> Option<&'n Node> {
    match &map.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if value == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn untagged(node: &Node) -> Node {
    Node {
        tag: None,
        ..node.clone()
    }
}

/// `90`, `90s`, `30m`, `2h`, `1h30m`, `1.5h` → seconds.
/// The longest trial timeout: a year. Anything longer is a typo, and a
/// value past `Duration`'s range would not be representable at all.
const MAX_TIMEOUT_SECONDS: f64 = 365.0 * 86400.0;

pub fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * unit;
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() {
        if saw_unit {
            return None;
        }
        total += number.parse::<f64>().ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90.0));
        assert_eq!(parse_duration("30m"), Some(1800.0));
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("1.5h"), Some(5400.0));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5m3"), None);
    }
}
