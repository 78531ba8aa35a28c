//! What a member must remember across a crash: [`Durable`].

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::member::NodeId;

/// State that must survive a crash, emitted as `Output::Persist` and written to stable
/// storage before the driver acts on any later output.
///
/// The incarnation is why: a member that restarts at incarnation 0 while its peers
/// remember it failed at incarnation 7 could never refute. The election fields keep a
/// member from voting twice in one term.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Durable {
    /// The member's own incarnation.
    pub incarnation: u64,
    /// The latest election term the member has seen.
    pub term: u64,
    /// Whom it voted for in `term`.
    pub voted_for: Option<NodeId>,
    /// A voter that started without its durable state and has not yet learned the terms
    /// it may have voted in: it does not vote (see the election's documentation). Kept so
    /// that a second crash while it waits does not end the wait.
    pub abstaining: bool,
}

const MAGIC: [u8; 4] = *b"CNDS";
/// Version 2 added `abstaining`; version 1 files still read (as not abstaining).
const VERSION: u8 = 2;

/// Version 1's body.
#[derive(Deserialize)]
struct DurableV1 {
    incarnation: u64,
    term: u64,
    voted_for: Option<NodeId>,
}

impl Durable {
    /// Durable state with the given incarnation, term and vote.
    pub fn new(incarnation: u64, term: u64, voted_for: Option<NodeId>) -> Self {
        Self { incarnation, term, voted_for, abstaining: false }
    }

    /// The bytes to store: magic, version, postcard body, CRC-32 of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        // Serialising three integers into a Vec cannot fail.
        let body = postcard::to_allocvec(self).unwrap_or_default();
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads what [`Durable::encode`] wrote; a torn or foreign file is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let corrupt = |why| Error::CorruptDurable { why };
        if bytes.len() < MAGIC.len() + 1 + 4 {
            return Err(corrupt("too short"));
        }
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        if content[..4] != MAGIC {
            return Err(corrupt("not a conclave state file"));
        }
        if !(1..=VERSION).contains(&content[4]) {
            return Err(corrupt("unknown version"));
        }
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(content) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let body = &content[5..];
        let read = if content[4] == 1 {
            postcard::take_from_bytes::<DurableV1>(body)
                .map(|(v1, rest)| (Self::new(v1.incarnation, v1.term, v1.voted_for), rest))
        } else {
            postcard::take_from_bytes::<Self>(body)
        };
        match read {
            Ok((durable, [])) => Ok(durable),
            Ok(_) => Err(corrupt("trailing bytes")),
            Err(_) => Err(corrupt("malformed body")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let durable = Durable::new(7, 3, Some(NodeId(2)));
        let bytes = durable.encode();
        assert_eq!(Durable::decode(&bytes), Ok(durable));
        for i in 0..bytes.len() {
            let mut torn = bytes.clone();
            torn[i] ^= 0x40;
            assert!(Durable::decode(&torn).is_err(), "flip at {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(Durable::decode(&bytes[..len]).is_err());
        }
        let abstaining = Durable { abstaining: true, ..Durable::new(1, 4, None) };
        assert_eq!(Durable::decode(&abstaining.encode()), Ok(abstaining));
    }

    #[test]
    fn version_1_files_still_read() {
        // Magic, version 1, postcard (incarnation 7, term 3, Some(n2)), CRC-32.
        let mut v1 = b"CNDS\x01\x07\x03\x01\x02".to_vec();
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Durable::decode(&v1), Ok(Durable::new(7, 3, Some(NodeId(2)))));
        let mut v3 = v1.clone();
        v3[4] = 3;
        assert_eq!(Durable::decode(&v3), Err(Error::CorruptDurable { why: "unknown version" }));
    }
}
