//! `!Experiment` and `!Script`: stages, params and their search specs,
//! schedulers, and the checks that every `{placeholder}` of a `run`
//! resolves (to a param, a resource, an upstream stage's output).

use super::references::check_reference;
use super::{Cx, PARAM_TAGS, field_node, locate};
use crate::decode::{self, Fields, no_tag, type_error};
use crate::error::ConfigError;
use crate::model::*;
use crate::template::{BUILTINS, Ref, Template, classify};
use crate::yaml::{Node, NodeKind, Scalar};
use serde_json::Value;

impl Cx<'_> {
    // ----- !Experiment -----------------------------------------------------

    pub(super) fn experiment(&self, node: &Node) -> Result<Experiment, ConfigError> {
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
                "search",
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
        let search_node = f.optional("search");
        let search = search_node
            .map(|n| self.search(n))
            .transpose()?
            .unwrap_or(Search::Grid);
        if let (Some(samples_node), Search::Random { .. } | Search::Tpe { .. }) =
            (f.optional("samples"), search)
        {
            return Err(self
                .err(
                    samples_node,
                    format!(
                        "stage `{name}` sets `samples` with a `search` that counts its own trials"
                    ),
                )
                .expected("`trials: N` in the `search:` and no `samples:`"));
        }
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
        if let (Some(n), Search::Tpe { .. }, None) = (search_node, search, &metric) {
            return Err(self
                .err(
                    n,
                    format!("stage `{name}` searches with TPE without a `metric` to learn from"),
                )
                .expected("`metric:` and `mode:` in the same stage"));
        }
        let scheduler = match (scheduler, scheduler_node) {
            (Some(pbt @ Scheduler::Pbt { .. }), Some(n)) => {
                Some(self.pbt_mutations(name, pbt, n, &params, search)?)
            }
            (other, _) => other,
        };
        let timeout = self.timeout(&mut f)?;
        let env = self.env(&mut f)?;
        let stage = Stage {
            name: name.to_string(),
            run,
            params,
            samples,
            search,
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
            "!i" => {
                let items = items()?;
                if items.len() != 2 {
                    return Err(self
                        .err(
                            node,
                            format!("{what}: `!i` takes 2 values, found {}", items.len()),
                        )
                        .expected("`!i [low, high]`, two integers"));
                }
                let bound = |n: &Node, which: &str| {
                    decode::int(
                        self.src,
                        n,
                        &format!("the {which} bound of {what}"),
                        -(1 << 52),
                        1 << 52,
                    )
                };
                let (low, high) = (bound(items[0], "low")?, bound(items[1], "high")?);
                if low >= high {
                    return Err(self
                        .err(
                            node,
                            format!("{what}: `!i [{low}, {high}]` has low >= high"),
                        )
                        .expected("`[low, high]` with low < high"));
                }
                Ok(ParamSpec::Int { low, high })
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

    pub(super) fn script(&self, node: &Node) -> Result<Script, ConfigError> {
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
}
