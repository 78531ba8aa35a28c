//! Who is in the cluster: [`NodeId`], [`Member`] and its [`MemberState`].

use core::fmt;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member's identity, unique within a cluster and stable across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// `n17` for `NodeId(17)`.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Key/value metadata a member publishes about itself (role, zone, version ...).
///
/// Encoded, the tags of one member fit in [`MAX_TAGS_BYTES`].
pub type Tags = BTreeMap<String, String>;

/// The largest encoding of one member's [`Tags`], as memberlist's `MetaMaxSize`.
pub const MAX_TAGS_BYTES: usize = 512;

/// The encoded size of `tags` on the wire: a varint count, then each key and value as a
/// varint length and its bytes (the codec's `put_tags`, whose test pins the two together).
///
/// It is here, not in `wire`, so that `member` stays below `wire`: the wire format is
/// built from members, and the size limit is a member's.
pub fn tags_encoded_len(tags: &Tags) -> usize {
    // Seven bits a byte; zero takes one.
    let varint_len = |value: usize| (usize::BITS as usize - value.max(1).leading_zeros() as usize).div_ceil(7);
    let bytes_len = |b: &str| varint_len(b.len()) + b.len();
    varint_len(tags.len()) + tags.iter().map(|(k, v)| bytes_len(k) + bytes_len(v)).sum::<usize>()
}

/// What the local member believes about a member.
///
/// At equal incarnation, the later state in this order wins: `Alive < Suspect < Failed`,
/// and `Left` (a graceful leave) wins over all three. A higher incarnation always wins,
/// except that nothing revives a member that left or failed at that or a lower incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Answering probes, or not yet suspected.
    Alive,
    /// Missed its probes; the cluster waits for it to refute before declaring it failed.
    Suspect,
    /// Declared failed: its suspicion expired without a refutation.
    Failed,
    /// Left the cluster gracefully.
    Left,
}

impl MemberState {
    /// `true` for the states that count as a member of the cluster (Alive, Suspect).
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Failed => "failed",
            Self::Left => "left",
        })
    }
}

/// One member as the local member sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// Where it receives datagrams.
    pub addr: SocketAddr,
    /// Its incarnation: bumped by the member itself to refute a suspicion.
    pub incarnation: u64,
    /// What the local member believes about it.
    pub state: MemberState,
    /// Its published metadata.
    pub tags: Tags,
}
