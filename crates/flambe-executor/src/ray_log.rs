//! A Ray job's log, read once and cut into whole lines.
//!
//! The driver hears a job through its log: the wrapper's `@@flambe:` lines
//! (started, every metric, the outcome) between the trial's own output.
//! Ray's Jobs API streams the log over a websocket (`/logs/tail`, what
//! `ray job logs --follow` uses): every byte arrives once, and the stream
//! closes when the job has ended and the log has been read to its end. Where
//! the websocket cannot be had (a proxy that does not pass it, a dropped
//! connection) the whole log is fetched over HTTP instead; either way the
//! bytes go through [`LogLines`], which hands out each line once, whole,
//! however the bytes were split.

use crate::RayApiError;
use crate::ray_auth::ray_token;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A line longer than this is handed out in pieces rather than held whole
/// (a trial printing megabytes without a newline must not grow the driver).
const MAX_LINE: usize = 1 << 20;

/// The log's bytes, deduplicated by offset, cut at newlines.
#[derive(Debug, Default)]
pub struct LogLines {
    /// Bytes of the log already taken in.
    offset: u64,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
}

impl LogLines {
    /// Take in the log's bytes `[start, start + bytes.len())`; those before
    /// the current offset were seen already and are skipped. Returns the
    /// lines the new bytes completed, without their newlines.
    pub fn feed(&mut self, start: u64, bytes: &[u8]) -> Vec<String> {
        let end = start + bytes.len() as u64;
        if end <= self.offset || start > self.offset {
            // Seen already, or a gap (never made by the callers: a stream
            // always starts at 0 and is fed in order).
            return Vec::new();
        }
        let fresh = &bytes[(self.offset - start) as usize..];
        self.offset = end;
        let mut lines = Vec::new();
        let mut rest = fresh;
        while !rest.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match rest.iter().position(|b| *b == b'\n') {
                Some(end) if end <= room => {
                    self.partial.extend_from_slice(&rest[..end]);
                    lines.push(self.take());
                    rest = &rest[end + 1..];
                }
                _ => {
                    let n = room.min(rest.len());
                    self.partial.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.partial.len() >= MAX_LINE {
                        lines.push(self.take());
                    }
                }
            }
        }
        lines
    }

    /// The last line, once the log has ended without a newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

pub type Tail =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Seconds a log stream gets to open.
const TAIL_OPEN_PATIENCE: u64 = 30;

/// Open the job's log stream: `ws://…/api/jobs/ID/logs/tail`, with Ray's
/// token where there is one.
pub async fn open_tail(base: &str, submission: &str) -> Result<Tail, RayApiError> {
    let Some(rest) = base.strip_prefix("http://") else {
        return Err(RayApiError::NotHttp(base.to_string()));
    };
    let url = format!("ws://{rest}/api/jobs/{submission}/logs/tail");
    let mut request = url
        .into_client_request()
        .map_err(|e| RayApiError::Websocket(Box::new(e)))?;
    if let Some(token) = ray_token()
        && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        value.set_sensitive(true);
        request.headers_mut().insert("authorization", value);
    }
    let connect = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(Duration::from_secs(TAIL_OPEN_PATIENCE), connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(RayApiError::Websocket(Box::new(e))),
        Err(_) => Err(RayApiError::Timeout(TAIL_OPEN_PATIENCE)),
    }
}

/// What one read of the stream gave.
pub enum TailRead {
    Bytes(Vec<u8>),
    /// Closed by Ray: the job ended and its log was read to the end.
    Ended,
    /// Broken before the end; the log must be read again from elsewhere.
    Broken(String),
}

/// The next bytes of an open stream; never returns when there is none.
pub async fn next(tail: &mut Option<Tail>) -> TailRead {
    let Some(ws) = tail else {
        return std::future::pending().await;
    };
    loop {
        return match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => TailRead::Bytes(text.as_bytes().to_vec()),
            Some(Ok(WsMessage::Binary(bytes))) => TailRead::Bytes(bytes.to_vec()),
            Some(Ok(WsMessage::Close(_))) | None => TailRead::Ended,
            Some(Ok(_)) => continue,
            Some(Err(e)) => TailRead::Broken(e.to_string()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole_once_however_the_bytes_are_split() {
        let log = "first\n@@flambe:{\"metric\":1}\nthird é line\nno newline at the end";
        let bytes = log.as_bytes();
        // Every way of cutting the log in two, then the whole log again from
        // the start (a second connection, or the HTTP fallback).
        for cut in 0..=bytes.len() {
            let mut lines = LogLines::default();
            let mut got = lines.feed(0, &bytes[..cut]);
            got.extend(lines.feed(cut as u64, &bytes[cut..]));
            got.extend(lines.feed(0, bytes));
            got.extend(lines.finish());
            assert_eq!(
                got,
                [
                    "first",
                    "@@flambe:{\"metric\":1}",
                    "third é line",
                    "no newline at the end"
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_replayed_stream_continues_where_the_last_one_stopped() {
        let mut lines = LogLines::default();
        assert_eq!(lines.feed(0, b"a\nb"), ["a"]);
        // A new connection replays from 0 in other chunks.
        assert!(lines.feed(0, b"a").is_empty());
        assert_eq!(lines.feed(1, b"\nbc\nd"), ["bc"]);
        assert_eq!(lines.finish().as_deref(), Some("d"));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn an_endless_line_is_handed_out_in_pieces() {
        let mut lines = LogLines::default();
        let long = vec![b'x'; MAX_LINE + 10];
        let got = lines.feed(0, &long);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(lines.finish().map(|l| l.len()), Some(10));
    }
}
