//! # flambe-config: the YAML runnables
//!
//! A flambe config file holds one *runnable*, named by its tag: `!Experiment`,
//! `!Script`, `!SSHCluster` or `!AWSCluster`, optionally preceded by an
//! untagged *extensions* document (Flambé's layout).
//!
//! Loading goes in three steps, each in its own module:
//!
//! 1. `yaml` parses the text into a node tree that keeps every node's
//!    position and tag and refuses duplicate keys, excessive nesting and alias
//!    bombs (no recursion on input depth: hostile input cannot overflow).
//! 2. `load` decodes the tree into the typed structs of `model`, checking
//!    types, ranges, required and unknown fields, unknown tags, `reduce` against
//!    what a stage can produce, and `{placeholders}` (`template`) against the
//!    params, resources and earlier stages. `~` and `$VAR` expand in paths
//!    (`paths`); relative paths are taken against the config file's folder.
//! 3. Every failure is a [`ConfigError`]: file:line:column, the offending line
//!    quoted with a caret, what was expected, and a hint where one helps.
//!
//!    `checks` holds what a value is checked against outside the YAML:
//!    login names, key files, local paths a run reads.
//!
//! Nothing downstream re-validates: a loaded config is a valid config.
//!
//! Besides: `decode` holds the typed readers of YAML nodes `load` is made
//! of; `emit` writes a runnable back as plain YAML (the copy a cluster's
//! driver loads); `hint` is how every crate's errors carry what to do
//! about them (one renderer, in the CLI, prints them: [`Hint`]).
//!
//! `error` holds [`ConfigError`] and the [`Source`] it points into.
//!
//! Modules are private; what other crates use is re-exported here.

#![warn(missing_docs)]

mod checks;
mod decode;
mod emit;
mod error;
mod hint;
mod load;
mod model;
mod paths;
mod template;
mod yaml;

pub use emit::{experiment_yaml, extensions_yaml, script_yaml};
pub use error::{ConfigError, Source};
pub use hint::{Hint, Hinted, with_hint};
pub use load::{PathStep, field_error, load_file, load_str, parse_field_path, plugin_program_name};
pub use model::*;
pub use template::{Ref, Template, classify as classify_placeholder};
