//! The outputs sink every part of a node writes to: datagrams, events and durable state,
//! in the order they are produced, and the counters of everything that went in and out.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::durable::Durable;
use crate::member::NodeId;
use crate::output::{Event, Output, Stats, Transmit};
use crate::wire::{self, Header, Message, MessageKind, WireError};

/// Where a datagram goes: an address, and the member it is for when this member knows it
/// (what [`Transmit::to_id`] carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct To {
    pub(crate) addr: SocketAddr,
    pub(crate) id: Option<NodeId>,
}

impl To {
    /// Member `id`, at `addr` (where it is held, or where its datagram came from).
    pub(crate) fn member(id: NodeId, addr: SocketAddr) -> Self {
        Self { addr, id: Some(id) }
    }

    /// An address whose member is not known: a seed.
    pub(crate) fn addr(addr: SocketAddr) -> Self {
        Self { addr, id: None }
    }
}

/// Output slots a drained outbox keeps (a few datagrams and events per input).
const OUTPUTS_KEPT: usize = 16;

/// A node's pending outputs and traffic counters.
#[derive(Debug)]
pub(crate) struct Outbox {
    outputs: VecDeque<Output>,
    stats: Stats,
    /// The envelope of every datagram this member sends.
    header: Header,
    max_datagram: usize,
}

impl Outbox {
    pub(crate) fn new(header: Header, max_datagram: usize) -> Self {
        Self { outputs: VecDeque::new(), stats: Stats::default(), header, max_datagram }
    }

    pub(crate) fn header(&self) -> Header {
        self.header
    }

    pub(crate) fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Encodes and sends a message that carries no piggybacked gossip.
    pub(crate) fn send(&mut self, to: To, message: &Message) {
        match wire::encode(self.header, message, self.max_datagram) {
            Ok(payload) => self.transmit(to, message.kind(), payload),
            Err(_) => debug_assert!(false, "messages are sized to fit before they are built"),
        }
    }

    /// Sends an encoded datagram of `kind`, `gossip` items among its contents.
    pub(crate) fn transmit_with_gossip(&mut self, to: To, kind: MessageKind, payload: Vec<u8>, gossip: usize) {
        self.stats.gossip_sent += gossip as u64;
        self.transmit(to, kind, payload);
    }

    /// Sends an encoded datagram of `kind`.
    pub(crate) fn transmit(&mut self, to: To, kind: MessageKind, payload: Vec<u8>) {
        self.stats.sent.add(kind);
        self.stats.bytes_sent += payload.len() as u64;
        self.outputs.push_back(Output::Transmit(Transmit { to: to.addr, to_id: to.id, payload }));
    }

    /// Tells the application.
    pub(crate) fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Asks the driver to store `durable` before it acts on anything after it.
    pub(crate) fn persist(&mut self, durable: Durable) {
        self.outputs.push_back(Output::Persist(durable));
    }

    /// Counts an accepted datagram of `kind`, `len` bytes long with `gossip` items.
    pub(crate) fn received(&mut self, kind: MessageKind, len: usize, gossip: usize) {
        self.stats.received.add(kind);
        self.stats.bytes_received += len as u64;
        self.stats.gossip_received += gossip as u64;
    }

    /// Counts a rejected datagram.
    pub(crate) fn rejected(&mut self, error: &WireError) {
        self.stats.dropped.count(error);
    }

    /// Counts a claim that put a live member at another address.
    pub(crate) fn conflict(&mut self) {
        self.stats.conflicts += 1;
    }

    /// Counts a claim refused as invalid (a forged incarnation, a member at our address).
    pub(crate) fn refused_claim(&mut self) {
        self.stats.dropped.invalid += 1;
    }

    /// The next output, in the order produced.
    pub(crate) fn pop(&mut self) -> Option<Output> {
        let output = self.outputs.pop_front();
        if output.is_none() {
            // Drained: `clear` starts the ring again at the buffer's front, and a burst's
            // room (a whole view learned at once) is given back.
            self.outputs.clear();
            if self.outputs.capacity() > OUTPUTS_KEPT {
                self.outputs.shrink_to(OUTPUTS_KEPT);
            }
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_out_in_order_and_are_counted() {
        let header = Header { cluster_id: 7, sender: NodeId(1) };
        let mut out = Outbox::new(header, wire::MIN_MAX_DATAGRAM);
        let to: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        out.persist(Durable::new(2, 0, None));
        out.send(To::member(NodeId(3), to), &Message::Nack { seq: 5 });
        out.emit(Event::Broadcast { origin: NodeId(2), payload: vec![1] });
        assert!(matches!(out.pop(), Some(Output::Persist(d)) if d.incarnation == 2));
        let Some(Output::Transmit(t)) = out.pop() else { panic!("the nack comes second") };
        assert_eq!((t.to, t.to_id), (to, Some(NodeId(3))));
        assert_eq!(wire::inspect(&t.payload, 7, wire::MIN_MAX_DATAGRAM), Ok((header, MessageKind::Nack)));
        assert!(matches!(out.pop(), Some(Output::Event(Event::Broadcast { .. }))));
        assert_eq!(out.pop(), None);
        let stats = out.stats();
        assert_eq!(stats.sent.get(MessageKind::Nack), 1);
        assert_eq!(stats.bytes_sent, t.payload.len() as u64);
        out.received(MessageKind::Ping, 40, 2);
        out.rejected(&WireError::Checksum);
        out.refused_claim();
        let stats = out.stats();
        assert_eq!((stats.received.get(MessageKind::Ping), stats.bytes_received, stats.gossip_received), (1, 40, 2));
        assert_eq!((stats.dropped.checksum, stats.dropped.invalid), (1, 1));
    }
}
