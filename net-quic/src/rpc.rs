//! RPC framing: one request and one response per bidirectional stream, each a
//! length-prefixed frame no larger than the configured limit.
//!
//! ```text
//! frame    = length: u32 big-endian, then `length` bytes
//! request  = version: u8 (1) | sender id: u64 LE | request number: u64 LE | budget: u32 LE (µs)
//!            | method length: u8 | method (UTF-8) | body
//! response = status: u8 | body
//! status   = 0 ok | 1 no such method | 2 handler error (body: its message)
//!          | 3 refused (malformed, too large, another version; body: why)
//!          | 4 overloaded: shed unserved past the concurrency limit
//!          | 5 expired: the budget ran out before an answer, the work was dropped
//!          | 6 ran already, and its answer was too large to keep for a copy
//! ```
//!
//! - The sender id is checked against the id bound to the connection's certificate: a
//!   request that claims another sender is refused and counted.
//! - The request number names a call across its attempts (retries and hedges carry the
//!   same one), so a worker runs it once within its idempotency window; 0 is a call
//!   that is never retried (`Cluster::call`), which the window does not keep. A worker
//!   keys its window by the certificate's member and the number, so no member can reach
//!   another's entries.
//! - The budget is the time the caller gives the worker, counted from the request's
//!   arrival (its deadline's remainder less what the hop takes; no clock is compared
//!   across members). A worker drops work whose budget ran out. Budgets above `u32::MAX`
//!   µs (71 minutes) are sent as that.
//! - Version 1 is the first format with a version. Members built before it (whose
//!   requests began with the sender id) and members of this one cannot call each other:
//!   their requests read as another version or as a claim of another sender, and are
//!   refused. Upgrade a cluster whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conclave_core::NodeId;

/// The default largest frame, request or response: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// The longest method name.
pub const MAX_METHOD_LEN: usize = u8::MAX as usize;

/// A request, as a handler receives it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The caller, as proven by its certificate.
    pub from: NodeId,
    /// The method name.
    pub method: String,
    /// The payload.
    pub body: Bytes,
}

/// What a handler returns: the response body, or an error message for the caller.
pub type HandlerResult = Result<Bytes, String>;

pub(crate) type Handler = Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// Wraps an async function as a handler.
pub(crate) fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    Arc::new(move |request| Box::pin(f(request)))
}

/// The application error codes of the streams a member resets or stops.
pub(crate) mod code {
    /// A request refused unread (malformed, too large).
    pub(crate) const REFUSED: u32 = 1;
    /// A request claiming another sender than the connection's certificate.
    pub(crate) const SPOOFED: u32 = 2;
    /// A request whose frame did not arrive whole within the request timeout.
    pub(crate) const TIMED_OUT: u32 = 4;
    /// A request its caller no longer waits for (a hedge's loser, an attempt past its
    /// timeout), or whose handler was stopped because of that.
    pub(crate) const CANCELLED: u32 = 5;
}

/// The version of the request format this build speaks.
pub(crate) const REQUEST_VERSION: u8 = 1;
/// A request's bytes before its method: version, sender, number, budget, method length.
const REQUEST_HEAD: usize = 1 + 8 + 8 + 4 + 1;

/// A response's status: what became of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Answered; the body is the handler's.
    Ok = 0,
    /// The member has no handler for the method.
    NoSuchMethod = 1,
    /// The handler returned an error; the body is its message.
    HandlerError = 2,
    /// The request was refused unread (malformed, too large, another version).
    Refused = 3,
    /// Shed unserved: the member serves as many requests as its concurrency limit allows.
    Overloaded = 4,
    /// The request's budget ran out before an answer: the work was dropped.
    Expired = 5,
    /// The request ran here already, and its answer was too large to keep for a copy.
    AnswerNotKept = 6,
}

impl Status {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Ok,
            1 => Self::NoSuchMethod,
            2 => Self::HandlerError,
            3 => Self::Refused,
            4 => Self::Overloaded,
            5 => Self::Expired,
            6 => Self::AnswerNotKept,
            _ => return None,
        })
    }
}

/// A request frame, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestFrame<'a> {
    /// The member the request claims to come from.
    pub(crate) sender: NodeId,
    /// The call's number across its attempts; 0: none (never retried).
    pub(crate) number: u64,
    /// The time the caller gives the worker, from the request's arrival.
    pub(crate) budget: Duration,
    /// The method.
    pub(crate) method: &'a str,
    /// The payload.
    pub(crate) body: &'a [u8],
}

/// The length of a request frame (without its length prefix) for `method` and a body of
/// `body` bytes.
pub(crate) fn request_len(method: &str, body: usize) -> usize {
    REQUEST_HEAD + method.len() + body
}

/// A budget as the wire carries it: whole microseconds, at most `u32::MAX`.
pub(crate) fn budget_micros(budget: Duration) -> u32 {
    u32::try_from(budget.as_micros()).unwrap_or(u32::MAX)
}

/// Why a frame was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The announced length exceeds the limit.
    TooLarge { len: usize, max: usize },
    /// The stream ended inside the frame, or failed.
    Truncated,
    /// The frame's content does not parse.
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(f, "frame of {len} B exceeds the limit of {max} B"),
            Self::Truncated => f.write_str("stream ended inside a frame"),
            Self::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

pub(crate) fn encode_request(request: &RequestFrame<'_>) -> Vec<u8> {
    let RequestFrame { sender, number, budget, method, body } = *request;
    let mut out = start_frame(REQUEST_HEAD + method.len() + body.len());
    out.push(REQUEST_VERSION);
    out.extend_from_slice(&sender.0.to_le_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(&budget_micros(budget).to_le_bytes());
    // Callers check the method length first.
    out.push(u8::try_from(method.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode_request(frame: &[u8]) -> Result<RequestFrame<'_>, FrameError> {
    let (&version, rest) = frame.split_first().ok_or(FrameError::Malformed("empty request"))?;
    if version != REQUEST_VERSION {
        return Err(FrameError::Malformed("another version of the request format (this member speaks 1)"));
    }
    let (sender, rest) = rest.split_first_chunk::<8>().ok_or(FrameError::Malformed("no sender"))?;
    let (number, rest) = rest.split_first_chunk::<8>().ok_or(FrameError::Malformed("no request number"))?;
    let (budget, rest) = rest.split_first_chunk::<4>().ok_or(FrameError::Malformed("no budget"))?;
    let (&len, rest) = rest.split_first().ok_or(FrameError::Malformed("no method length"))?;
    if rest.len() < usize::from(len) {
        return Err(FrameError::Malformed("method longer than the frame"));
    }
    let (method, body) = rest.split_at(usize::from(len));
    let method = std::str::from_utf8(method).map_err(|_| FrameError::Malformed("method is not UTF-8"))?;
    Ok(RequestFrame {
        sender: NodeId(u64::from_le_bytes(*sender)),
        number: u64::from_le_bytes(*number),
        budget: Duration::from_micros(u64::from(u32::from_le_bytes(*budget))),
        method,
        body,
    })
}

pub(crate) fn encode_response(status: Status, body: &[u8]) -> Vec<u8> {
    let mut out = start_frame(1 + body.len());
    out.push(status as u8);
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode_response(frame: &[u8]) -> Result<(Status, &[u8]), FrameError> {
    let (&status, body) = frame.split_first().ok_or(FrameError::Malformed("empty response"))?;
    let status = Status::from_byte(status).ok_or(FrameError::Malformed("unknown status"))?;
    Ok((status, body))
}

/// Makes room for the length prefix at the front of a frame being encoded.
fn start_frame(capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + capacity);
    out.extend_from_slice(&[0; 4]);
    out
}

/// Fills in the length prefix of a frame made by `encode_request` or `encode_response`:
/// the bytes as they go on the stream.
pub(crate) fn seal_frame(mut frame: Vec<u8>) -> Vec<u8> {
    // Frames are checked against the limit (far below 4 GiB) before they are written.
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Writes one frame made by `encode_request` or `encode_response` (the length prefix is
/// filled in here): one write, so small frames go out in one packet.
pub(crate) async fn write_frame(send: &mut quinn::SendStream, frame: Vec<u8>) -> Result<(), quinn::WriteError> {
    send.write_all(&seal_frame(frame)).await
}

/// Reads one frame of at most `max` bytes; a larger announced length is refused before
/// anything more is read.
pub(crate) async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut reader = FrameReader::new(max);
    loop {
        let want = reader.wanted();
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => {
                if let Some(frame) = reader.push(&chunk.bytes)? {
                    return Ok(frame);
                }
            }
            Ok(None) | Err(_) => return Err(FrameError::Truncated),
        }
    }
}

/// One frame, read from chunks as they arrive (no IO: [`read_frame`] feeds it a stream,
/// the `quic_frames` fuzz target arbitrary bytes). It holds at most the 4-byte prefix and
/// `max` bytes of body, and reserves room only as bytes arrive, so an announced length
/// costs nothing by itself.
#[derive(Debug)]
pub(crate) struct FrameReader {
    max: usize,
    prefix: [u8; 4],
    prefix_len: usize,
    /// The announced length, once the prefix is complete.
    len: Option<usize>,
    body: Vec<u8>,
}

impl FrameReader {
    /// A reader of one frame of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self { max, prefix: [0; 4], prefix_len: 0, len: None, body: Vec::new() }
    }

    /// How many bytes the frame still needs (at least 1 until it is complete).
    pub(crate) fn wanted(&self) -> usize {
        match self.len {
            None => 4 - self.prefix_len,
            Some(len) => (len - self.body.len()).max(1),
        }
    }

    /// Takes the next bytes of the stream: the frame once it is complete, a refusal as soon
    /// as the prefix announces too much. Bytes beyond the frame are refused as well (one
    /// frame per stream direction).
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if self.len.is_none() {
            let take = bytes.len().min(4 - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.prefix) as usize;
            if len > self.max {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            self.len = Some(len);
            // Room grows as bytes arrive, 64 KiB at a time at most.
            self.body.reserve(len.min(64 * 1024));
        }
        let len = self.len.unwrap_or_default();
        if bytes.len() > len - self.body.len() {
            return Err(FrameError::Malformed("bytes after the frame"));
        }
        let need = self.body.len() + bytes.len();
        if need > self.body.capacity() {
            // Doubling, but never past the announced length: the body holds at most `max`.
            let room = need.max(self.body.capacity().saturating_mul(2)).min(len);
            self.body.reserve_exact(room - self.body.len());
        }
        self.body.extend_from_slice(bytes);
        if self.body.len() == len {
            return Ok(Some(std::mem::take(&mut self.body)));
        }
        Ok(None)
    }

    /// The bytes held now (prefix and body), for the fuzz target's bound on memory.
    #[cfg(any(fuzzing, feature = "__fuzzing"))]
    pub(crate) fn held(&self) -> usize {
        self.prefix_len + self.body.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, body: &[u8]) -> Vec<u8> {
        let frame = RequestFrame { sender: NodeId(7), number: 9, budget: Duration::from_millis(250), method, body };
        encode_request(&frame)[4..].to_vec()
    }

    #[test]
    fn requests_round_trip_and_any_bytes_are_safe() {
        let frame = request("echo", b"hi");
        let expected = RequestFrame {
            sender: NodeId(7),
            number: 9,
            budget: Duration::from_millis(250),
            method: "echo",
            body: b"hi",
        };
        assert_eq!(decode_request(&frame), Ok(expected));
        for len in 0..REQUEST_HEAD {
            assert!(decode_request(&frame[..len]).is_err());
        }
        let mut bad = frame.clone();
        bad[REQUEST_HEAD - 1] = 200;
        assert_eq!(decode_request(&bad), Err(FrameError::Malformed("method longer than the frame")));
        let mut not_utf8 = frame.clone();
        not_utf8[REQUEST_HEAD] = 0xff;
        assert!(decode_request(&not_utf8).is_err());
        let mut other_version = frame;
        other_version[0] = 2;
        assert!(matches!(decode_request(&other_version), Err(FrameError::Malformed(why)) if why.contains("version")));
        let response = encode_response(Status::HandlerError, b"x");
        assert_eq!(decode_response(&response[4..]), Ok((Status::HandlerError, &b"x"[..])));
        assert!(decode_response(&[]).is_err());
        assert!(decode_response(&[7]).is_err());
        for byte in 0..=6 {
            let status = Status::from_byte(byte).expect("a status");
            assert_eq!(status as u8, byte);
        }
    }

    /// The format, byte by byte: a change to it must change this test (and the frame's
    /// documentation, and the fuzz target's seeds).
    #[test]
    fn the_request_format_is_as_documented() {
        let frame = RequestFrame {
            sender: NodeId(0x0102),
            number: 0x0a0b,
            budget: Duration::from_micros(0x0304_0506),
            method: "ab",
            body: b"z",
        };
        let golden: &[u8] = &[
            0, 0, 0, 25, // length
            1,  // version
            0x02, 0x01, 0, 0, 0, 0, 0, 0, // sender
            0x0b, 0x0a, 0, 0, 0, 0, 0, 0, // request number
            0x06, 0x05, 0x04, 0x03, // budget, µs
            2, b'a', b'b', // method
            b'z', // body
        ];
        assert_eq!(seal_frame(encode_request(&frame)), golden);
        assert_eq!(seal_frame(encode_response(Status::Overloaded, b"")), [0, 0, 0, 1, 4]);
        let long = RequestFrame { budget: Duration::from_secs(10_000), ..frame };
        assert_eq!(
            decode_request(&encode_request(&long)[4..]).map(|r| r.budget),
            Ok(Duration::from_micros(u32::MAX.into()))
        );
    }

    #[test]
    fn a_frame_reader_takes_chunks_of_any_size_and_refuses_at_the_prefix() {
        let bytes = seal_frame(encode_request(&RequestFrame {
            sender: NodeId(7),
            number: 0,
            budget: Duration::from_secs(1),
            method: "echo",
            body: b"hello",
        }));
        for chunk in 1..bytes.len() {
            let mut reader = FrameReader::new(64);
            let mut out = None;
            for piece in bytes.chunks(chunk) {
                assert!(out.is_none(), "a frame came before its last byte");
                out = reader.push(piece).unwrap();
            }
            assert_eq!(out.as_deref(), Some(&bytes[4..]), "chunks of {chunk}");
        }
        let mut reader = FrameReader::new(16);
        assert_eq!(reader.push(&[0, 0]), Ok(None));
        assert_eq!(reader.push(&[1, 0, 9]), Err(FrameError::TooLarge { len: 256, max: 16 }));
        let mut reader = FrameReader::new(16);
        assert_eq!(reader.push(&[0, 0, 0, 1, 5, 6]), Err(FrameError::Malformed("bytes after the frame")));
        let mut reader = FrameReader::new(16);
        assert_eq!(reader.push(&[0, 0, 0, 0]), Ok(Some(Vec::new())), "an empty frame");
    }
}
