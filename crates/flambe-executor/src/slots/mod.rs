//! Slot workers: one Ray job per resource slot, running trials in turn.
//!
//! A Ray job costs seconds of a slot's time by itself (Ray starts a job
//! supervisor and a driver process for each), which is most of a short
//! trial. So the Ray executor submits *slot workers* instead of trials: a
//! Ray job with a trial's CPUs and GPUs whose entrypoint is `flambe slot-run
//! SPEC` ([`run_slot`]). Ray still places it (and so sets its
//! `CUDA_VISIBLE_DEVICES`), stops it and reports it failed when its node
//! dies; the worker then asks the driver for trials of its shape and runs
//! them one after another, each exactly as `flambe trial-run` runs one
//! (inputs and checkpoint fetched, the job shim, results sent back).
//!
//! The driver and its workers talk over a *feed*: JSON lines on a Unix
//! socket the driver listens on. A worker on another node reaches it over
//! the cluster's own SSH, as an ssh master connection whose remote command
//! is `flambe slot-feed SOCKET` ([`relay_feed`]); the trial copies of that
//! worker go through the same master, so a trial pays no SSH handshake.
//!
//! - `mod.rs`: the feed's messages ([`ToWorker`], [`FromWorker`]) and the
//!   worker's spec ([`SlotSpec`]).
//! - `pool`: the driver's side: the queue of trials, the workers by shape,
//!   their Ray jobs (submitted, watched, stopped).
//! - `capacity`: how many slots of a shape the cluster holds at once (no
//!   more are submitted).
//! - `worker`: `flambe slot-run`.
//! - `feed`: `flambe slot-feed`, the relay between ssh and the socket.
//!
//! A worker that finds nothing to do for [`LINGER`] is let go; one whose
//! feed closes (its driver died) stops its trial and exits; a trial whose
//! worker is lost (its Ray job ended, its connection broke) ends
//! `Outcome::Lost`, and the engine retries it as any lost job.

use crate::wrapper::Message;
use crate::{JobSpec, SyncHost};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

mod capacity;
mod feed;
mod pool;
mod worker;

pub use feed::relay_feed;
pub(crate) use pool::{PoolSetup, SLOTS_METADATA, SlotPool, trials_folder};
pub use worker::{decode_slot_spec, run_slot};

/// How long an idle worker waits for another trial of its shape before it
/// is let go (its slot goes back to Ray).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What a slot worker is started with (hex JSON in its entrypoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotSpec {
    /// Its Ray submission id, by which the driver knows it.
    pub slot: String,
    /// The driver's feed socket (on the sync host, when there is one).
    pub socket: PathBuf,
    /// The results host, reached over ssh; `None` when the worker shares
    /// the driver's machine.
    pub sync: Option<SyncHost>,
    /// The `flambe` binary on the sync host, which relays the feed.
    pub flambe: String,
    /// The venv Ray runs from (off the trials' PATH).
    pub ray_venv: Option<PathBuf>,
}

/// Driver → worker, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    /// Run this trial now.
    Run { spec: Box<JobSpec> },
    /// Stop this trial (it reports its outcome as usual).
    Cancel { trial: String },
    /// Nothing more: exit.
    Exit,
}

/// Worker → driver, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    /// The first line: which slot this connection is.
    Hello { slot: String },
    /// What the wrapper says of a trial (started, metrics, outcome).
    Said { trial: String, message: Message },
    /// A line of a trial's output (only for trials that echo).
    Output {
        trial: String,
        stderr: bool,
        line: String,
    },
}

/// One JSON line of a feed message.
pub(crate) fn line_of<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricLine;

    #[test]
    fn feed_messages_round_trip_as_single_lines() {
        let said = FromWorker::Said {
            trial: "t-1".into(),
            message: Message::Metric {
                line: 2,
                metric: MetricLine {
                    step: Some(1),
                    values: vec![("acc".into(), 0.5)],
                },
            },
        };
        let line = line_of(&said);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back: FromWorker = serde_json::from_slice(&line).unwrap();
        assert!(matches!(back, FromWorker::Said { trial, .. } if trial == "t-1"));
        let exit: ToWorker = serde_json::from_slice(&line_of(&ToWorker::Exit)).unwrap();
        assert!(matches!(exit, ToWorker::Exit));
    }
}
