//! The custom-cluster protocol, version [`PROTOCOL`]: how flambe runs a
//! `!CommandCluster`'s commands and a plugin's actions, and reads what they
//! print.
//!
//! Every call gets, on stdin, `{"protocol": 1, "action": "up", "cluster":
//! NAME, "fields": {…the document's fields…}}`, and in its environment
//! `FLAMBE_PROTOCOL`, `FLAMBE_ACTION`, `FLAMBE_CLUSTER_NAME` and one
//! `FLAMBE_FIELD_<NAME>` per field (scalars as text, lists and mappings as
//! JSON). A command runs as `sh -c COMMAND`, a plugin as `PROGRAM ACTION`,
//! both in the config file's folder. Exit 0 is success; stdout is the
//! answer (JSON for `validate` and `up`); stderr is for people.

use super::CustomError;
use flambe_config::{CustomCluster, HostSource};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The protocol version this flambe speaks.
pub const PROTOCOL: u64 = 1;

/// What flambe asks of a custom cluster's program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A plugin checks its fields: `{"errors": [{"path", "message"}]}`.
    Validate,
    /// Make or find the hosts (idempotent) and print them.
    Up,
    /// Release the hosts.
    Down,
    /// Say how the hosts stand (printed as it comes).
    Status,
}

impl Action {
    /// As the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Validate => "validate",
            Action::Up => "up",
            Action::Down => "down",
            Action::Status => "status",
        }
    }

    /// How long it may take: making hosts can wait on a cloud or a queue.
    fn timeout(self) -> Duration {
        match self {
            Action::Validate | Action::Status => Duration::from_secs(60),
            Action::Up | Action::Down => Duration::from_secs(30 * 60),
        }
    }
}

/// What a call printed.
#[derive(Debug)]
pub struct Answer {
    /// Standard output.
    pub stdout: String,
}

/// `FLAMBE_FIELD_SETUP_CMDS` for `setup_cmds`.
fn field_var(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FLAMBE_FIELD_{upper}")
}

/// Who is called, for messages: "`up` (`./up.sh`)" or "`flambe-cluster-slurm up`".
pub fn describe(cfg: &CustomCluster, action: Action) -> String {
    match &cfg.source {
        HostSource::Commands { up, down, status } => {
            let command = match action {
                Action::Up => up.as_str(),
                Action::Down => down.as_str(),
                Action::Status => status.as_deref().unwrap_or(""),
                Action::Validate => "",
            };
            format!("the `{}` command (`{command}`)", action.as_str())
        }
        HostSource::Plugin { program } => format!(
            "`{} {}`",
            program.file_name().map_or_else(
                || program.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            action.as_str()
        ),
    }
}

/// Run `action` for `cfg`; a non-zero exit is an error with its code and
/// the end of its stderr.
pub async fn call(cfg: &CustomCluster, action: Action) -> Result<Answer, CustomError> {
    let who = describe(cfg, action);
    let mut command = match &cfg.source {
        HostSource::Commands { up, down, status } => {
            let text = match action {
                Action::Up => up.clone(),
                Action::Down => down.clone(),
                Action::Status => status.clone().unwrap_or_default(),
                Action::Validate => {
                    return Ok(Answer {
                        stdout: "{}".into(),
                    });
                }
            };
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(text);
            c
        }
        HostSource::Plugin { program } => {
            let mut c = tokio::process::Command::new(program);
            c.arg(action.as_str());
            c
        }
    };
    command
        .current_dir(&cfg.dir)
        .env("FLAMBE_PROTOCOL", PROTOCOL.to_string())
        .env("FLAMBE_ACTION", action.as_str())
        .env("FLAMBE_CLUSTER_NAME", &cfg.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in &cfg.fields {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        command.env(field_var(name), text);
    }
    let request = json!({
        "protocol": PROTOCOL,
        "action": action.as_str(),
        "cluster": cfg.name,
        "fields": cfg.fields,
    });
    let mut child = command.spawn().map_err(|source| CustomError::Spawn {
        who: who.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its stdin is not an error.
        let _ = stdin.write_all(request.to_string().as_bytes()).await;
    }
    let output = match tokio::time::timeout(action.timeout(), child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => return Err(CustomError::Spawn { who, source }),
        Err(_) => {
            return Err(CustomError::Timeout {
                who,
                seconds: action.timeout().as_secs(),
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(CustomError::Failed {
            who,
            code: output.status.code(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 20),
        });
    }
    Ok(Answer { stdout })
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first `n` lines of `text`, for an error about it.
pub fn head(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n).collect();
    if text.lines().count() > n {
        lines.push("…");
    }
    lines.join("\n")
}

/// stdout as a JSON object of this protocol, or why not.
pub fn json_answer(who: &str, stdout: &str) -> Result<serde_json::Map<String, Value>, CustomError> {
    let value: Value = serde_json::from_str(stdout.trim()).map_err(|e| CustomError::NotJson {
        who: who.to_string(),
        error: e.to_string(),
        head: head(stdout, 5),
    })?;
    let Value::Object(map) = value else {
        return Err(CustomError::Shape {
            who: who.to_string(),
            path: "$".into(),
            problem: format!("expected a JSON object, found {}", kind(&value)),
            head: head(stdout, 5),
        });
    };
    match map.get("protocol") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(PROTOCOL) => {}
        Some(other) => {
            return Err(CustomError::Protocol {
                who: who.to_string(),
                theirs: other.to_string(),
            });
        }
    }
    Ok(map)
}

/// A JSON value's kind, in words.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
