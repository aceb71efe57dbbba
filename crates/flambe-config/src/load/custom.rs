//! Custom clusters: `!CommandCluster` (the hosts come from shell commands
//! in the file) and plugins (`!FooCluster` is the executable
//! `flambe-cluster-foo` on `PATH`, the way cargo and git find
//! subcommands). Both take an `!SSHCluster`'s login fields; any other
//! field is the program's own, handed to it with the rest as JSON. What a
//! plugin thinks of its fields it says itself (`validate`, run by the
//! cluster crate), and `field_error` puts its answer at file:line:col.

use super::Cx;
use crate::decode::{self, Fields};
use crate::error::{ConfigError, Source};
use crate::model::*;
use crate::yaml::{Node, NodeKind, Scalar};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The fields flambe reads itself, on every custom cluster.
const LOGIN_FIELDS: &[&str] = &[
    "name",
    "username",
    "key",
    "use_public",
    "port",
    "setup_cmds",
];

/// The executable that serves `!FooCluster`: `flambe-cluster-foo`.
pub fn plugin_program_name(tag: &str) -> Option<String> {
    let stem = tag.strip_prefix('!')?.strip_suffix("Cluster")?;
    let ok = !stem.is_empty() && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| format!("flambe-cluster-{}", stem.to_ascii_lowercase()))
}

/// `program` on `PATH`, as an executable file.
pub fn find_on_path(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A YAML node as JSON, scalars resolved as the core schema reads them.
fn to_json(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar { value, plain } => match Scalar::resolve(value, *plain) {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::from(i),
            Scalar::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.to_string()),
        },
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (crate::yaml::key_text(k), to_json(v)))
                .collect(),
        ),
    }
}

impl Cx<'_> {
    pub(super) fn custom_cluster(
        &self,
        node: &Node,
        tag: &str,
        source: Option<HostSource>,
    ) -> Result<CustomCluster, ConfigError> {
        let what = format!("`{tag}`");
        let mut known: Vec<&str> = LOGIN_FIELDS.to_vec();
        if source.is_none() {
            known.extend(["up", "down", "status"]);
        }
        let mut f = Fields::new_open(self.src, node, what.as_str(), &known)?;
        let name = self.name(&mut f)?;
        let super::clusters::Login {
            username,
            key,
            use_public,
            port,
            setup_cmds,
        } = self.login(&mut f)?;
        let source = match source {
            Some(plugin) => plugin,
            None => {
                let command = |f: &mut Fields<'_>, key: &str, expected: &str| {
                    f.required(key, expected)
                        .and_then(|n| decode::nonempty_string(self.src, n, &format!("`{key}`")))
                };
                HostSource::Commands {
                    up: command(
                        &mut f,
                        "up",
                        "a command that makes or finds the hosts and prints them as JSON",
                    )?,
                    down: command(&mut f, "down", "a command that releases the hosts")?,
                    status: f
                        .optional("status")
                        .map(|n| decode::nonempty_string(self.src, n, "`status`"))
                        .transpose()?,
                }
            }
        };
        let Value::Object(fields) = to_json(node) else {
            return Err(decode::type_error(
                self.src,
                node,
                &what,
                "a mapping of fields",
            ));
        };
        Ok(CustomCluster {
            tag: tag.to_string(),
            name,
            source,
            username,
            key,
            use_public,
            port,
            setup_cmds,
            fields,
            dir: self.base.to_path_buf(),
            file: self.src.path.clone(),
        })
    }

    /// `!FooCluster`: the plugin `flambe-cluster-foo` on `PATH`, or the
    /// unknown-tag error with the executable it looked for.
    pub(super) fn plugin_cluster(
        &self,
        node: &Node,
        tag: &str,
    ) -> Result<CustomCluster, ConfigError> {
        let program = plugin_program_name(tag);
        let path = (self.env)("PATH");
        let found = program
            .as_deref()
            .and_then(|p| find_on_path(p, path.as_deref().map(std::ffi::OsStr::new)));
        match (program, found) {
            (Some(_), Some(program)) => {
                self.custom_cluster(node, tag, Some(HostSource::Plugin { program }))
            }
            (Some(program), None) => Err(self
                .unknown_tag(node, tag, "runnable", super::RUNNABLE_TAGS)
                .hint(format!(
                    "`{tag}` would be a cluster plugin: flambe looked for an executable `{program}` on PATH and found none; install the plugin (or put it on PATH), or use `!CommandCluster` with your own `up` and `down` commands"
                ))),
            (None, _) => Err(self.unknown_tag(node, tag, "runnable", super::RUNNABLE_TAGS)),
        }
    }
}

/// One step of a field path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    /// `.key`
    Key(String),
    /// `[i]`
    Index(usize),
}

/// `factories[0].cpus` or `nodes.2` as steps.
pub fn parse_field_path(path: &str) -> Vec<PathStep> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            match key.parse::<usize>() {
                Ok(i) => steps.push(PathStep::Index(i)),
                Err(_) => steps.push(PathStep::Key(key.to_string())),
            }
        }
        for index in rest.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse::<usize>() {
                steps.push(PathStep::Index(i));
            }
        }
    }
    steps
}

/// An error about the field at `path` (`factories[0].cpus`) of the config
/// file `file`, at its line and column, as flambe's own are: what a plugin
/// says of its fields. Where the path leads nowhere, at the deepest field
/// it reaches.
pub fn field_error(file: &Path, path: &str, message: String) -> ConfigError {
    let text = match super::read_text(file) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let src = Source::new(file, &text);
    let docs = match crate::yaml::parse_documents(&src) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let Some(mut node) = docs.last() else {
        return src.error_at(Default::default(), 1, message);
    };
    for step in parse_field_path(path) {
        let next = match (&node.kind, &step) {
            (NodeKind::Map(entries), PathStep::Key(key)) => entries
                .iter()
                .find(|(k, _)| crate::yaml::key_text(k) == *key)
                .map(|(_, v)| v),
            (NodeKind::Seq(items), PathStep::Index(i)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    src.error_at(node.pos, node.width.max(1), message)
}
