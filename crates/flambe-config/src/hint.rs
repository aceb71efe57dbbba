//! Hints as data: what to do about an error, carried next to it and
//! printed once, after the error and its causes, by the CLI's one renderer.
//!
//! An error type that knows its own hint implements [`Hint`]; an error
//! that gets its hint where it is caught is wrapped with [`with_hint`].

use std::error::Error;
use std::fmt;

/// An error that can say what to do about it.
pub trait Hint {
    /// One line (or a few) of advice; `None` when there is nothing to add.
    fn hint(&self) -> Option<String>;
}

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// An error and a hint given where it was caught. Shows as the error
/// itself; its causes are the error's.
#[derive(Debug)]
pub struct Hinted {
    error: BoxError,
    hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl Error for Hinted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

impl Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

impl Hinted {
    /// The error that was given the hint.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.error.as_ref()
    }
}

/// `error`, with `hint` for the renderer.
pub fn with_hint(error: impl Into<BoxError>, hint: impl Into<String>) -> Hinted {
    Hinted {
        error: error.into(),
        hint: hint.into(),
    }
}
