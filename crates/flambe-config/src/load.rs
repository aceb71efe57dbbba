//! From YAML nodes to typed runnables, validating as it goes.

use crate::checks;
use crate::decode::{self, Fields, closest, no_tag, type_error};
use crate::error::{ConfigError, Source};
use crate::model::*;
use crate::paths::{ExpandError, expand_path};
use crate::template::{BUILTINS, Ref, Template, classify, is_word};
use crate::yaml::{Node, NodeKind, Pos, Scalar, parse_documents};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Config files larger than this are refused before parsing: a flambe config
/// is a page of YAML, and data belongs in `resources`.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub const RUNNABLE_TAGS: &[&str] = &["!Experiment", "!Script", "!SSHCluster", "!AWSCluster"];
pub const PARAM_TAGS: &[&str] = &["!g", "!s", "!c", "!u", "!lu"];
const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

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

    // ----- !Experiment -----------------------------------------------------

    fn experiment(&self, node: &Node) -> Result<Experiment, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!Experiment`",
            &[
                "name",
                "save_path",
                "resources",
                "seed",
                "max_failures",
                "env",
                "devices",
                "pipeline",
            ],
        )?;
        let name = self.name(&mut f)?;
        let save_path = match f.optional("save_path") {
            Some(n) => self.path(n, "`save_path`")?,
            None => self.base.join("flambe-output"),
        };
        let resources = self.resources(&mut f)?;
        let seed = match f.optional("seed") {
            Some(n) => decode::int(self.src, n, "`seed`", 0, i64::MAX)? as u64,
            None => 0,
        };
        let max_failures = match f.optional("max_failures") {
            Some(n) => decode::int(self.src, n, "`max_failures`", 0, 1000)? as u32,
            None => 0,
        };
        let env = self.env(&mut f)?;
        let devices = match f.optional("devices") {
            Some(n) => self.devices(n)?,
            None => Devices::default(),
        };
        let pipeline_node = f.required("pipeline", "a mapping of stage names to `!Stage`")?;

        let mut pipeline = Vec::new();
        let stage_entries = decode::entries(self.src, pipeline_node, "`pipeline`")?;
        if stage_entries.is_empty() {
            return Err(self
                .err(pipeline_node, "`pipeline` has no stages".into())
                .expected("at least one `NAME: !Stage {run: ...}`"));
        }
        for (stage_name, key, value) in stage_entries {
            self.word(key, &stage_name, "stage")?;
            if BUILTINS.contains(&stage_name.as_str()) {
                return Err(self
                    .err(
                        key,
                        format!("`{stage_name}` is reserved and cannot name a stage"),
                    )
                    .expected(format!("a stage name other than {}", BUILTINS.join(", "))));
            }
            self.expect_tag(value, "!Stage", "a pipeline stage")?;
            pipeline.push((self.stage(&stage_name, value)?, value));
        }
        let experiment = Experiment {
            name,
            save_path,
            resources,
            seed,
            max_failures,
            env,
            pipeline: pipeline.iter().map(|(s, _)| s.clone()).collect(),
            devices,
        };
        self.check_pipeline(&experiment, &pipeline)?;
        Ok(experiment)
    }

    fn devices(&self, node: &Node) -> Result<Devices, ConfigError> {
        let mut f = Fields::new(self.src, node, "`devices`", &["cpus", "gpus"])?;
        let cpus = f.optional("cpus").map(|n| self.cpus_value(n)).transpose()?;
        let gpus = f
            .optional("gpus")
            .map(|n| decode::int(self.src, n, "`devices.gpus`", 0, 1024).map(|g| g as u32))
            .transpose()?;
        Ok(Devices { cpus, gpus })
    }

    fn cpus_value(&self, node: &Node) -> Result<f64, ConfigError> {
        let cpus = decode::number(self.src, node, "`devices.cpus`")?;
        if cpus <= 0.0 || cpus > 65_536.0 {
            return Err(self
                .err(node, "`devices.cpus` is out of range".to_string())
                .expected("a number of CPUs above 0 and at most 65536"));
        }
        Ok(cpus)
    }

    fn stage(&self, name: &str, node: &Node) -> Result<Stage, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            format!("stage `{name}`"),
            &[
                "run",
                "params",
                "samples",
                "cpus",
                "gpus",
                "metric",
                "mode",
                "reduce",
                "scheduler",
                "timeout",
                "env",
            ],
        )?;
        let run_node = f.required(
            "run",
            "the command to run, e.g. `python train.py --lr {lr}`",
        )?;
        let run = Template::parse(&decode::nonempty_string(self.src, run_node, "`run`")?);
        let params = match f.optional("params") {
            Some(n) => self.params(n)?,
            None => Vec::new(),
        };
        let samples = match f.optional("samples") {
            Some(n) => decode::int(self.src, n, "`samples`", 1, 1_000_000)? as u32,
            None => 1,
        };
        let cpus = self.cpus(&mut f)?;
        let gpus = self.gpus(&mut f)?;
        let metric_node = f.optional("metric");
        let metric = metric_node
            .map(|n| decode::nonempty_string(self.src, n, "`metric`"))
            .transpose()?;
        let mode_node = f.optional("mode");
        let mode = match mode_node {
            Some(n) => match decode::string(self.src, n, "`mode`")?.as_str() {
                "max" => Mode::Max,
                "min" => Mode::Min,
                other => {
                    return Err(self
                        .err(n, format!("`mode: {other}` is not a mode"))
                        .expected("`max` or `min`"));
                }
            },
            None => Mode::Max,
        };
        match (metric_node, mode_node) {
            (Some(m), None) => {
                return Err(self
                    .err(m, format!("stage `{name}` sets `metric` but not `mode`"))
                    .expected("`mode: max` (higher is better) or `mode: min` (lower is better)"));
            }
            (None, Some(m)) => {
                return Err(self
                    .err(m, format!("stage `{name}` sets `mode` but no `metric`"))
                    .expected("`metric: NAME`, the metric the trials report, next to `mode`"));
            }
            _ => {}
        }
        let reduce_node = f.optional("reduce");
        let reduce = reduce_node
            .map(|n| decode::int(self.src, n, "`reduce`", 1, i64::from(u32::MAX)).map(|r| r as u32))
            .transpose()?;
        if let (Some(n), None) = (reduce_node, &metric) {
            return Err(self
                .err(
                    n,
                    format!("stage `{name}` uses `reduce` without a `metric` to rank trials by"),
                )
                .expected("`metric:` and `mode:` in the same stage"));
        }
        let scheduler_node = f.optional("scheduler");
        let scheduler = scheduler_node.map(|n| self.scheduler(n)).transpose()?;
        if let (Some(n), None) = (scheduler_node, &metric) {
            return Err(self
                .err(
                    n,
                    format!(
                        "stage `{name}` uses a scheduler without a `metric` to compare trials by"
                    ),
                )
                .expected("`metric:` and `mode:` in the same stage"));
        }
        let timeout = self.timeout(&mut f)?;
        let env = self.env(&mut f)?;
        let stage = Stage {
            name: name.to_string(),
            run,
            params,
            samples,
            cpus,
            gpus,
            metric,
            mode,
            reduce,
            scheduler,
            timeout,
            env,
        };
        if stage.variant_count() > 1_000_000 {
            return Err(self
                .err(
                    node,
                    format!("stage `{name}` expands to {} trials", stage.variant_count()),
                )
                .expected("at most 1,000,000 trials per stage")
                .hint("use `!c`/`!u`/`!lu` with `samples:` instead of large grids"));
        }
        Ok(stage)
    }

    fn params(&self, node: &Node) -> Result<Vec<Param>, ConfigError> {
        decode::entries(self.src, node, "`params`")?
            .into_iter()
            .map(|(name, key, value)| {
                self.word(key, &name, "parameter")?;
                if BUILTINS.contains(&name.as_str()) {
                    return Err(self
                        .err(
                            key,
                            format!("`{name}` is reserved and cannot name a parameter"),
                        )
                        .expected(format!(
                            "a parameter name other than {}",
                            BUILTINS.join(", ")
                        )));
                }
                let spec = self.param_spec(&name, value)?;
                Ok(Param { name, spec })
            })
            .collect()
    }

    fn param_spec(&self, name: &str, node: &Node) -> Result<ParamSpec, ConfigError> {
        let what = format!("parameter `{name}`");
        let Some(tag) = node.tag.as_deref() else {
            return Ok(ParamSpec::Fixed(self.value(node, &what)?));
        };
        let items = || -> Result<Vec<&Node>, ConfigError> {
            let items = decode::seq(self.src, node, &what)
                .map_err(|e| e.expected(format!("`{tag} [...]`, a list")))?;
            Ok(items.iter().collect())
        };
        let bounds = |items: &[&Node]| -> Result<(f64, f64), ConfigError> {
            let low = decode::number(self.src, items[0], &format!("the low bound of {what}"))?;
            let high = decode::number(self.src, items[1], &format!("the high bound of {what}"))?;
            if !(high - low).is_finite() {
                return Err(self
                    .err(
                        node,
                        format!("{what}: `{tag} [{low}, {high}]` is too wide to sample"),
                    )
                    .expected("bounds whose difference is a finite number"));
            }
            if low >= high {
                return Err(self
                    .err(
                        node,
                        format!("{what}: `{tag} [{low}, {high}]` has low >= high"),
                    )
                    .expected("`[low, high]` with low < high"));
            }
            Ok((low, high))
        };
        match tag {
            "!g" | "!c" => {
                let items = items()?;
                if items.is_empty() {
                    return Err(self
                        .err(node, format!("{what}: `{tag} []` has no values"))
                        .expected("at least one value"));
                }
                let values = items
                    .iter()
                    .map(|n| self.value(n, &what))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if tag == "!g" {
                    ParamSpec::Grid(values)
                } else {
                    ParamSpec::Choice(values)
                })
            }
            "!s" => {
                let items = items()?;
                if items.len() != 3 {
                    return Err(self
                        .err(
                            node,
                            format!("{what}: `!s` takes 3 values, found {}", items.len()),
                        )
                        .expected("`!s [low, high, k]`: k samples between low and high"));
                }
                let (low, high) = bounds(&items)?;
                let k = decode::int(
                    self.src,
                    items[2],
                    &format!("k (the sample count) of {what}"),
                    1,
                    100_000,
                )?;
                let integer = [items[0], items[1]]
                    .iter()
                    .all(|n| matches!(decode::scalar(self.src, n, &what), Ok(Scalar::Int(_))));
                Ok(ParamSpec::Sample {
                    low,
                    high,
                    k: k as u32,
                    integer,
                })
            }
            "!u" | "!lu" => {
                let items = items()?;
                if items.len() != 2 {
                    return Err(self
                        .err(
                            node,
                            format!("{what}: `{tag}` takes 2 values, found {}", items.len()),
                        )
                        .expected(format!("`{tag} [low, high]`")));
                }
                let (low, high) = bounds(&items)?;
                if tag == "!lu" {
                    if low <= 0.0 {
                        return Err(self
                            .err(
                                node,
                                format!("{what}: `!lu` needs a low bound above 0, found {low}"),
                            )
                            .expected("`!lu [low, high]` with 0 < low < high (log-uniform)"));
                    }
                    Ok(ParamSpec::LogUniform { low, high })
                } else {
                    Ok(ParamSpec::Uniform { low, high })
                }
            }
            other => Err(self.unknown_tag(node, other, "search", PARAM_TAGS)),
        }
    }

    /// A plain YAML value (no tags inside) as JSON, for parameters.
    fn value(&self, node: &Node, what: &str) -> Result<Value, ConfigError> {
        no_tag(self.src, node, what)?;
        Ok(match &node.kind {
            NodeKind::Scalar { value, plain } => {
                match Scalar::resolve(value, *plain && node.tag.is_none()) {
                    Scalar::Null => Value::Null,
                    Scalar::Bool(b) => Value::Bool(b),
                    Scalar::Int(i) => Value::from(i),
                    Scalar::Float(f) => serde_json::Number::from_f64(f)
                        .map(Value::Number)
                        .ok_or_else(|| type_error(self.src, node, what, "a finite number"))?,
                    Scalar::Str(s) => Value::String(s.to_string()),
                }
            }
            NodeKind::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|n| self.value(n, what))
                    .collect::<Result<_, _>>()?,
            ),
            NodeKind::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(decode::string(self.src, k, what)?, self.value(v, what)?);
                }
                Value::Object(map)
            }
        })
    }

    fn scheduler(&self, node: &Node) -> Result<Scheduler, ConfigError> {
        match node.tag.as_deref() {
            Some("!ASHA") => {}
            Some(other) => return Err(self.unknown_tag(node, other, "scheduler", &["!ASHA"])),
            None => {
                return Err(self
                    .err(node, "`scheduler` needs a tag".into())
                    .expected("`!ASHA {max_t: 20, grace_period: 2, reduction_factor: 3}`"));
            }
        }
        let mut f = Fields::new(
            self.src,
            node,
            "`!ASHA`",
            &["max_t", "grace_period", "reduction_factor"],
        )?;
        let mut get = |key: &str, min: i64, default: u64| -> Result<u64, ConfigError> {
            Ok(match f.optional(key) {
                Some(n) => {
                    decode::int(self.src, n, &format!("`{key}`"), min, 1_000_000_000)? as u64
                }
                None => default,
            })
        };
        let max_t = get("max_t", 1, 100)?;
        let grace_period = get("grace_period", 1, 1)?;
        let reduction_factor = get("reduction_factor", 2, 4)?;
        if grace_period > max_t {
            return Err(self
                .err(
                    node,
                    format!("`!ASHA`: grace_period {grace_period} is above max_t {max_t}"),
                )
                .expected("grace_period <= max_t"));
        }
        Ok(Scheduler::Asha {
            max_t,
            grace_period,
            reduction_factor,
        })
    }

    /// Cross-stage checks: placeholders resolve, and `reduce` fits.
    fn check_pipeline(
        &self,
        exp: &Experiment,
        stages: &[(Stage, &Node)],
    ) -> Result<(), ConfigError> {
        let mut parents: u64 = 1;
        for (index, (stage, node)) in stages.iter().enumerate() {
            let earlier = &exp.pipeline[..index];
            for (path, _) in stage.run.references() {
                if let Err(message) = check_reference(exp, stage, earlier, path) {
                    let needle = format!("{{{}}}", path.join("."));
                    let (pos, width) = locate(self.src, node.pos, &needle)
                        .map(|p| (p, needle.chars().count()))
                        .unwrap_or((node.pos, 1));
                    let mut err = self.src.error_at(pos, width, message.0).expected(message.1);
                    if let Some(hint) = message.2 {
                        err = err.hint(hint);
                    }
                    return Err(err);
                }
            }
            let produced = parents.saturating_mul(stage.variant_count());
            if let Some(reduce) = stage.reduce
                && u64::from(reduce) > produced
            {
                let reduce_node = field_node(node, "reduce").unwrap_or(node);
                return Err(self
                        .err(
                            reduce_node,
                            format!("`reduce: {reduce}` keeps more trials than stage `{}` runs ({produced})", stage.name),
                        )
                        .expected(format!("a number from 1 to {produced}")));
            }
            parents = stage.reduce.map_or(produced, u64::from);
        }
        Ok(())
    }

    // ----- !Script ---------------------------------------------------------

    fn script(&self, node: &Node) -> Result<Script, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!Script`",
            &[
                "name",
                "run",
                "save_path",
                "resources",
                "env",
                "cpus",
                "gpus",
                "timeout",
            ],
        )?;
        let name = self.name(&mut f)?;
        let run_node = f.required("run", "the command to run")?;
        let run = Template::parse(&decode::nonempty_string(self.src, run_node, "`run`")?);
        let save_path = match f.optional("save_path") {
            Some(n) => self.path(n, "`save_path`")?,
            None => self.base.join("flambe-output"),
        };
        let resources = self.resources(&mut f)?;
        let env = self.env(&mut f)?;
        let cpus = self.cpus(&mut f)?;
        let gpus = self.gpus(&mut f)?;
        let timeout = self.timeout(&mut f)?;
        for (path, _) in run.references() {
            let ok = match classify(path) {
                Ref::Out | Ref::Trial => true,
                Ref::Resource(r) => resources.iter().any(|x| x.name == r),
                _ => false,
            };
            if !ok {
                let needle = format!("{{{}}}", path.join("."));
                let pos = locate(self.src, run_node.pos, &needle).unwrap_or(run_node.pos);
                return Err(self
                    .src
                    .error_at(
                        pos,
                        needle.chars().count(),
                        format!("`{needle}` matches nothing a script has"),
                    )
                    .expected("{out}, {trial} or {resources.NAME} of a declared resource"));
            }
        }
        Ok(Script {
            name,
            run,
            save_path,
            resources,
            env,
            cpus,
            gpus,
            timeout,
        })
    }

    // ----- clusters --------------------------------------------------------

    fn address(&self, node: &Node, what: &str) -> Result<HostAddr, ConfigError> {
        no_tag(self.src, node, what)?;
        let (public, private) = match &node.kind {
            NodeKind::Seq(items) if items.len() == 2 => (
                self.host(&items[0], &format!("the public address of {what}"))?,
                self.host(&items[1], &format!("the private address of {what}"))?,
            ),
            NodeKind::Seq(items) => {
                return Err(self
                    .err(
                        node,
                        format!("{what} is a list of {} addresses", items.len()),
                    )
                    .expected("one address, or a `[public, private]` pair"));
            }
            _ => {
                let a = self.host(node, what)?;
                (a.clone(), a)
            }
        };
        Ok(HostAddr { public, private })
    }

    fn host(&self, node: &Node, what: &str) -> Result<String, ConfigError> {
        let host = decode::nonempty_string(self.src, node, what)?;
        // A leading `-` would read as an option to ssh or rsync.
        let ok = host.len() <= 253
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !ok {
            return Err(self
                .err(node, format!("{what} `{host}` is not a host address"))
                .expected("an IP address or a host name"));
        }
        Ok(host)
    }

    fn setup_cmds(&self, f: &mut Fields<'_>) -> Result<Vec<String>, ConfigError> {
        f.optional("setup_cmds")
            .map(|n| decode::string_list(self.src, n, "`setup_cmds`"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn ssh_cluster(&self, node: &Node) -> Result<SshCluster, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!SSHCluster`",
            &[
                "name",
                "orchestrator_ip",
                "factories_ips",
                "username",
                "key",
                "use_public",
                "port",
                "setup_cmds",
            ],
        )?;
        let name = self.name(&mut f)?;
        let orch_node = f.required(
            "orchestrator_ip",
            "an address, or a `[public, private]` pair",
        )?;
        let orchestrator = self.address(orch_node, "`orchestrator_ip`")?;
        let factories_node = f.required(
            "factories_ips",
            "a list of addresses or `[public, private]` pairs",
        )?;
        let items = decode::seq(self.src, factories_node, "`factories_ips`")?;
        if items.is_empty() {
            return Err(self
                .err(factories_node, "`factories_ips` is empty".into())
                .expected("at least one factory address"));
        }
        let mut factories: Vec<HostAddr> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let addr = self.address(item, &format!("factory {i} of `factories_ips`"))?;
            if addr.public == orchestrator.public
                || factories.iter().any(|f| f.public == addr.public)
            {
                return Err(self
                    .err(
                        item,
                        format!("the address `{}` appears twice in the cluster", addr.public),
                    )
                    .expected("one entry per machine"));
            }
            factories.push(addr);
        }
        let username_node = f.required("username", "the user to log in as on every host")?;
        let username = decode::nonempty_string(self.src, username_node, "`username`")?;
        checks::login_name(self.src, username_node, "`username`", &username)?;
        let key_node = f.required(
            "key",
            "the path of your private SSH key, e.g. `~/.ssh/id_ed25519`",
        )?;
        let key = self.path(key_node, "`key`")?;
        checks::private_key_file(self.src, key_node, "`key`", &key)?;
        let use_public = match f.optional("use_public") {
            Some(n) => decode::boolean(self.src, n, "`use_public`")?,
            None => true,
        };
        let port = match f.optional("port") {
            Some(n) => decode::int(self.src, n, "`port`", 1, 65535)? as u16,
            None => 22,
        };
        let setup_cmds = self.setup_cmds(&mut f)?;
        Ok(SshCluster {
            name,
            orchestrator,
            factories,
            username,
            key,
            use_public,
            port,
            setup_cmds,
        })
    }

    fn aws_cluster(&self, node: &Node) -> Result<AwsCluster, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!AWSCluster`",
            &[
                "name",
                "factories_num",
                "factories_type",
                "orchestrator_type",
                "orchestrator_timeout",
                "factories_timeout",
                "creator",
                "key_name",
                "key",
                "tags",
                "subnet_id",
                "security_group",
                "volume_size",
                "volume_type",
                "orchestrator_ami",
                "factory_ami",
                "region_name",
                "username",
                "dedicated",
                "use_public",
                "setup_cmds",
            ],
        )?;
        let name = self.name(&mut f)?;
        let text = |f: &mut Fields<'_>, key: &str, expected: &str| -> Result<String, ConfigError> {
            let n = f.required(key, expected)?;
            decode::nonempty_string(self.src, n, &format!("`{key}`"))
        };
        let opt_text = |f: &mut Fields<'_>, key: &str| -> Result<Option<String>, ConfigError> {
            f.optional(key)
                .map(|n| decode::nonempty_string(self.src, n, &format!("`{key}`")))
                .transpose()
        };
        let factories_num = decode::int(
            self.src,
            f.required("factories_num", "the number of factory instances")?,
            "`factories_num`",
            0,
            1000,
        )? as u32;
        let factories_type = text(
            &mut f,
            "factories_type",
            "an EC2 instance type, e.g. `g4dn.xlarge`",
        )?;
        let orchestrator_type = text(
            &mut f,
            "orchestrator_type",
            "an EC2 instance type, e.g. `t3.large`",
        )?;
        let hours = |f: &mut Fields<'_>, key: &str, default: f64| -> Result<f64, ConfigError> {
            match f.optional(key) {
                None => Ok(default),
                Some(n) => {
                    let h = decode::number(self.src, n, &format!("`{key}`"))?;
                    if h < 0.0 && h != -1.0 {
                        return Err(self
                            .err(n, format!("`{key}: {h}` is not a timeout"))
                            .expected(
                                "hours of idle CPU before shutdown (0 or more), or -1 for never",
                            ));
                    }
                    // CloudWatch alarms look back at most 7 days.
                    if h > 168.0 {
                        return Err(self
                            .err(n, format!("`{key}: {h}` hours is longer than a CloudWatch alarm can watch"))
                            .expected("at most 168 hours (7 days), or -1 for no automatic shutdown")
                            .hint("idle shutdown is a CloudWatch alarm on the instance's CPU, and alarms look back at most 7 days"));
                    }
                    Ok(h)
                }
            }
        };
        let orchestrator_timeout = hours(&mut f, "orchestrator_timeout", -1.0)?;
        let factories_timeout = hours(&mut f, "factories_timeout", 1.0)?;
        let creator = text(
            &mut f,
            "creator",
            "your name or email, tagged on every instance",
        )?;
        let key_name = text(&mut f, "key_name", "the name of an EC2 key pair")?;
        let key_node = f.required("key", "the path of the private key of `key_name`")?;
        let key = self.path(key_node, "`key`")?;
        checks::private_key_file(self.src, key_node, "`key`", &key)?;
        let tags = match f.optional("tags") {
            Some(n) => decode::entries(self.src, n, "`tags`")?
                .into_iter()
                .map(|(k, _, v)| {
                    Ok((
                        k.clone(),
                        decode::string(self.src, v, &format!("tag `{k}`"))?,
                    ))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            None => Vec::new(),
        };
        let subnet_id = text(&mut f, "subnet_id", "a subnet id, e.g. `subnet-0abc…`")?;
        let security_group = text(
            &mut f,
            "security_group",
            "a security group id, e.g. `sg-0abc…`",
        )?;
        let volume_size = match f.optional("volume_size") {
            Some(n) => decode::int(self.src, n, "`volume_size` (GB)", 1, 16_384)? as u32,
            None => 100,
        };
        let volume_type = match f.optional("volume_type") {
            Some(n) => {
                let t = decode::string(self.src, n, "`volume_type`")?;
                if !VOLUME_TYPES.contains(&t.as_str()) {
                    return Err(self
                        .err(n, format!("`volume_type: {t}` is not an EBS volume type"))
                        .expected(format!("one of {}", VOLUME_TYPES.join(", "))));
                }
                t
            }
            None => "gp2".to_string(),
        };
        let orchestrator_ami = opt_text(&mut f, "orchestrator_ami")?;
        let factory_ami = opt_text(&mut f, "factory_ami")?;
        let region_name = opt_text(&mut f, "region_name")?;
        let username = match f.optional("username") {
            Some(n) => {
                let name = decode::nonempty_string(self.src, n, "`username`")?;
                checks::login_name(self.src, n, "`username`", &name)?;
                name
            }
            None => "ubuntu".to_string(),
        };
        let dedicated = match f.optional("dedicated") {
            Some(n) => decode::boolean(self.src, n, "`dedicated`")?,
            None => false,
        };
        let use_public = match f.optional("use_public") {
            Some(n) => decode::boolean(self.src, n, "`use_public`")?,
            None => true,
        };
        let setup_cmds = self.setup_cmds(&mut f)?;
        Ok(AwsCluster {
            name,
            factories_num,
            factories_type,
            orchestrator_type,
            orchestrator_timeout,
            factories_timeout,
            creator,
            key_name,
            key,
            tags,
            subnet_id,
            security_group,
            volume_size,
            volume_type,
            orchestrator_ami,
            factory_ami,
            region_name,
            username,
            dedicated,
            use_public,
            setup_cmds,
        })
    }
}

/// (message, expected, hint) for a placeholder that resolves to nothing.
type RefProblem = (String, String, Option<String>);

fn check_reference(
    exp: &Experiment,
    stage: &Stage,
    earlier: &[Stage],
    path: &[String],
) -> Result<(), RefProblem> {
    let shown = format!("{{{}}}", path.join("."));
    let earlier_names = || {
        if earlier.is_empty() {
            "none: this is the first stage".to_string()
        } else {
            earlier
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let upstream = |name: &str| -> Result<&Stage, RefProblem> {
        if let Some(s) = earlier.iter().find(|s| s.name == name) {
            return Ok(s);
        }
        let why = if name == stage.name {
            format!("`{shown}` in stage `{name}` refers to its own stage")
        } else if exp.stage(name).is_some() {
            format!(
                "`{shown}` refers to stage `{name}`, which runs after stage `{}`",
                stage.name
            )
        } else {
            format!("`{shown}` refers to a stage `{name}` that does not exist")
        };
        Err((
            why,
            format!("an earlier stage (earlier stages: {})", earlier_names()),
            None,
        ))
    };
    match classify(path) {
        Ref::Out | Ref::Trial => Ok(()),
        Ref::Param(p) => {
            if stage.param(p).is_some() {
                return Ok(());
            }
            let names: Vec<&str> = stage.params.iter().map(|p| p.name.as_str()).collect();
            let hint = closest(p, &names).map(|c| format!("did you mean `{{{c}}}`?"));
            let mut known: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
            known.extend(
                [
                    "{out}",
                    "{trial}",
                    "{resources.NAME}",
                    "{STAGE.out}",
                    "{STAGE.params.NAME}",
                ]
                .map(String::from),
            );
            Err((
                format!(
                    "`{shown}` matches no parameter of stage `{}` and no builtin",
                    stage.name
                ),
                format!("one of {}", known.join(", ")),
                hint.or_else(|| Some("write `{{` and `}}` for literal braces".to_string())),
            ))
        }
        Ref::Resource(r) => {
            if exp.resources.iter().any(|x| x.name == r) {
                return Ok(());
            }
            let names: Vec<&str> = exp.resources.iter().map(|x| x.name.as_str()).collect();
            Err((
                format!("`{shown}` refers to a resource `{r}` that is not declared"),
                if names.is_empty() {
                    "a `resources:` entry with that name".to_string()
                } else {
                    format!("one of the declared resources: {}", names.join(", "))
                },
                closest(r, &names).map(|c| format!("did you mean `{{resources.{c}}}`?")),
            ))
        }
        Ref::UpstreamOut(s) => upstream(s).map(|_| ()),
        Ref::UpstreamParam(s, p) => {
            let up = upstream(s)?;
            if up.param(p).is_some() {
                Ok(())
            } else {
                Err((
                    format!("`{shown}`: stage `{s}` has no parameter `{p}`"),
                    format!(
                        "one of stage `{s}`'s parameters: {}",
                        up.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ))
            }
        }
        Ref::Invalid => Err((
            format!("`{shown}` is not a placeholder flambe knows"),
            "{PARAM}, {out}, {trial}, {resources.NAME}, {STAGE.out} or {STAGE.params.NAME}"
                .to_string(),
            Some("write `{{` and `}}` for literal braces".to_string()),
        )),
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
