//! A stage's `search:` (`!Grid`, `!Random`, `!TPE`) and `scheduler:`
//! (`!ASHA`, `!HyperBand`, `!MedianStopping`).

use super::Cx;
use crate::decode::{self, Fields};
use crate::error::ConfigError;
use crate::model::*;
use crate::yaml::{Node, NodeKind};

const SEARCH_TAGS: &[&str] = &["!Grid", "!Random", "!TPE"];
const SCHEDULER_TAGS: &[&str] = &["!ASHA", "!HyperBand", "!MedianStopping", "!PBT"];

/// The largest trial budget of one stage (as the grid's own limit).
const MAX_TRIALS: i64 = 1_000_000;

impl Cx<'_> {
    pub(super) fn search(&self, node: &Node) -> Result<Search, ConfigError> {
        let Some(tag) = node.tag.as_deref() else {
            return Err(self
                .err(node, "`search` needs a tag".into())
                .expected("`!Grid`, `!Random {trials: 50}` or `!TPE {trials: 50}`"));
        };
        match tag {
            "!Grid" => {
                let empty = match &node.kind {
                    NodeKind::Scalar { value, .. } => value.is_empty(),
                    NodeKind::Map(entries) => entries.is_empty(),
                    NodeKind::Seq(_) => false,
                };
                if !empty {
                    return Err(self
                        .err(node, "`!Grid` takes no fields".into())
                        .expected("`search: !Grid` alone")
                        .hint("the grid is the stage's `!g` and `!s` params, `samples` times"));
                }
                Ok(Search::Grid)
            }
            "!Random" => {
                let mut f = Fields::new(self.src, node, "`!Random`", &["trials"])?;
                let trials = self.trials(&mut f)?;
                Ok(Search::Random { trials })
            }
            "!TPE" => {
                let mut f = Fields::new(
                    self.src,
                    node,
                    "`!TPE`",
                    &["trials", "startup", "concurrency"],
                )?;
                let trials = self.trials(&mut f)?;
                // Optuna's default: ten random trials before the model.
                let startup = match f.optional("startup") {
                    Some(n) => decode::int(self.src, n, "`startup`", 1, MAX_TRIALS)? as u32,
                    None => 10.min(trials),
                };
                let concurrency = match f.optional("concurrency") {
                    Some(n) => decode::int(self.src, n, "`concurrency`", 1, 10_000)? as u32,
                    None => 1,
                };
                Ok(Search::Tpe {
                    trials,
                    startup,
                    concurrency,
                })
            }
            other => Err(self.unknown_tag(node, other, "search", SEARCH_TAGS)),
        }
    }

    /// `!PBT`: Ray Tune's defaults, but counted in steps (every 10).
    fn pbt(&self, f: &mut Fields) -> Result<Scheduler, ConfigError> {
        let perturbation_interval = match f.optional("perturbation_interval") {
            Some(n) => {
                decode::int(self.src, n, "`perturbation_interval`", 1, 1_000_000_000)? as u64
            }
            None => 10,
        };
        let mut fraction = |key: &str, default: f64, low: f64, high: f64, open_low: bool| {
            let Some(n) = f.optional(key) else {
                return Ok(default);
            };
            let v = decode::number(self.src, n, &format!("`{key}`"))?;
            if v > high || v < low || (open_low && v == low) {
                let range = if open_low {
                    format!("a number above {low} and at most {high}")
                } else {
                    format!("a number from {low} to {high}")
                };
                return Err(self
                    .err(n, format!("`{key}: {v}` is out of range"))
                    .expected(&range));
            }
            Ok(v)
        };
        let quantile = fraction("quantile", 0.25, 0.0, 0.5, true)?;
        let resample_probability = fraction("resample_probability", 0.25, 0.0, 1.0, false)?;
        let mutations = match f.optional("mutations") {
            Some(n) => {
                let names = decode::string_list(self.src, n, "`mutations`")?;
                if names.is_empty() {
                    return Err(self
                        .err(
                            n,
                            "`mutations` is empty: PBT would have nothing to explore".into(),
                        )
                        .expected("the names of the params to mutate, e.g. `mutations: [lr]`"));
                }
                names
            }
            None => Vec::new(),
        };
        Ok(Scheduler::Pbt {
            perturbation_interval,
            quantile,
            resample_probability,
            mutations,
        })
    }

    fn trials(&self, f: &mut Fields) -> Result<u32, ConfigError> {
        let n = f.required("trials", "how many trials to run, e.g. `trials: 50`")?;
        Ok(decode::int(self.src, n, "`trials`", 1, MAX_TRIALS)? as u32)
    }

    pub(super) fn scheduler(&self, node: &Node) -> Result<Scheduler, ConfigError> {
        let Some(tag) = node.tag.as_deref() else {
            return Err(self
                .err(node, "`scheduler` needs a tag".into())
                .expected("`!ASHA {max_t: 20, grace_period: 2, reduction_factor: 3}`"));
        };
        let known: &[&str] = match tag {
            "!ASHA" => &["max_t", "grace_period", "reduction_factor"],
            "!HyperBand" => &["max_t", "grace_period", "reduction_factor", "brackets"],
            "!MedianStopping" => &["grace_period", "min_samples"],
            "!PBT" => &[
                "perturbation_interval",
                "quantile",
                "resample_probability",
                "mutations",
            ],
            other => return Err(self.unknown_tag(node, other, "scheduler", SCHEDULER_TAGS)),
        };
        let what = format!("`{tag}`");
        let mut f = Fields::new(self.src, node, what.clone(), known)?;
        if tag == "!PBT" {
            return self.pbt(&mut f);
        }
        let mut get = |key: &str, min: i64, default: u64| -> Result<u64, ConfigError> {
            Ok(match f.optional(key) {
                Some(n) => {
                    decode::int(self.src, n, &format!("`{key}`"), min, 1_000_000_000)? as u64
                }
                None => default,
            })
        };
        if tag == "!MedianStopping" {
            // Ray Tune's defaults.
            let grace_period = get("grace_period", 0, 60)?;
            let min_samples = get("min_samples", 1, 3)?;
            return Ok(Scheduler::MedianStopping {
                grace_period,
                min_samples,
            });
        }
        let max_t = get("max_t", 1, 100)?;
        let grace_period = get("grace_period", 1, 1)?;
        let reduction_factor = get("reduction_factor", 2, 4)?;
        let brackets = if tag == "!HyperBand" {
            get("brackets", 1, 3)?
        } else {
            1
        };
        if grace_period > max_t {
            return Err(self
                .err(
                    node,
                    format!("{what}: grace_period {grace_period} is above max_t {max_t}"),
                )
                .expected("grace_period <= max_t"));
        }
        Ok(if tag == "!ASHA" {
            Scheduler::Asha {
                max_t,
                grace_period,
                reduction_factor,
            }
        } else {
            Scheduler::HyperBand {
                max_t,
                grace_period,
                reduction_factor,
                brackets,
            }
        })
    }

    /// A `!PBT` scheduler's `mutations`, checked against the stage's own
    /// params (each names one with a range to explore); absent, every
    /// searched param. PBT makes its own population's later params, so it
    /// takes its first ones from a grid or random search, not from TPE.
    pub(super) fn pbt_mutations(
        &self,
        stage: &str,
        pbt: Scheduler,
        node: &Node,
        params: &[Param],
        search: Search,
    ) -> Result<Scheduler, ConfigError> {
        let Scheduler::Pbt {
            perturbation_interval,
            quantile,
            resample_probability,
            mutations,
        } = pbt
        else {
            return Ok(pbt);
        };
        if let Search::Tpe { .. } = search {
            return Err(self
                .err(node, format!("stage `{stage}` combines `!PBT` with `!TPE`"))
                .expected(
                    "`search: !Grid` or `search: !Random {trials: N}` for PBT's first population",
                )
                .hint("PBT explores the params itself, from its best trials"));
        }
        let searched = |p: &&Param| !matches!(p.spec, ParamSpec::Fixed(_));
        let mutations = if mutations.is_empty() {
            let all: Vec<String> = params
                .iter()
                .filter(searched)
                .map(|p| p.name.clone())
                .collect();
            if all.is_empty() {
                return Err(self
                    .err(
                        node,
                        format!("stage `{stage}` uses `!PBT` but has no searched param to mutate"),
                    )
                    .expected("a param with a range, e.g. `lr: !lu [0.0001, 0.1]`"));
            }
            all
        } else {
            mutations
        };
        let at = mutation_node(node).unwrap_or(node);
        for (i, name) in mutations.iter().enumerate() {
            let item = match &at.kind {
                NodeKind::Seq(items) => items.get(i).unwrap_or(at),
                _ => at,
            };
            match params.iter().find(|p| &p.name == name) {
                None => {
                    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                    let mut e = self
                        .err(
                            item,
                            format!(
                                "`!PBT` mutates `{name}`, which is not a param of stage `{stage}`"
                            ),
                        )
                        .expected(format!("one of: {}", names.join(", ")));
                    if let Some(close) = crate::decode::closest(name, &names) {
                        e = e.hint(format!("did you mean `{close}`?"));
                    }
                    return Err(e);
                }
                Some(p) if !searched(&p) => {
                    return Err(self
                        .err(
                            item,
                            format!("`!PBT` mutates `{name}`, whose value is fixed"),
                        )
                        .expected(format!(
                            "a range or list for `{name}`, e.g. `!lu [0.0001, 0.1]` or `!g [..]`"
                        )));
                }
                Some(_) => {}
            }
        }
        Ok(Scheduler::Pbt {
            perturbation_interval,
            quantile,
            resample_probability,
            mutations,
        })
    }
}

/// The `mutations:` value inside a `!PBT` mapping, to point at its items.
fn mutation_node(node: &Node) -> Option<&Node> {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| crate::yaml::key_text(k) == "mutations")
            .map(|(_, v)| v),
        _ => None,
    }
}
