//! Jobs on a Ray cluster, through the Ray Jobs REST API (`/api/jobs/`).
//!
//! By default trials go to slot workers (`crate::slots`): Ray jobs that
//! each run many trials in turn. What follows is the other way, one Ray
//! job per trial ([`RayExecutor::job_per_trial`]), also the default with
//! `--ray-address`, and the submit and stop calls both ways share.
//!
//! Each job is submitted with its CPUs and GPUs as entrypoint resources, so
//! Ray places it on a node that has them and sets `CUDA_VISIBLE_DEVICES`.
//! The entrypoint is `flambe trial-run SPEC` (see [`crate::wrapper`]). The
//! driver follows each job's log as Ray streams it ([`crate::ray_log`]) and
//! polls its status, turning the wrapper's `@@flambe:` lines into events. A job that ends without the
//! wrapper's outcome line (its node died, Ray lost it) is `Outcome::Lost`.
//!
//! Ray queues what does not fit; the executor still caps the jobs in flight
//! (`max_in_flight`) so a large stage does not flood the cluster's queue.

use crate::RayApiError;
use crate::ray_auth::ray_token;
use crate::ray_log::{self, LogLines, TailRead};
use crate::slots::{PoolSetup, SLOTS_METADATA, SlotPool, trials_folder};
use crate::wrapper::{Heard, Message, encode_spec};
use crate::{Executor, JobEvent, JobSpec, Outcome};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// How often a running job's status is read (and its whole log, where the
/// log cannot be streamed).
const POLL: Duration = Duration::from_millis(500);
/// How long a submission is retried while Ray says its agent is not ready.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(60);
/// Times a job's log stream is opened before falling back to reading the
/// whole log.
const TAIL_ATTEMPTS: u32 = 5;
/// How long the stream gets to deliver the log's end once Ray reports the
/// job ended, before the rest is read over HTTP.
const TAIL_GRACE: Duration = Duration::from_secs(15);

/// An HTTP client for Ray's Jobs API that sends the token with every call.
fn jobs_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = ray_token()
        && let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// Submit one job (`body`, the Jobs API's JSON), waiting out a head whose
/// job agent is not up yet.
pub(crate) async fn submit_job(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
) -> Result<(), RayApiError> {
    let mut waited = Duration::ZERO;
    loop {
        let resp = client
            .post(format!("{base}/api/jobs/"))
            .json(body)
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let last = text.lines().last().unwrap_or("").to_string();
        // A head whose job agent is not up yet (just started, or
        // restarting) says so and asks to be tried again.
        if status.is_server_error() && last.contains("try again later") && waited < SUBMIT_PATIENCE
        {
            tokio::time::sleep(POLL).await;
            waited += POLL;
            continue;
        }
        return Err(RayApiError::Refused {
            status,
            message: last,
        });
    }
}

/// Stop one job; whether Ray took the word is not waited for.
pub(crate) async fn stop_job(client: &reqwest::Client, base: &str, submission: &str) {
    let _ = client
        .post(format!("{base}/api/jobs/{submission}/stop"))
        .send()
        .await;
}

/// Jobs submitted to a Ray cluster through the Jobs REST API.
pub struct RayExecutor {
    client: reqwest::Client,
    /// The dashboard, e.g. `http://127.0.0.1:8265`.
    base: String,
    /// The `flambe` the nodes run as the entrypoint.
    flambe: String,
    /// Makes submission ids unique per driver run (`flambe-<run>-<trial>-<n>`).
    run: String,
    max_in_flight: usize,
    running: HashMap<String, Arc<Notify>>,
    attempts: HashMap<String, u32>,
    events: mpsc::UnboundedSender<JobEvent>,
    /// Trials go to slot workers (the default), or each is a Ray job.
    job_per_trial: bool,
    /// The slot workers, started at the first launch.
    slots: Option<SlotPool>,
}

impl RayExecutor {
    /// Submit to the Ray dashboard at `address`, with these CPUs and GPUs, reporting on `events`.
    pub fn new(
        base: &str,
        flambe: &str,
        run: &str,
        max_in_flight: usize,
        events: mpsc::UnboundedSender<JobEvent>,
    ) -> RayExecutor {
        RayExecutor {
            client: jobs_client(),
            base: base.trim_end_matches('/').to_string(),
            flambe: flambe.to_string(),
            run: run.to_string(),
            max_in_flight: max_in_flight.max(1),
            running: HashMap::new(),
            attempts: HashMap::new(),
            events,
            job_per_trial: false,
            slots: None,
        }
    }

    /// Submit each trial as a Ray job of its own (`flambe trial-run`)
    /// instead of handing trials to slot workers.
    pub fn job_per_trial(mut self, yes: bool) -> RayExecutor {
        self.job_per_trial = yes;
        self
    }

    /// The slot pool, started now if it is not yet; `None` where its feed
    /// socket cannot be made (then each trial is a job of its own).
    fn slot_pool(&mut self) -> Option<&SlotPool> {
        if self.job_per_trial {
            return None;
        }
        if self.slots.is_none() {
            match SlotPool::start(PoolSetup {
                client: self.client.clone(),
                base: self.base.clone(),
                flambe: self.flambe.clone(),
                run: format!("flambe-{}", self.run),
                events: self.events.clone(),
            }) {
                Ok(pool) => self.slots = Some(pool),
                Err(e) => {
                    tracing::warn!(error = %e, "no feed socket for slot workers: one Ray job per trial");
                    self.job_per_trial = true;
                    return None;
                }
            }
        }
        self.slots.as_ref()
    }
}

impl RayExecutor {
    /// The submission ids of live jobs (pending or running) that an earlier
    /// driver started for one of `outs`, by the metadata each carries.
    async fn live_jobs_for(&self, outs: &[std::path::PathBuf]) -> Result<Vec<String>, String> {
        let wanted: Vec<String> = outs.iter().map(|o| o.display().to_string()).collect();
        let jobs: Vec<Value> = self
            .client
            .get(format!("{}/api/jobs/", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        // Slot workers name the trials folder they worked for.
        let folders: Vec<String> = outs.iter().map(|o| trials_folder(o)).collect();
        Ok(jobs
            .iter()
            .filter(|j| matches!(j["status"].as_str(), Some("PENDING" | "RUNNING")))
            .filter(|j| {
                j["metadata"][OUT_METADATA]
                    .as_str()
                    .is_some_and(|o| wanted.iter().any(|w| w == o))
                    || j["metadata"][SLOTS_METADATA]
                        .as_str()
                        .is_some_and(|f| folders.iter().any(|w| w == f))
            })
            .filter_map(|j| j["submission_id"].as_str().map(str::to_string))
            .collect())
    }
}

/// The job metadata key that names a job's `FLAMBE_OUT`.
const OUT_METADATA: &str = "flambe_out";
/// How long leftover jobs get to end once stopped. Ray sends SIGTERM, then
/// SIGKILL a few seconds later; the wrapper kills its trial on SIGTERM.
const LEFTOVER_WAIT: Duration = Duration::from_secs(60);

impl Executor for RayExecutor {
    fn stop_leftovers<'a>(&'a self, outs: &'a [std::path::PathBuf]) -> crate::BoxFuture<'a, ()> {
        Box::pin(async move {
            if outs.is_empty() {
                return;
            }
            let Ok(live) = self.live_jobs_for(outs).await else {
                return;
            };
            for id in &live {
                let _ = self
                    .client
                    .post(format!("{}/api/jobs/{id}/stop", self.base))
                    .send()
                    .await;
            }
            let deadline = tokio::time::Instant::now() + LEFTOVER_WAIT;
            while tokio::time::Instant::now() < deadline {
                match self.live_jobs_for(outs).await {
                    Ok(still) if still.is_empty() => break,
                    Err(_) => break,
                    Ok(_) => tokio::time::sleep(POLL).await,
                }
            }
        })
    }

    fn fits(&self, _cpus: f64, _gpus: u32) -> bool {
        self.running.len() < self.max_in_flight
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    fn sends_results_back(&self) -> bool {
        true
    }

    fn host(&self) -> &str {
        "ray"
    }

    fn launch(&mut self, spec: JobSpec) {
        if let Some(pool) = self.slot_pool() {
            let id = spec.id.clone();
            pool.launch(spec);
            self.running.insert(id, Arc::new(Notify::new()));
            return;
        }
        let n = self.attempts.entry(spec.id.clone()).or_insert(0);
        *n += 1;
        let submission = format!("flambe-{}-{}-{n}", self.run, spec.id);
        let cancel = Arc::new(Notify::new());
        self.running.insert(spec.id.clone(), cancel.clone());
        let job = RayJob {
            client: self.client.clone(),
            base: self.base.clone(),
            submission,
            events: self.events.clone(),
        };
        let flambe = self.flambe.clone();
        tokio::spawn(async move { job.run(spec, &flambe, cancel).await });
    }

    fn release(&mut self, id: &str) {
        self.running.remove(id);
    }

    fn cancel(&self, id: &str) {
        if let Some(pool) = &self.slots {
            pool.cancel(id);
        }
        if let Some(c) = self.running.get(id) {
            c.notify_one();
        }
    }

    fn cancel_all(&self) {
        if let Some(pool) = &self.slots {
            pool.cancel_all();
        }
        for c in self.running.values() {
            c.notify_one();
        }
    }
}

struct RayJob {
    client: reqwest::Client,
    base: String,
    submission: String,
    events: mpsc::UnboundedSender<JobEvent>,
}

impl RayJob {
    async fn run(self, spec: JobSpec, flambe: &str, cancel: Arc<Notify>) {
        let id = spec.id.clone();
        let outcome = match self.submit(&spec, flambe).await {
            Err(e) => Outcome::SpawnFailed(format!("Ray did not take the job: {e}")),
            Ok(()) => self.follow(&id, spec.echo, cancel).await,
        };
        let _ = self.events.send(JobEvent::Finished { id, outcome });
    }

    async fn submit(&self, spec: &JobSpec, flambe: &str) -> Result<(), RayApiError> {
        let out = spec
            .env
            .iter()
            .find(|(k, _)| k == crate::local::MARKER_VAR)
            .map_or("", |(_, v)| v.as_str());
        let body = json!({
            "entrypoint": format!("{flambe} trial-run {}", encode_spec(spec)),
            "submission_id": self.submission,
            "metadata": { OUT_METADATA: out },
            "entrypoint_num_cpus": spec.cpus,
            "entrypoint_num_gpus": spec.gpus,
        });
        submit_job(&self.client, &self.base, &body).await?;
        tracing::info!(trial = %spec.id, submission = %self.submission, "submitted to Ray");
        Ok(())
    }

    async fn status(&self) -> Result<Value, RayApiError> {
        let resp = self
            .client
            .get(format!("{}/api/jobs/{}", self.base, self.submission))
            .send()
            .await?;
        Ok(resp.json().await?)
    }

    async fn logs(&self) -> Result<String, RayApiError> {
        let resp = self
            .client
            .get(format!("{}/api/jobs/{}/logs", self.base, self.submission))
            .send()
            .await?;
        let v: Value = resp.json().await?;
        Ok(v["logs"].as_str().unwrap_or_default().to_string())
    }

    async fn stop(&self) {
        stop_job(&self.client, &self.base, &self.submission).await;
    }

    /// Follow the job's log until the job ends; relay what the wrapper
    /// says. The log streams over Ray's websocket; its status is polled
    /// alongside (for stopping, and for a job Ray lost). Where the stream
    /// breaks or cannot be opened, the whole log is read over HTTP instead,
    /// and [`LogLines`] skips what was seen.
    async fn follow(&self, id: &str, echo: bool, cancel: Arc<Notify>) -> Outcome {
        let mut lines = LogLines::default();
        let mut outcome: Option<Outcome> = None;
        let mut cancelled = false;
        let mut failures = 0;
        let mut tail: Option<ray_log::Tail> = None;
        // Bytes the current stream has delivered (each stream starts at 0).
        let mut delivered: u64 = 0;
        let mut tail_failures = 0;
        // Set once the stream closed after the job's end: nothing is left.
        let mut read_to_end = false;
        let mut ended_since: Option<tokio::time::Instant> = None;
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if tail.is_none() && !read_to_end && tail_failures < TAIL_ATTEMPTS {
                match ray_log::open_tail(&self.base, &self.submission).await {
                    Ok(ws) => {
                        tail = Some(ws);
                        delivered = 0;
                    }
                    Err(e) => {
                        tracing::debug!(submission = %self.submission, error = %e, "log stream not opened");
                        tail_failures += 1;
                    }
                }
            }
            let read = tokio::select! {
                () = cancel.notified(), if !cancelled => {
                    cancelled = true;
                    self.stop().await;
                    continue;
                }
                read = ray_log::next(&mut tail) => Some(read),
                _ = ticks.tick() => None,
            };
            match read {
                Some(TailRead::Bytes(bytes)) => {
                    for line in lines.feed(delivered, &bytes) {
                        self.relay(id, &line, echo, &mut outcome);
                    }
                    delivered += bytes.len() as u64;
                    continue;
                }
                Some(TailRead::Ended) => {
                    tail = None;
                    read_to_end = true;
                }
                Some(TailRead::Broken(e)) => {
                    tracing::debug!(submission = %self.submission, error = %e, "log stream broke");
                    tail = None;
                    tail_failures += 1;
                }
                None => {}
            }
            let status = match self.status().await {
                Ok(s) => {
                    failures = 0;
                    s
                }
                Err(e) => {
                    failures += 1;
                    if failures > 20 {
                        return Outcome::Lost(format!("the Ray dashboard stopped answering: {e}"));
                    }
                    continue;
                }
            };
            let ended = matches!(
                status["status"].as_str().unwrap_or(""),
                "SUCCEEDED" | "FAILED" | "STOPPED"
            );
            if read_to_end && !ended {
                // Closed before the end (Ray's head lost its agent): follow
                // a new stream, which starts over; seen bytes are skipped.
                read_to_end = false;
            }
            let streaming = tail.is_some() || (!read_to_end && tail_failures < TAIL_ATTEMPTS);
            if !streaming && !read_to_end {
                // No stream: read the whole log, keeping only what is new.
                self.relay_whole_log(&mut lines, id, echo, &mut outcome)
                    .await;
            }
            if !ended {
                continue;
            }
            let since = *ended_since.get_or_insert_with(tokio::time::Instant::now);
            if tail.is_some() && since.elapsed() < TAIL_GRACE {
                // The stream is still delivering the log's end.
                continue;
            }
            if !read_to_end && streaming {
                // The stream never closed: take the rest over HTTP.
                self.relay_whole_log(&mut lines, id, echo, &mut outcome)
                    .await;
            }
            if let Some(line) = lines.finish() {
                self.relay(id, &line, echo, &mut outcome);
            }
            if cancelled {
                return Outcome::Cancelled;
            }
            return outcome.unwrap_or_else(|| {
                Outcome::Lost(format!(
                    "Ray reports the job {}: {}",
                    status["status"].as_str().unwrap_or("ended"),
                    status["message"].as_str().unwrap_or("no message")
                ))
            });
        }
    }

    /// Read the whole log over HTTP and relay the lines not seen yet.
    async fn relay_whole_log(
        &self,
        lines: &mut LogLines,
        id: &str,
        echo: bool,
        outcome: &mut Option<Outcome>,
    ) {
        if let Ok(text) = self.logs().await {
            for line in lines.feed(0, text.as_bytes()) {
                self.relay(id, &line, echo, outcome);
            }
        }
    }

    fn relay(&self, id: &str, line: &str, echo: bool, outcome: &mut Option<Outcome>) {
        let event = match Message::parse(line).map(|m| m.heard(id)) {
            Some(Heard::Event(event)) => event,
            Some(Heard::Ended(ended)) => {
                *outcome = Some(ended);
                return;
            }
            None if echo => JobEvent::Output {
                id: id.to_string(),
                stderr: false,
                line: line.to_string(),
            },
            None => return,
        };
        let _ = self.events.send(event);
    }
}
