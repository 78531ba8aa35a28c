//! Fault plans: what goes wrong, and when.
//!
//! A plan is data ([`FaultPlan`], serde for machines) with a text form for people:
//! `at 10s crash n5; at 40s partition n1,n2 | n3-n5; at 60s heal` (see [`text`] for the
//! whole grammar). What a run prints, a test reports and a plan file holds is that text,
//! and it parses back to the very same plan.

use std::time::Duration;

use conclave_core::{Instant, NodeId};
use serde::{Deserialize, Serialize};

use crate::network::{LinkParams, LinkSelector};

pub mod text;

pub use text::{format_duration, parse_duration};

/// What a restarted member finds on its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disk {
    /// The last `Durable` it persisted (a process crash).
    Kept,
    /// Nothing (a new machine, a wiped volume): the `Durable` bytes are lost.
    Amnesia,
}

/// One thing that goes wrong (or stops going wrong).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Fault {
    /// The member's process dies: no more output, nothing delivered to it, its timers gone.
    Crash(NodeId),
    /// The member's process dies at its next durable write (`Output::Persist`), before
    /// the write reaches its disk: the write and every output after it (the vote it
    /// guarded, say) are lost. Until then it runs; a restart first disarms it. What the
    /// checkers see is a [`Fault::Crash`] at that moment.
    CrashAtPersist(NodeId),
    /// The member's process starts again (after a crash, or killing it first) and rejoins
    /// through the seeds.
    Restart {
        /// The member.
        node: NodeId,
        /// What survives on its disk.
        disk: Disk,
    },
    /// The process stalls (GC, CPU starvation, SIGSTOP): its timers and its input wait,
    /// and are handled, in arrival order, when the pause ends.
    Pause {
        /// The member.
        node: NodeId,
        /// How long, in global time.
        duration: Duration,
    },
    /// Every datagram the member handles takes this long to process, one after another
    /// (zero restores the normal speed). Its timers wait behind the backlog.
    Slow {
        /// The member.
        node: NodeId,
        /// Processing time per datagram.
        per_message: Duration,
    },
    /// Split the cluster: members in different groups cannot reach each other. Members
    /// named in no group form one more group together. Replaces any earlier partition.
    Partition(Vec<Vec<NodeId>>),
    /// Datagrams from each of `from` to each of `to` are lost; the other direction works.
    OneWay {
        /// The senders cut off.
        from: Vec<NodeId>,
        /// The receivers they can no longer reach.
        to: Vec<NodeId>,
    },
    /// Partial connectivity: only these links are cut, both directions.
    CutLinks(Vec<(NodeId, NodeId)>),
    /// Every partition, one-way cut and cut link is healed (link parameters stay).
    Heal,
    /// Link parameters change for the selected links.
    SetLinks {
        /// Which links.
        links: LinkSelector,
        /// Their new behaviour.
        params: LinkParams,
    },
    /// The member's clock is set to `offset` in `local = offset + (1 + drift) * global`
    /// (a step: the member's clock jumps by the change).
    ClockOffset {
        /// The member.
        node: NodeId,
        /// Nanoseconds, may be negative.
        offset_nanos: i64,
    },
    /// The member's clock runs fast (positive) or slow (negative) by `ppm` parts per
    /// million from now on; its clock reading does not jump.
    ClockDrift {
        /// The member.
        node: NodeId,
        /// Parts per million.
        ppm: f64,
    },
    /// The member's clock steps by `nanos` (may be negative). Like a monotonic clock, the
    /// member's `now` never goes back: after a backward step it stands still until the
    /// clock catches up.
    ClockJump {
        /// The member.
        node: NodeId,
        /// The step, in nanoseconds.
        nanos: i64,
    },
}

/// Which members a fault names or affects (the failure-verdict checker keeps its own,
/// finer account of whom each fault excuses and until when: see `NoFalseVerdicts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Every member (a network-wide change).
    All,
    /// These members.
    Members(Vec<NodeId>),
}

impl Fault {
    /// The members this fault touches.
    pub fn touched(&self) -> Touched {
        match self {
            Self::Crash(node)
            | Self::CrashAtPersist(node)
            | Self::Restart { node, .. }
            | Self::Pause { node, .. }
            | Self::Slow { node, .. }
            | Self::ClockOffset { node, .. }
            | Self::ClockDrift { node, .. }
            | Self::ClockJump { node, .. } => Touched::Members(vec![*node]),
            // Unlisted members form a group too, so every member is on some side.
            Self::Partition(_) => Touched::All,
            Self::OneWay { from, to } => Touched::Members(from.iter().chain(to).copied().collect()),
            Self::CutLinks(links) => Touched::Members(links.iter().flat_map(|&(a, b)| [a, b]).collect()),
            Self::Heal => Touched::Members(Vec::new()),
            Self::SetLinks { links, .. } => match *links {
                LinkSelector::All => Touched::All,
                LinkSelector::Between(a, b) | LinkSelector::OneWay { from: a, to: b } => Touched::Members(vec![a, b]),
                LinkSelector::From(a) | LinkSelector::To(a) => Touched::Members(vec![a]),
            },
        }
    }

    /// Every member the fault names (a partition's groups, a link selector's ends; a
    /// network-wide change names none).
    pub fn named(&self) -> Vec<NodeId> {
        match self {
            Self::Partition(groups) => groups.iter().flatten().copied().collect(),
            other => match other.touched() {
                Touched::Members(members) => members,
                Touched::All => Vec::new(),
            },
        }
    }

    /// A short name for traces and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Crash(_) => "crash",
            Self::CrashAtPersist(_) => "crash-at-persist",
            Self::Restart { .. } => "restart",
            Self::Pause { .. } => "pause",
            Self::Slow { .. } => "slow",
            Self::Partition(_) => "partition",
            Self::OneWay { .. } => "one-way",
            Self::CutLinks(_) => "cut-links",
            Self::Heal => "heal",
            Self::SetLinks { .. } => "set-links",
            Self::ClockOffset { .. } => "clock-offset",
            Self::ClockDrift { .. } => "clock-drift",
            Self::ClockJump { .. } => "clock-jump",
        }
    }
}

/// One fault at one virtual time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When, in global virtual time.
    pub at: Instant,
    /// What.
    pub fault: Fault,
}

/// A list of faults at virtual times: the same plan runs on both engines. Its text form
/// (`Display`, `FromStr`; see [`text`]) is what a failing run prints and a plan file
/// holds; its JSON form is for machines.
///
/// ```
/// use conclave_core::{Instant, NodeId};
/// use conclave_sim::{Disk, Fault, FaultPlan};
///
/// let plan = FaultPlan::new()
///     .at(Instant::from_secs(10), Fault::Crash(NodeId(2)))
///     .at(Instant::from_secs(20), Fault::Restart { node: NodeId(2), disk: Disk::Kept });
/// assert_eq!(plan.to_string(), "at 10s crash n2; at 20s restart n2 with disk");
/// assert_eq!("at 10s crash n2\nat 20s restart n2 with disk".parse::<FaultPlan>().unwrap(), plan);
/// assert_eq!(FaultPlan::from_json(&plan.to_json()).unwrap(), plan);
/// assert_eq!(plan.last_at(), Some(Instant::from_secs(20)));
/// assert_eq!(plan.highest_member(), Some(NodeId(2)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// The steps, in the order they were added; the engine applies them by time, and
    /// steps at the same time in this order.
    pub steps: Vec<Step>,
}

impl FaultPlan {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// This plan with `fault` at `at`.
    pub fn at(mut self, at: Instant, fault: Fault) -> Self {
        self.steps.push(Step { at, fault });
        self
    }

    /// Adds `fault` at `at`.
    pub fn push(&mut self, at: Instant, fault: Fault) {
        self.steps.push(Step { at, fault });
    }

    /// The time of the last step, if any: after it, the network and the members stay as
    /// they are (so liveness checks count from here).
    pub fn last_at(&self) -> Option<Instant> {
        self.steps.iter().map(|s| s.at).max()
    }

    /// Whether the plan has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The highest member id any step names, if any: a cluster running the plan needs at
    /// least that many members.
    pub fn highest_member(&self) -> Option<NodeId> {
        self.steps.iter().flat_map(|s| s.fault.named()).max()
    }

    /// The plan as one line of JSON.
    pub fn to_json(&self) -> String {
        // A plan is plain data (no maps with non-string keys): serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads what [`FaultPlan::to_json`] wrote.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}
