//! Metrics lines: `{"step": 3, "val_acc": 0.81, "loss": 0.4}`.
//!
//! `step` is optional (the line number is used without it); every other
//! numeric field is a metric; strings, booleans, nulls and nested values are
//! ignored, so trainers may log extra context on the same line.

use crate::error::MetricLineError;
use serde_json::Value;

/// One line of a job's metrics file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricLine {
    /// The step it reports (`"step"`), if any.
    pub step: Option<i64>,
    /// Every other numeric field, in order.
    pub values: Vec<(String, f64)>,
}

/// Parse one JSON-lines metrics line (`{"step": 3, "acc": 0.9}`).
pub fn parse_metric_line(line: &str) -> Result<MetricLine, MetricLineError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| MetricLineError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(MetricLineError::NotObject);
    };
    let mut step = None;
    let mut values = Vec::new();
    for (key, v) in map {
        if key == "step" {
            step = match v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            {
                Some(s) => Some(s),
                None => return Err(MetricLineError::BadStep(v.to_string())),
            };
        } else if let Some(f) = v.as_f64() {
            values.push((key, f));
        }
    }
    Ok(MetricLine { step, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_numbers_only() {
        let m = parse_metric_line(r#"{"step": 3, "acc": 0.5, "note": "x", "n": 2}"#).unwrap();
        assert_eq!(m.step, Some(3));
        assert_eq!(
            m.values,
            vec![("acc".to_string(), 0.5), ("n".to_string(), 2.0)]
        );
        assert_eq!(parse_metric_line(r#"{"acc": 1}"#).unwrap().step, None);
        assert!(
            parse_metric_line("[1]")
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
        assert!(
            parse_metric_line("{oops")
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        assert!(parse_metric_line(r#"{"step": "a"}"#).is_err());
    }
}
