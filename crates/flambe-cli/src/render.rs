//! The one place errors are printed: the error, each cause once, then
//! every hint the chain carries (`flambe_config::hint`). Config mistakes
//! exit 2 (as usage errors do), everything else 1.

use flambe_config::ConfigError;
use flambe_config::{Hint, Hinted};
use std::error::Error;
use std::process::ExitCode;

/// Exit code for invalid input (config files, flags).
pub const EXIT_INVALID: u8 = 2;

/// The hints an error in the chain carries, of the types that know theirs:
/// an error given a hint where it was caught may know one of its own.
fn hints_of(err: &(dyn Error + 'static)) -> Vec<String> {
    if let Some(h) = err.downcast_ref::<Hinted>() {
        let inner: &(dyn Error + 'static) = h.error();
        return own_hint(inner).into_iter().chain(h.hint()).collect();
    }
    own_hint(err).into_iter().collect()
}

fn own_hint(err: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = err.downcast_ref::<ConfigError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<flambe_experiment::EngineError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<flambe_cluster::ClusterError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<flambe_aws::AwsError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<flambe_cluster::HostError>() {
        return e.hint();
    }
    if let Some(e) = err.downcast_ref::<flambe_ops::DriverGone>() {
        return e.hint();
    }
    None
}

fn is_config_error(err: &(dyn Error + 'static)) -> bool {
    err.downcast_ref::<ConfigError>().is_some()
        || err
            .downcast_ref::<Hinted>()
            .is_some_and(|h| h.error().downcast_ref::<ConfigError>().is_some())
}

pub fn error(err: &anyhow::Error) -> ExitCode {
    let mut shown = err.to_string();
    eprintln!("error: {shown}");
    let mut hints: Vec<String> = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        // A wrapper and the error it wraps may both know the same hint.
        for h in hints_of(cause) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
        if i == 0 {
            continue;
        }
        // Many errors already quote their cause; say each thing once.
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown = text;
        }
    }
    for hint in hints {
        eprintln!("hint: {hint}");
    }
    if err.chain().any(is_config_error) {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::FAILURE
    }
}
