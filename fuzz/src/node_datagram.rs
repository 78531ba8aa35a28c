//! A node fed arbitrary datagrams, interleaved with timeouts and commands. It must never
//! panic, never emit a datagram above `max_datagram` or one its peers cannot decode, and a
//! datagram it rejects must leave its view of the members unchanged.
//!
//! The input is a little program: each step's first byte picks what happens next.

use std::net::SocketAddr;
use std::time::Duration;

use conclave_core::{fuzzing, Command, Config, Instant, Member, Node, NodeConfig, NodeId, Output, Tags};

use super::input::Input;

const PEERS: u64 = 4;

fn addr(id: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 7946))
}

fn drain(node: &mut Node, config: &Config) {
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(transmit) = output {
            assert!(
                transmit.payload.len() <= config.max_datagram,
                "a {} B datagram exceeds max_datagram {}",
                transmit.payload.len(),
                config.max_datagram
            );
            if let Err(error) = fuzzing::decode(&transmit.payload, config.cluster_id, config.max_datagram) {
                panic!("the node sent a datagram its peers reject: {error}");
            }
        }
    }
}

fn members(node: &Node) -> Vec<Member> {
    node.members().cloned().collect()
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let config = Config::lan();
    let me = NodeId(1);
    let seed = u64::from(input.u16());
    let mut now = Instant::ZERO;
    let mut node = Node::new(NodeConfig::new(me, addr(1), config.clone(), seed), now).expect("the lan preset is valid");
    // Start as a member of a small cluster, so that gossip, probes and suspicion all run.
    for peer in 2..=PEERS {
        for datagram in fuzzing::sample_datagrams(config.cluster_id, NodeId(peer), addr(peer), me).into_iter().take(1) {
            let _ = node.handle_datagram(now, addr(peer), &datagram);
        }
    }
    drain(&mut node, &config);

    while !input.0.is_empty() {
        let op = input.byte();
        let peer = 2 + u64::from(input.byte()) % PEERS;
        match op % 5 {
            // Raw bytes.
            0 => {
                let len = usize::from(input.u16()) % 1600;
                let bytes = input.bytes(len).to_vec();
                let before = members(&node);
                if node.handle_datagram(now, addr(peer), &bytes).is_err() {
                    assert_eq!(members(&node), before, "a rejected datagram changed the view");
                }
            }
            // An arbitrary body in a valid envelope: reaches the handlers.
            1 => {
                let len = usize::from(input.u16()) % 1400;
                let bytes = fuzzing::seal(config.cluster_id, NodeId(peer), input.bytes(len));
                let before = members(&node);
                if node.handle_datagram(now, addr(peer), &bytes).is_err() {
                    assert_eq!(members(&node), before, "a rejected datagram changed the view");
                }
            }
            // A valid datagram of some kind, from some peer.
            2 => {
                let samples = fuzzing::sample_datagrams(config.cluster_id, NodeId(peer), addr(peer), me);
                let pick = usize::from(input.byte()) % samples.len();
                let _ = node.handle_datagram(now, addr(peer), &samples[pick]);
            }
            // Time passes: a little, or to the next wakeup.
            3 => {
                let step = input.u16();
                now = match node.poll_timeout() {
                    Some(wakeup) if step % 2 == 0 => wakeup.max(now),
                    _ => now + Duration::from_millis(u64::from(step)),
                };
                node.handle_timeout(now);
            }
            // A command.
            _ => {
                let len = usize::from(input.byte()) * 4;
                let bytes = input.bytes(len).to_vec();
                let command = match input.byte() % 5 {
                    0 => Command::Broadcast(bytes),
                    1 => {
                        let value = String::from_utf8_lossy(&bytes).into_owned();
                        Command::SetTags(Tags::from([("k".to_string(), value)]))
                    }
                    2 => Command::Join(vec![addr(peer)]),
                    3 => Command::ReportUnreachable(NodeId(peer)),
                    _ => Command::Leave,
                };
                let _ = node.handle_command(now, command);
            }
        }
        drain(&mut node, &config);
    }
}
