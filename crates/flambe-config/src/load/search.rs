//! A stage's `search:` (`!Grid`, `!Random`, `!TPE`) and `scheduler:`
//! (`!ASHA`, `!HyperBand`, `!MedianStopping`).

use super::Cx;
use crate::decode::{self, Fields};
use crate::error::ConfigError;
use crate::model::*;
use crate::yaml::{Node, NodeKind};

const SEARCH_TAGS: &[&str] = &["!Grid", "!Random", "!TPE"];
const SCHEDULER_TAGS: &[&str] = &["!ASHA", "!HyperBand", "!MedianStopping"];

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
            other => return Err(self.unknown_tag(node, other, "scheduler", SCHEDULER_TAGS)),
        };
        let what = format!("`{tag}`");
        let mut f = Fields::new(self.src, node, what.clone(), known)?;
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
}
