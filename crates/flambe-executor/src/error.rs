//! Why a metrics line was refused, and why Ray's Jobs API did not answer
//! as expected. Both end up as text in a trial's detail or the debug log.

/// A metrics line that is not `{"step": N, "metric": value, ...}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricLineError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object (expected {{\"step\": N, \"metric\": value}})")]
    NotObject,
    /// A `step` that is not a whole number.
    #[error("`step` is not an integer: {0}")]
    BadStep(String),
}

/// A call to Ray's Jobs API that did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RayApiError {
    /// No answer, or an answer that is not the JSON expected.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// Ray answered, and said no.
    #[error("{status}: {message}")]
    Refused {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The last line of Ray's answer (its error, after a traceback).
        message: String,
    },
    /// The dashboard's address is not plain `http://`.
    #[error("no websocket to {0} (plain http only)")]
    NotHttp(String),
    /// The log stream's handshake failed.
    #[error("{0}")]
    Websocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The log stream did not open in time.
    #[error("no answer in {0} s")]
    Timeout(u64),
}
