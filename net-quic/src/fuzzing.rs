//! The entry points of the fuzz targets that reach the runtime's internals (`durable`,
//! `quic_frames` in `fuzz/`), compiled with `--cfg fuzzing` or the test-only feature
//! `__fuzzing`. The same functions run in the fuzzer and in the test that replays every
//! corpus file, so an input that ever found a bug stays guarded.
//!
//! Each takes arbitrary bytes and panics only on a bug: an assertion names what broke.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conclave_core::{Durable, NodeId};

use crate::driver::Intake;
use crate::rpc::{self, FrameError, FrameReader, Status, DEFAULT_MAX_FRAME};
use crate::state::crash::{CrashFs, Survivors};
use crate::state::{StateDir, FILE, MAX_STATE_FILE, TEMP};

/// Reads the input front to back; past the end it reads zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// The `durable` target. The first byte picks what the rest is:
///
/// - 0, 1: a state file's bytes, given to the decoder and, as `durable.bin` (with a
///   leftover temporary file when 1), to the state directory's reader. Both must agree:
///   what decodes re-encodes to a file that decodes the same, and what does not is a
///   readable "corrupt" error that keeps the member from starting;
/// - 2: a state made from the bytes, whose encoding is cut at an offset the bytes pick:
///   every cut is refused;
/// - otherwise: a store of a new state over an old one (both made from the bytes) cut
///   after a number of system calls and bytes the input picks, then a restart on a disk
///   that kept what the input picks: the member reads the old state or the new one.
///
/// # Panics
///
/// On a bug: a decoder that accepts what does not round-trip, a cut it accepts, a restart
/// that reads neither state.
pub fn durable(data: &[u8]) {
    let mut input = Input(data);
    match input.byte() {
        mode @ (0 | 1) => {
            let bytes = input.0;
            let decoded = Durable::decode(bytes);
            if let Ok(state) = &decoded {
                assert_eq!(Durable::decode(&state.encode()).as_ref(), Ok(state), "a decoded state round-trips");
            }
            let fs = CrashFs::new();
            fs.put(&Path::new("state").join(FILE), bytes);
            if mode == 1 {
                fs.put(&Path::new("state").join(TEMP), &Durable::new(u64::MAX, u64::MAX, None).encode());
            }
            let dir = StateDir::open_on(Arc::new(fs), Path::new("state")).expect("the in-memory directory opens");
            match (dir.load(), decoded) {
                (Ok(Some(read)), Ok(state)) => assert_eq!(read, state, "the reader and the decoder agree"),
                (Err(e), Err(_)) => assert!(e.to_string().contains("is corrupt"), "{e}"),
                (Err(e), Ok(_)) => {
                    assert!(bytes.len() as u64 > MAX_STATE_FILE, "a valid state file was refused: {e}");
                }
                (read, decoded) => panic!("the reader says {read:?}, the decoder {decoded:?}"),
            }
        }
        2 => {
            let voted = input.byte();
            let state = Durable::new(input.u64(), input.u64(), (voted != 0).then(|| NodeId(input.u64())));
            let bytes = state.encode();
            let cut = usize::from(input.byte()) % bytes.len();
            assert!(Durable::decode(&bytes[..cut]).is_err(), "a cut at {cut} of {} B was accepted", bytes.len());
            assert_eq!(Durable::decode(&bytes), Ok(state));
        }
        _ => {
            let (old_vote, new_vote) = (input.byte(), input.byte());
            let old = Durable::new(input.u64(), input.u64(), (old_vote != 0).then_some(NodeId(u64::from(old_vote))));
            let new = Durable::new(input.u64(), input.u64(), (new_vote != 0).then_some(NodeId(u64::from(new_vote))));
            let budget = u64::from(input.byte());
            let survivors = Survivors::ALL[usize::from(input.byte() % 4)];
            let first_store = input.byte() % 4 == 0;
            let fs = CrashFs::new();
            if !first_store {
                fs.put(&Path::new("state").join(FILE), &old.encode());
            }
            let dir =
                StateDir::open_on(Arc::new(fs.clone()), Path::new("state")).expect("the in-memory directory opens");
            fs.crash_after(budget);
            let _ = dir.store(&new);
            let after = StateDir::open_on(Arc::new(fs.after_crash(survivors)), Path::new("state"))
                .expect("the in-memory directory opens");
            let read = after.load().unwrap_or_else(|e| panic!("a cut store made the member refuse to start: {e}"));
            let old = (!first_store).then_some(old);
            assert!(
                read == old || read.as_ref() == Some(&new),
                "cut after {budget}, {survivors:?}: read {read:?}, neither {old:?} nor {new:?}"
            );
        }
    }
}

/// The `quic_frames` target. The input: a byte picking the frame limit, a byte picking
/// how the rest is cut into chunks, then a stream of bytes read twice:
///
/// - as RPC frames, chunk after chunk, as a stream delivers them: the reader holds no
///   more than the limit, refuses an oversized prefix at once, gives a frame only when
///   complete, and what it gives decodes as a request (of this build's version) and as a
///   response that re-encode to the same bytes, or is refused;
/// - as membership datagrams (length-prefixed, some sealed in a valid envelope from the
///   connection's member or another one), given to a core member as the driver gives
///   them (`Node::handle_datagram_from` with the certificate's member): what the runtime
///   counts as received is at most `max_datagram` and names the certificate's member, a
///   datagram sealed by that member is never counted as spoofed, nor one sealed within
///   the cap as malformed.
///
/// # Panics
///
/// On a bug: a reader that holds more than its limit, a frame longer than announced, a
/// request or response that does not round-trip, a datagram passed on that should not be.
pub fn quic_frames(data: &[u8]) {
    let mut input = Input(data);
    let max = match input.byte() % 4 {
        0 => 16,
        1 => 64,
        2 => 1024,
        _ => DEFAULT_MAX_FRAME,
    };
    let chunking = input.byte();
    let stream = input.0;

    // Frames: a new reader (a new stream) after each frame or refusal.
    let mut reader = FrameReader::new(max);
    let mut at = 0;
    let mut step = 0usize;
    while at < stream.len() {
        let size = 1 + (usize::from(chunking.rotate_left(step as u32 % 8)) % 23);
        step += 1;
        let chunk = &stream[at..(at + size).min(stream.len())];
        at += chunk.len();
        let pushed = reader.push(chunk);
        assert!(reader.held() <= 4 + max, "the reader holds {} B for a limit of {max}", reader.held());
        match pushed {
            Ok(None) => {}
            Ok(Some(frame)) => {
                assert!(frame.len() <= max, "a frame of {} B past the limit {max}", frame.len());
                check_frame(&frame);
                reader = FrameReader::new(max);
            }
            Err(FrameError::TooLarge { len, max: limit }) => {
                assert!(len > limit && limit == max);
                reader = FrameReader::new(max);
            }
            Err(_) => reader = FrameReader::new(max),
        }
    }

    // Datagrams, to a member that knows none of the senders (ids 0 to 3).
    let max_datagram = 1 << (10 + usize::from(chunking % 4));
    let peer = NodeId(u64::from(chunking % 3));
    let mut config = conclave_core::Config::lan();
    config.max_datagram = max_datagram;
    let cluster = config.cluster_id;
    let me = NodeId(100);
    let addr = |id: NodeId| std::net::SocketAddr::from(([10, 0, 0, id.0 as u8], 7946));
    let mut node = conclave_core::Node::new(
        conclave_core::NodeConfig::new(me, addr(me), config, u64::from(chunking)),
        conclave_core::Instant::ZERO,
    )
    .expect("the lan preset with a max_datagram in range is valid");
    let mut datagrams = Input(stream);
    while !datagrams.0.is_empty() {
        let kind = datagrams.byte();
        let len = usize::from(datagrams.byte()) * (1 + usize::from(kind % 16));
        let body = datagrams.bytes(len);
        let bytes = match kind % 3 {
            0 => body.to_vec(),
            1 => conclave_core::fuzzing::seal(cluster, peer, body),
            _ => conclave_core::fuzzing::seal(cluster, NodeId(peer.0 + 1), body),
        };
        let taken = node.handle_datagram_from(conclave_core::Instant::ZERO, addr(peer), peer, &bytes);
        while node.poll_output().is_some() {}
        match Intake::of(&taken) {
            Intake::Accept => {
                assert!(bytes.len() <= max_datagram, "a {} B datagram passed a cap of {max_datagram}", bytes.len());
                let header = conclave_core::wire::decode_header(&bytes, max_datagram).expect("accepted: it reads");
                assert_eq!(header.sender, peer);
            }
            Intake::Spoofed => assert!(kind % 3 != 1, "the certificate's own member was called a spoofer"),
            Intake::Malformed => assert!(
                kind % 3 == 0 || bytes.len() > max_datagram,
                "a sealed datagram within the cap was called malformed"
            ),
        }
    }
}

/// A complete frame, read as a request and as a response: whatever decodes re-encodes to
/// the same bytes.
fn check_frame(frame: &[u8]) {
    if let Ok(request) = rpc::decode_request(frame) {
        let again = rpc::encode_request(&request);
        assert_eq!(&again[4..], frame, "a request round-trips");
        assert_eq!(frame.first(), Some(&rpc::REQUEST_VERSION), "a request of another version was read");
        assert!(request.budget <= Duration::from_micros(u32::MAX.into()), "a budget past the wire's range");
    }
    if let Ok((status, body)) = rpc::decode_response(frame) {
        let again = rpc::encode_response(status, body);
        assert_eq!(&again[4..], frame, "a response round-trips");
        assert_eq!(Status::from_byte(status as u8), Some(status));
    }
}
