//! RPC framing: one request and one response per bidirectional stream, each a
//! length-prefixed frame no larger than the configured limit.
//!
//! ```text
//! frame    = length: u32 big-endian, then `length` bytes
//! request  = sender id: u64 little-endian | method length: u8 | method (UTF-8) | body
//! response = status: u8 (0 ok, 1 no such method, 2 handler error, 3 refused) | body
//! ```
//!
//! The sender id is checked against the id bound to the connection's certificate: a
//! request that claims another sender is refused and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    NoSuchMethod = 1,
    HandlerError = 2,
    Refused = 3,
}

impl Status {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Ok,
            1 => Self::NoSuchMethod,
            2 => Self::HandlerError,
            3 => Self::Refused,
            _ => return None,
        })
    }
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

pub(crate) fn encode_request(sender: NodeId, method: &str, body: &[u8]) -> Vec<u8> {
    let mut out = start_frame(9 + method.len() + body.len());
    out.extend_from_slice(&sender.0.to_le_bytes());
    // Callers check the method length first.
    out.push(u8::try_from(method.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode_request(frame: &[u8]) -> Result<(NodeId, &str, &[u8]), FrameError> {
    let (sender, rest) = frame.split_first_chunk::<8>().ok_or(FrameError::Malformed("no sender"))?;
    let (&len, rest) = rest.split_first().ok_or(FrameError::Malformed("no method length"))?;
    if rest.len() < usize::from(len) {
        return Err(FrameError::Malformed("method longer than the frame"));
    }
    let (method, body) = rest.split_at(usize::from(len));
    let method = std::str::from_utf8(method).map_err(|_| FrameError::Malformed("method is not UTF-8"))?;
    Ok((NodeId(u64::from_le_bytes(*sender)), method, body))
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

/// Writes one frame made by `encode_request` or `encode_response` (the length prefix is
/// filled in here): one write, so small frames go out in one packet.
pub(crate) async fn write_frame(send: &mut quinn::SendStream, mut frame: Vec<u8>) -> Result<(), quinn::WriteError> {
    // Frames are checked against the limit (far below 4 GiB) before they are written.
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
    send.write_all(&frame).await
}

/// Reads one frame of at most `max` bytes; a larger announced length is refused before
/// anything more is read.
pub(crate) async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|_| FrameError::Truncated)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // Room grows as bytes arrive: an announced length reserves nothing by itself.
    let mut frame = Vec::with_capacity(len.min(64 * 1024));
    while frame.len() < len {
        match recv.read_chunk(len - frame.len(), true).await {
            Ok(Some(chunk)) => frame.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(_) => return Err(FrameError::Truncated),
        }
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_any_bytes_are_safe() {
        let frame = encode_request(NodeId(7), "echo", b"hi")[4..].to_vec();
        assert_eq!(decode_request(&frame), Ok((NodeId(7), "echo", &b"hi"[..])));
        for len in 0..9 {
            assert!(decode_request(&frame[..len]).is_err());
        }
        let mut bad = frame.clone();
        bad[8] = 200;
        assert_eq!(decode_request(&bad), Err(FrameError::Malformed("method longer than the frame")));
        let mut not_utf8 = frame;
        not_utf8[9] = 0xff;
        assert!(decode_request(&not_utf8).is_err());
        let response = encode_response(Status::HandlerError, b"x");
        assert_eq!(decode_response(&response[4..]), Ok((Status::HandlerError, &b"x"[..])));
        assert!(decode_response(&[]).is_err());
        assert!(decode_response(&[9]).is_err());
    }
}
