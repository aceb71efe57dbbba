//! The pool's input: workers' connections on the feed socket, and the
//! slots' Ray jobs (and the cluster's capacity) polled, all turned into
//! [`Command`]s for the pool's task.

use super::Command;
use crate::slots::capacity;
use crate::slots::{FromWorker, ToWorker, line_of};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// How often the slots' Ray jobs are looked at (one list call for all).
const POLL: Duration = Duration::from_secs(1);
/// The cluster's capacity is read at the first poll and every this many
/// polls after it (nodes come and go).
const CAPACITY_EVERY: u32 = 15;

/// Accept workers' connections: each says which slot it is, then reports.
pub(super) async fn accept(
    listener: tokio::net::UnixListener,
    commands: mpsc::UnboundedSender<Command>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let commands = commands.clone();
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            let Ok(Some(first)) = lines.next_line().await else {
                return;
            };
            let Ok(FromWorker::Hello { slot }) = serde_json::from_str(&first) else {
                return;
            };
            let (to_worker, mut outgoing) = mpsc::unbounded_channel::<ToWorker>();
            tokio::spawn(async move {
                while let Some(message) = outgoing.recv().await {
                    if writer.write_all(&line_of(&message)).await.is_err() {
                        break;
                    }
                }
                // Let go (or the pool is gone): the worker hears the end.
                let _ = writer.shutdown().await;
            });
            let _ = commands.send(Command::Connected {
                slot: slot.clone(),
                to_worker,
            });
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<FromWorker>(&line) {
                    Ok(message) => {
                        let _ = commands.send(Command::From {
                            slot: slot.clone(),
                            message,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%slot, error = %e, "unreadable line from a slot worker")
                    }
                }
            }
            let _ = commands.send(Command::Gone { slot });
        });
    }
}

/// Look at the slots' Ray jobs every [`POLL`], and tell the pool which
/// have ended; stops when the pool is gone.
pub(super) async fn poll_jobs(
    client: reqwest::Client,
    base: String,
    run: String,
    commands: mpsc::WeakUnboundedSender<Command>,
) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u32 = 0;
    loop {
        ticks.tick().await;
        let Some(commands) = commands.upgrade() else {
            return;
        };
        if polls.is_multiple_of(CAPACITY_EVERY)
            && let Some(capacity) = capacity::fetch(&client, &base).await
            && commands.send(Command::Capacity(capacity)).is_err()
        {
            return;
        }
        polls = polls.wrapping_add(1);
        let Ok(resp) = client.get(format!("{base}/api/jobs/")).send().await else {
            // The head does not answer: a lost slot shows as a lost feed.
            if commands.send(Command::Ended(HashMap::new())).is_err() {
                return;
            }
            continue;
        };
        let jobs: Vec<Value> = resp.json().await.unwrap_or_default();
        let ended =
            jobs.iter()
                .filter_map(|j| {
                    let id = j["submission_id"].as_str()?;
                    let status = j["status"].as_str()?;
                    (id.starts_with(&run) && matches!(status, "SUCCEEDED" | "FAILED" | "STOPPED"))
                        .then(|| {
                            let message = j["message"].as_str().unwrap_or("no message");
                            (id.to_string(), (status.to_string(), message.to_string()))
                        })
                })
                .collect();
        if commands.send(Command::Ended(ended)).is_err() {
            return;
        }
    }
}

/// The last lines a slot job printed (its worker's error, when it could
/// not reach the driver), from Ray's log of it.
pub(super) async fn last_words(client: &reqwest::Client, base: &str, slot: &str) -> Option<String> {
    let resp = client
        .get(format!("{base}/api/jobs/{slot}/logs"))
        .send()
        .await
        .ok()?;
    let logs: Value = resp.json().await.ok()?;
    let text = logs["logs"].as_str()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let said = lines[lines.len().saturating_sub(3)..].join(" / ");
    let said: String = said.chars().take(600).collect();
    (!said.is_empty()).then_some(said)
}
