//! A stage's curves in one call (`/api/v1/stages/{stage}/metrics`): what the
//! stage view overlays. Whole answers are thinned so that a stage of 2,000
//! trials of 10,000 steps stays a few MB; live updates send only what was
//! recorded since the caller's cursor.

use super::{ApiResult, SiteState, error, internal, path_arg, query_arg, snapshot};
use crate::api::{StageCurve, StageMetrics};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

/// Points in a whole answer, over all trials, unless `points` says
/// otherwise: each trial gets its share, within [`MIN_PER_TRIAL`,
/// `MAX_PER_TRIAL`].
const POINT_BUDGET: usize = 100_000;
const MIN_PER_TRIAL: usize = 16;
const MAX_PER_TRIAL: usize = 2_000;

#[derive(Deserialize)]
pub(super) struct CurvesQuery {
    metric: Option<String>,
    after: Option<i64>,
    points: Option<usize>,
}

pub(super) async fn stage_curves(
    State(state): State<Arc<SiteState>>,
    name: Result<UrlPath<String>, PathRejection>,
    q: Result<Query<CurvesQuery>, QueryRejection>,
) -> ApiResult {
    let name = path_arg(name)?;
    let q = query_arg(q)?;
    let snap = snapshot(&state).await?;
    let Some(stage) = snap.exp.stage(&name) else {
        return Err(error(StatusCode::NOT_FOUND, &format!("no stage `{name}`")));
    };
    let dir = state.dir.path().to_path_buf();
    let names = {
        // Read on from the last request: the names of a stage of 400,000
        // points are otherwise a scan of them all, every second.
        let mut known = state.metric_names.lock().unwrap_or_else(|p| p.into_inner());
        let (cursor, names) = known.entry(stage.name.clone()).or_default();
        let (new, next) = snap
            .store
            .stage_metric_names(&stage.name, *cursor)
            .map_err(|e| internal(&dir, e))?;
        if next < *cursor {
            names.clear();
            let (all, _) = snap
                .store
                .stage_metric_names(&stage.name, 0)
                .map_err(|e| internal(&dir, e))?;
            names.extend(all);
        }
        names.extend(new);
        *cursor = next;
        names.iter().cloned().collect::<Vec<_>>()
    };
    let metric = q
        .metric
        .clone()
        .or_else(|| stage.metric.clone())
        .or_else(|| names.first().cloned());
    let mut answer = StageMetrics {
        stage: stage.name.clone(),
        metric: metric.clone(),
        metrics: names,
        cursor: 0,
        full: true,
        trials: BTreeMap::new(),
    };
    let Some(metric) = metric else {
        return Ok(Json(answer).into_response());
    };
    let attempts: HashMap<String, u32> = snap
        .store
        .stage_trials(&stage.name)
        .map_err(|e| internal(&dir, e))?
        .into_iter()
        .map(|t| (t.id, t.attempt))
        .collect();
    let trials = attempts.len().max(1);
    let per_trial = q
        .points
        .unwrap_or((POINT_BUDGET / trials).clamp(MIN_PER_TRIAL, MAX_PER_TRIAL))
        .max(2);
    let after = q.after.unwrap_or(0).max(0);
    if after > 0 {
        let read = snap
            .store
            .stage_metric_points(&stage.name, &metric, after)
            .map_err(|e| internal(&dir, e))?;
        let new_points: usize = read.curves.iter().map(|c| c.points.len()).sum();
        // A catch-up bigger than a whole answer is sent as a whole answer.
        if new_points <= per_trial * trials {
            answer.cursor = read.cursor;
            answer.full = false;
            answer.trials = read
                .curves
                .into_iter()
                .map(|c| {
                    let curve = StageCurve {
                        attempt: c.attempt,
                        points: c.points,
                        thinned_from: None,
                    };
                    (c.trial, curve)
                })
                .collect();
            return Ok(Json(answer).into_response());
        }
    }
    // A whole answer, from the curves kept since the last request (the
    // ranking reads on from the same).
    let mut live = state.live.lock().unwrap_or_else(|p| p.into_inner());
    let kept = live
        .entry((stage.name.clone(), metric.clone()))
        .or_default();
    answer.cursor = kept
        .refresh(&snap.store, &stage.name, &metric)
        .map_err(|e| internal(&dir, e))?;
    answer.trials = kept
        .curves()
        .iter()
        .filter(|(id, (attempt, _))| attempts.get(*id) == Some(attempt))
        .map(|(id, (attempt, points))| {
            let n = points.len();
            let curve = StageCurve {
                attempt: *attempt,
                points: thin(points, per_trial),
                thinned_from: (n > per_trial).then_some(n),
            };
            (id.clone(), curve)
        })
        .collect();
    Ok(Json(answer).into_response())
}

/// At most `limit` of `points` (at least 2): the first and the last, and
/// the lowest and highest of each of the stretches between, in step order,
/// so neither a spike nor the best value disappears from the chart.
pub(crate) fn thin(points: &[(i64, f64)], limit: usize) -> Vec<(i64, f64)> {
    let n = points.len();
    let limit = limit.max(2);
    if n <= limit {
        return points.to_vec();
    }
    let (first, last) = (points[0], points[n - 1]);
    let inner = &points[1..n - 1];
    let buckets = (limit - 2) / 2;
    if buckets == 0 {
        return vec![first, last];
    }
    let mut out = Vec::with_capacity(limit);
    out.push(first);
    for b in 0..buckets {
        let stretch = &inner[b * inner.len() / buckets..(b + 1) * inner.len() / buckets];
        let (Some(lo), Some(hi)) = (
            stretch.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
            stretch.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        ) else {
            continue;
        };
        if lo.0 == hi.0 {
            out.push(*lo);
        } else if lo.0 < hi.0 {
            out.extend([*lo, *hi]);
        } else {
            out.extend([*hi, *lo]);
        }
    }
    out.push(last);
    out
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_the_ends_the_extremes_and_the_order() {
        let points: Vec<(i64, f64)> = (0..10_000)
            .map(|s| {
                (
                    s,
                    ((s as f64) / 97.0).sin() + if s == 4_321 { 9.0 } else { 0.0 },
                )
            })
            .collect();
        let thinned = thin(&points, 200);
        assert!(thinned.len() <= 200, "{}", thinned.len());
        assert!(thinned.len() >= 150, "{}", thinned.len());
        assert_eq!(thinned.first(), points.first());
        assert_eq!(thinned.last(), points.last());
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0), "in step order");
        assert!(thinned.contains(&points[4_321]), "the spike survives");
        let lowest = points.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!(
            thinned.iter().any(|p| p.1 == lowest.1),
            "the lowest survives"
        );
        assert_eq!(thin(&points[..50], 200), points[..50].to_vec());
        assert_eq!(thin(&points, 3), vec![points[0], points[9_999]]);
    }
}
