//! The one place errors are printed. Config mistakes exit 2 (as usage
//! errors do), everything else 1.

use flambe_config::ConfigError;
use std::process::ExitCode;

/// Exit code for invalid input (config files, flags).
pub const EXIT_INVALID: u8 = 2;

pub fn error(err: &anyhow::Error) -> ExitCode {
    if let Some(config) = err.downcast_ref::<ConfigError>() {
        eprintln!("error: {config}");
        return ExitCode::from(EXIT_INVALID);
    }
    let mut shown = err.to_string();
    eprintln!("error: {shown}");
    for cause in err.chain().skip(1) {
        // Many errors already quote their cause; say each thing once.
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown = text;
        }
    }
    ExitCode::FAILURE
}
