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

    #[test]
    fn a_frame_reader_takes_chunks_of_any_size_and_refuses_at_the_prefix() {
        let frame = encode_request(NodeId(7), "echo", b"hello");
        let mut bytes = frame.clone();
        bytes[..4].copy_from_slice(&((frame.len() - 4) as u32).to_be_bytes());
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
