//! A run's config fingerprint, which a results folder records, and how two
//! fingerprints differ: what lets a rerun resume, grow, or be refused with
//! the fields that changed.

use crate::options::RunOptions;
use flambe_config::Experiment;

/// What a results folder records of the config that made it: the
/// experiment as loaded, and the extensions' environment key. `devices` is
/// left out: it says where to run, not what.
pub(crate) fn fingerprint(exp: &Experiment, opts: &RunOptions) -> serde_json::Value {
    let mut exp = exp.clone();
    exp.devices = Default::default();
    let mut value = serde_json::to_value(&exp).unwrap_or_default();
    if let (Some(py), Some(map)) = (&opts.python, value.as_object_mut()) {
        map.insert("extensions".into(), serde_json::json!(py.key));
    }
    value
}

/// Dotted paths where two configs differ (stages named, not numbered).
pub fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    match y.get(k) {
                        Some(vb) => walk(&join(k), va, vb, out),
                        None => out.push(join(k)),
                    }
                }
                out.extend(y.keys().filter(|k| !x.contains_key(*k)).map(|k| join(k)));
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    let label = va
                        .get("name")
                        .and_then(Value::as_str)
                        .map_or_else(|| i.to_string(), str::to_string);
                    walk(&join(&label), va, vb, out);
                }
            }
            _ if a != b => out.push(if path.is_empty() {
                "(everything)".into()
            } else {
                path.to_string()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    // Name the fields the user wrote: `run`, not its parsed parts; a param,
    // not the inside of its search spec.
    let mut named: Vec<String> = Vec::new();
    for path in out {
        let path = path.split(".run.").next().map_or(path.clone(), |p| {
            if p.len() < path.len() {
                format!("{p}.run")
            } else {
                path.clone()
            }
        });
        let path = path.split(".spec").next().unwrap_or(&path).to_string();
        if !named.contains(&path) {
            named.push(path);
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_stages_and_fields() {
        let stage = |lr: f64, run: &str| {
            json!({"name": "train", "run": {"source": run, "parts": [run]},
                   "params": [{"name": "lr", "spec": {"grid": [lr, 0.5]}}]})
        };
        let a = json!({"seed": 1, "pipeline": [stage(0.1, "a"), {"name": "eval"}]});
        let b = json!({"seed": 2, "pipeline": [stage(0.2, "b"), {"name": "eval"}]});
        assert_eq!(
            diff(&a, &b),
            vec!["seed", "pipeline.train.run", "pipeline.train.params.lr"]
        );
    }
}
