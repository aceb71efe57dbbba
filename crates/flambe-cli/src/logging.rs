//! `-v` / `-vv`: flambe's own `tracing` events (spans carry the host, stage
//! and trial) on stderr, above the progress bars when there are bars.
//!
//! - default: nothing but flambe's own output (warnings included);
//! - `-v`: flambe's steps at info: hosts connected, commands run, trials
//!   launched and finished, Ray jobs submitted (and trials' output lines);
//! - `-vv`: flambe at debug, plus the AWS SDK's and the HTTP clients'
//!   events (reqwest, hyper, the SDK's smithy runtime).
//!
//! `FLAMBE_LOG` (`target=level,…`, as `flambe_cluster=debug,aws_smithy_runtime=trace`)
//! replaces the level sets above.

use indicatif::MultiProgress;
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The crates of this workspace, as tracing targets.
const OURS: &[&str] = &[
    "flambe",
    "flambe_cli",
    "flambe_config",
    "flambe_cluster",
    "flambe_experiment",
    "flambe_executor",
    "flambe_report",
    "flambe_aws",
    "flambe_ops",
];

/// Clients whose events `-vv` shows too.
const CLIENTS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_sdk_ec2",
    "aws_sdk_cloudwatch",
    "reqwest",
    "hyper",
    "hyper_util",
    "tokio_tungstenite",
    "tungstenite",
];

/// The bars on screen, if any: log lines are printed above them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Log lines go above these bars from now on.
pub fn show_above(bars: &MultiProgress) {
    if let Ok(mut slot) = BARS.lock() {
        *slot = (!bars.is_hidden()).then(|| bars.clone());
    }
}

/// What `verbose` (the count of `-v`) turns on.
fn filter(verbose: u8) -> Option<Targets> {
    if let Ok(spec) = std::env::var("FLAMBE_LOG")
        && let Ok(targets) = Targets::from_str(&spec)
    {
        return Some(targets);
    }
    let (ours, clients) = match verbose {
        0 => return None,
        1 => (tracing::Level::INFO, None),
        _ => (tracing::Level::DEBUG, Some(tracing::Level::DEBUG)),
    };
    let mut targets = Targets::new();
    for t in OURS {
        targets = targets.with_target(*t, ours);
    }
    if let Some(level) = clients {
        for t in CLIENTS {
            targets = targets.with_target(*t, level);
        }
    }
    Some(targets)
}

/// Install the subscriber for this run; quiet (none) by default.
pub fn init(verbose: u8) {
    let Some(targets) = filter(verbose) else {
        return;
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(AboveBars)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    // `try_init` also turns `log` records (reqwest's) into tracing events.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(targets))
        .try_init();
}

struct AboveBars;

/// One event's text, written out whole when dropped.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        match bars {
            Some(bars) => {
                let _ = bars.println(text.trim_end());
            }
            None => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }
}

impl<'a> MakeWriter<'a> for AboveBars {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}
