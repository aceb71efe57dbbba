//! What `up` prints: the hosts, checked field by field so that a wrong
//! answer says where (`factories[1].public`) and what.
//!
//! ```json
//! {"protocol": 1,
//!  "orchestrator": {"public": "203.0.113.5", "private": "10.0.0.5", "name": "head", "cpus": 4, "gpus": 0},
//!  "factories": [{"public": "203.0.113.6", "private": "10.0.0.6", "cpus": 8, "gpus": 1}]}
//! ```
//!
//! `private` defaults to `public`; `name`, `cpus` and `gpus` are optional.
//! `cpus` and `gpus` of a factory are what Ray offers there (a Slurm
//! allocation's share), instead of the host's own counts.

use super::CustomError;
use super::protocol::{head, json_answer, kind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One host a custom cluster's `up` reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomHost {
    /// The address to connect to from here.
    pub public: String,
    /// The address the other hosts reach it at.
    pub private: String,
    /// What the program calls it (a Slurm node, an instance id).
    pub name: Option<String>,
    /// CPUs it offers, as the program counts them.
    pub cpus: Option<u64>,
    /// GPUs it offers.
    pub gpus: Option<u64>,
}

/// The hosts of a custom cluster, as `up` reported them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomHosts {
    /// Driver, Ray head, report site.
    pub orchestrator: CustomHost,
    /// Where trials run.
    pub factories: Vec<CustomHost>,
}

/// `up`'s stdout as hosts, or the first thing wrong with it.
pub fn parse(who: &str, stdout: &str) -> Result<CustomHosts, CustomError> {
    let map = json_answer(who, stdout)?;
    let wrong = |path: &str, problem: String| CustomError::Shape {
        who: who.to_string(),
        path: path.to_string(),
        problem,
        head: head(stdout, 5),
    };
    let orchestrator = match map.get("orchestrator") {
        Some(v) => host(v, "orchestrator", &wrong)?,
        None => return Err(wrong("orchestrator", "missing".into())),
    };
    let factories = match map.get("factories") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| host(v, &format!("factories[{i}]"), &wrong))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(wrong(
                "factories",
                format!("expected a list of hosts, found {}", kind(other)),
            ));
        }
        None => return Err(wrong("factories", "missing".into())),
    };
    let mut seen = vec![orchestrator.public.as_str()];
    for (i, f) in factories.iter().enumerate() {
        if seen.contains(&f.public.as_str()) {
            return Err(wrong(
                &format!("factories[{i}].public"),
                format!("the address `{}` appears twice", f.public),
            ));
        }
        seen.push(&f.public);
    }
    Ok(CustomHosts {
        orchestrator,
        factories,
    })
}

fn host(
    value: &Value,
    at: &str,
    wrong: &dyn Fn(&str, String) -> CustomError,
) -> Result<CustomHost, CustomError> {
    let Value::Object(map) = value else {
        return Err(wrong(
            at,
            format!("expected an object with `public`, found {}", kind(value)),
        ));
    };
    let address = |key: &str, required: bool| -> Result<Option<String>, CustomError> {
        let path = format!("{at}.{key}");
        match map.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            None => Err(wrong(&path, "missing".into())),
            Some(Value::String(s)) if is_address(s) => Ok(Some(s.clone())),
            Some(Value::String(s)) => Err(wrong(
                &path,
                format!("`{s}` is not a host address (an IP address or a host name)"),
            )),
            Some(other) => Err(wrong(
                &path,
                format!("expected a string, found {}", kind(other)),
            )),
        }
    };
    let count = |key: &str| -> Result<Option<u64>, CustomError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => Err(wrong(
                &format!("{at}.{key}"),
                format!("expected a whole number of at least 0, found {other}"),
            )),
        }
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 253
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
        {
            Some(s.clone())
        }
        Some(other) => {
            return Err(wrong(
                &format!("{at}.name"),
                format!("expected a plain name (letters, digits, `.`, `-`, `_`), found {other}"),
            ));
        }
    };
    let public = address("public", true)?.unwrap_or_default();
    let private = address("private", false)?.unwrap_or_else(|| public.clone());
    Ok(CustomHost {
        public,
        private,
        name,
        cpus: count("cpus")?,
        gpus: count("gpus")?,
    })
}

/// An address flambe will hand to ssh and rsync: never an option.
fn is_address(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hosts_parse_and_every_wrong_answer_names_its_path() {
        let ok = parse(
            "up",
            r#"{"protocol": 1, "orchestrator": {"public": "10.0.0.1", "cpus": 2},
                "factories": [{"public": "10.0.0.2", "private": "192.168.0.2", "name": "n1", "gpus": 1}]}"#,
        )
        .unwrap();
        assert_eq!(ok.orchestrator.private, "10.0.0.1");
        assert_eq!(ok.factories[0].private, "192.168.0.2");
        assert_eq!(ok.factories[0].gpus, Some(1));
        let cases = [
            ("hello", "not JSON"),
            ("[1]", "$"),
            (r#"{"factories": []}"#, "orchestrator"),
            (r#"{"orchestrator": {"public": "a"}}"#, "factories"),
            (
                r#"{"orchestrator": {"public": 5}, "factories": []}"#,
                "orchestrator.public",
            ),
            (
                r#"{"orchestrator": {"public": "a"}, "factories": [{"public": "-oProxy=x"}]}"#,
                "factories[0].public",
            ),
            (
                r#"{"orchestrator": {"public": "a"}, "factories": [{"public": "b", "cpus": -1}]}"#,
                "factories[0].cpus",
            ),
            (
                r#"{"orchestrator": {"public": "a"}, "factories": [{"public": "a"}]}"#,
                "factories[0].public",
            ),
            (
                r#"{"protocol": 2, "orchestrator": {"public": "a"}, "factories": []}"#,
                "protocol",
            ),
        ];
        for (answer, path) in cases {
            let err = parse("up", answer).unwrap_err().to_string();
            assert!(err.contains(path), "{answer}: {err}");
        }
    }
}
