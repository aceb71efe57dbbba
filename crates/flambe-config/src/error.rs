//! Config errors that say where (file:line:column, with the line quoted),
//! what was found, what was expected, and what to do.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in the source: 1-based line, 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A config file's text, kept so errors can quote the offending line.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file's path, as errors name it.
    pub path: PathBuf,
    /// The file's text, for quoting the offending line.
    pub text: Arc<str>,
}

impl Source {
    /// The text of the file at `path`.
    pub fn new(path: impl Into<PathBuf>, text: &str) -> Source {
        Source {
            path: path.into(),
            text: Arc::from(text),
        }
    }

    /// An error at `pos`, underlining `width` characters of that line.
    pub fn error_at(&self, pos: Pos, width: usize, message: String) -> ConfigError {
        let line_text = self
            .text
            .lines()
            .nth(pos.line.saturating_sub(1))
            .map(|l| l.chars().take(200).collect::<String>());
        ConfigError(Box::new(Details {
            file: self.path.clone(),
            line: Some(pos.line),
            col: Some(pos.col),
            width: width.max(1),
            line_text,
            message,
            expected: None,
            hint: None,
        }))
    }
}

/// An invalid config. Rendered by `Display` in the rustc/uv style. Boxed so
/// that `Result<_, ConfigError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError(Box<Details>);

impl std::ops::Deref for ConfigError {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

/// Where and what: the parts of a [`ConfigError`].
#[derive(Debug, Clone)]
pub struct Details {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub width: usize,
    pub line_text: Option<String>,
    pub message: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about the file as a whole (unreadable, empty, too large).
    pub fn whole_file(file: &Path, message: String) -> ConfigError {
        ConfigError(Box::new(Details {
            file: file.to_path_buf(),
            line: None,
            col: None,
            width: 1,
            line_text: None,
            message,
            expected: None,
            hint: None,
        }))
    }

    /// Say what was expected there.
    pub fn expected(mut self, what: impl Into<String>) -> ConfigError {
        self.0.expected = Some(what.into());
        self
    }

    /// Add what to do about it.
    pub fn hint(mut self, what: impl Into<String>) -> ConfigError {
        self.0.hint = Some(what.into());
        self
    }

    /// `file:line:col`, or just `file` when the error has no position.
    pub fn location(&self) -> String {
        match (self.line, self.col) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file.display()),
            _ => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        write!(f, "  --> {}", self.location())?;
        if let (Some(line), Some(col), Some(text)) = (self.line, self.col, &self.line_text) {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            // Tabs would shift the caret: show them as single spaces.
            let shown: String = text
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let caret_width = self
                .width
                .min(shown.chars().count().saturating_sub(col - 1))
                .max(1);
            write!(f, "\n {pad} |\n {line} | {shown}\n {pad} | ")?;
            write!(f, "{}{}", " ".repeat(col - 1), "^".repeat(caret_width))?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  = expected {expected}")?;
        }
        Ok(())
    }
}

/// The hint is printed by the renderer, after the whole chain, as every
/// other error's is.
impl crate::hint::Hint for ConfigError {
    fn hint(&self) -> Option<String> {
        self.0.hint.clone()
    }
}
