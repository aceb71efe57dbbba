//! The console view of a run: one progress bar per stage (done/total,
//! running, failed, best metric so far, elapsed) when stderr is a terminal;
//! one line per stage otherwise. With `-v`, every trial output line too.

use flambe_experiment::{Event, Observer, StageResult, Status};
use flambe_report::ExperimentSummary;
use flambe_report::TensorBoardObserver;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;

pub struct Console {
    multi: MultiProgress,
    bars: HashMap<String, StageBar>,
    pub tensorboard: TensorBoardObserver,
}

struct StageBar {
    bar: ProgressBar,
    metric: Option<String>,
    maximize: bool,
    running: usize,
    failed: usize,
    best: Option<(f64, String)>,
}

impl StageBar {
    fn refresh(&self) {
        let best = self
            .best
            .as_ref()
            .and_then(|(v, id)| Some((self.metric.as_deref()?, *v, id.as_str())));
        self.bar
            .set_message(stage_message(self.running, self.failed, best));
    }
}

/// What a stage's bar says beside its count.
fn stage_message(running: usize, failed: usize, best: Option<(&str, f64, &str)>) -> String {
    let mut msg = format!("running {running} · failed {failed}");
    if let Some((metric, value, id)) = best {
        msg.push_str(&format!(" · best {metric} {value:.4} ({id})"));
    }
    msg
}

/// A new bar for a stage of `total` trials, below the others.
fn stage_bar(multi: &MultiProgress, stage: &str, total: u64) -> ProgressBar {
    let bar = multi.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:25}] {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_string());
    bar
}

/// The progress of a run elsewhere (on a cluster), from snapshots of the
/// report site's `/api/v1/experiment`: the same bars as a local run on a
/// terminal; one line per change otherwise (logs, pipes, tests).
pub struct RemoteProgress {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    last_line: String,
}

impl RemoteProgress {
    pub fn new() -> RemoteProgress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        crate::logging::show_above(&multi);
        RemoteProgress {
            multi,
            bars: HashMap::new(),
            last_line: String::new(),
        }
    }

    /// A line above the bars.
    pub fn line(&self, text: &str) {
        if self.multi.is_hidden() {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    pub fn update(&mut self, exp: &ExperimentSummary) {
        if self.multi.is_hidden() {
            let line = progress_line(exp);
            if line != self.last_line {
                eprintln!("{line}");
                self.last_line = line;
            }
            return;
        }
        for s in &exp.stages {
            let bar = self
                .bars
                .entry(s.name.clone())
                .or_insert_with(|| stage_bar(&self.multi, &s.name, 0));
            bar.set_length(s.total as u64);
            bar.set_position(s.done as u64);
            let best = s
                .metric
                .as_deref()
                .zip(
                    s.best
                        .as_ref()
                        .and_then(|b| b.value.map(|v| (v, b.id.as_str()))),
                )
                .map(|(m, (v, id))| (m, v, id));
            bar.set_message(stage_message(s.running, s.failed, best));
        }
    }

    pub fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

/// `[running] train 3/6 (running 2, failed 0) best acc 0.9100 · eval 0/0 …`
fn progress_line(exp: &ExperimentSummary) -> String {
    let stages: Vec<String> = exp
        .stages
        .iter()
        .map(|s| {
            let mut t = format!(
                "{} {}/{} (running {}, failed {})",
                s.name, s.done, s.total, s.running, s.failed
            );
            if let (Some(m), Some(v)) = (&s.metric, s.best.as_ref().and_then(|b| b.value)) {
                t.push_str(&format!(" best {m} {v:.4}"));
            }
            t
        })
        .collect();
    format!("[{}] {}", exp.status.as_str(), stages.join(" · "))
}

impl Console {
    pub fn new() -> Console {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        crate::logging::show_above(&multi);
        Console {
            multi,
            bars: HashMap::new(),
            tensorboard: TensorBoardObserver::default(),
        }
    }

    /// A line above the bars (or plain stderr when there are none).
    fn line(&self, text: &str) {
        if self.multi.is_hidden() {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }
}

impl Observer for Console {
    fn on(&mut self, event: Event<'_>) {
        match &event {
            Event::Begin { dir, on, resumed } => {
                let verb = if *resumed { "Resuming" } else { "Running" };
                self.line(&format!("{verb} on {on}; results in {}", dir.display()));
            }
            Event::StageBegin {
                stage,
                total,
                done,
                failed,
            } => {
                let bar = stage_bar(&self.multi, &stage.name, *total as u64);
                bar.set_position(*done as u64);
                let sb = StageBar {
                    bar,
                    metric: stage.metric.clone(),
                    maximize: stage.mode == flambe_config::Mode::Max,
                    running: 0,
                    failed: *failed,
                    best: None,
                };
                sb.refresh();
                self.bars.insert(stage.name.clone(), sb);
            }
            Event::TrialStarted { stage, .. } => {
                if let Some(sb) = self.bars.get_mut(*stage) {
                    sb.running += 1;
                    sb.refresh();
                }
            }
            Event::Metrics {
                stage, id, values, ..
            } => {
                if let Some(sb) = self.bars.get_mut(*stage)
                    && let Some(metric) = &sb.metric
                    && let Some((_, v)) = values.iter().find(|(k, _)| k == metric)
                {
                    let better = sb
                        .best
                        .as_ref()
                        .is_none_or(|(b, _)| if sb.maximize { v > b } else { v < b });
                    if better {
                        sb.best = Some((*v, id.to_string()));
                        sb.refresh();
                    }
                }
            }
            Event::TrialFinished {
                stage,
                id,
                status,
                detail,
            } => {
                if let Some(sb) = self.bars.get_mut(*stage) {
                    sb.running = sb.running.saturating_sub(1);
                    match status {
                        Status::Failed => {
                            sb.failed += 1;
                            sb.bar.inc(1);
                        }
                        Status::Pending => {}
                        _ => sb.bar.inc(1),
                    }
                    sb.refresh();
                }
                if matches!(status, Status::Failed | Status::Pending) {
                    self.line(&format!("trial {id} failed: {detail}"));
                }
            }
            Event::Exploited {
                stage,
                id,
                donor,
                step,
                params,
            } => {
                if let Some(sb) = self.bars.get_mut(*stage) {
                    sb.running = sb.running.saturating_sub(1);
                    sb.refresh();
                }
                let params = serde_json::Value::Object((*params).clone());
                self.line(&format!(
                    "trial {id} (bottom quantile at step {step}) goes on from {donor}'s checkpoint with {params}"
                ));
            }
            Event::Output { id, line, .. } => self.line(&format!("[{id}] {line}")),
            Event::Warning(text) => self.line(&format!("warning: {text}")),
            Event::Extended { grows } => self.line(&format!(
                "Extending the recorded run (its finished trials are kept): {}",
                grows.join("; ")
            )),
            Event::StageEnd { result } => {
                if let Some(sb) = self.bars.remove(&result.name) {
                    sb.bar.finish();
                }
                self.line(&stage_summary(result));
            }
        }
        self.tensorboard.on(event);
        for warning in std::mem::take(&mut self.tensorboard.warnings) {
            self.line(&format!("warning: {warning}"));
        }
    }
}

fn stage_summary(r: &StageResult) -> String {
    let mut s = format!(
        "stage {}: {} trials, {} succeeded, {} stopped early, {} failed",
        r.name,
        r.rows.len(),
        r.count(Status::Succeeded),
        r.count(Status::Stopped),
        r.count(Status::Failed)
    );
    if let (Some(metric), Some(best)) = (&r.metric, r.rows.first())
        && let Some(v) = best.best_metric
    {
        s.push_str(&format!("; best {metric} {v:.4} ({})", best.id));
    }
    s
}

impl flambe_ops::Reporter for Console {
    fn step(&mut self, step: flambe_ops::Step<'_>) {
        if let Some(text) = crate::steps::text(&step) {
            if self.multi.is_hidden() {
                eprintln!("{text}");
            } else {
                let _ = self.multi.println(text);
            }
        }
    }
}

impl flambe_ops::Reporter for RemoteProgress {
    fn step(&mut self, step: flambe_ops::Step<'_>) {
        match step {
            flambe_ops::Step::Progress(exp) => self.update(exp),
            other => {
                if let Some(text) = crate::steps::text(&other) {
                    self.line(&text);
                }
            }
        }
    }
}
