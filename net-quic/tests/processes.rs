//! Three `example node` processes on loopback: `kill -9` one, the others report it
//! failed; restart it with its state directory, they report it recovered.

#![allow(clippy::disallowed_methods, reason = "a test of real processes waits on the real clock")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{example_node, Member};
use conclave_core::NodeId;
use conclave_quic::DevCa;

/// A free loopback UDP port (bound, read, released).
fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("loopback has free ports")
}

#[test]
fn a_killed_process_is_seen_failed_and_then_recovered() {
    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DevCa::new("processes").unwrap().write_files(dir.join("certs"), &[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    let addrs = [free_addr(), free_addr(), free_addr()];
    let spawn = |i: usize| {
        let mut command = Command::new(&bin);
        let seeds: Vec<String> = addrs[..i.min(1)].iter().map(ToString::to_string).collect();
        Member::args(&mut command, i as u64 + 1, &addrs[i].to_string(), &seeds, "local", &dir);
        Member::spawn(command)
    };
    let mut members: Vec<Member> = (0..3).map(spawn).collect();
    let within = Duration::from_secs(20);
    for (i, member) in members.iter_mut().enumerate() {
        for other in (1..=3).filter(|&o| o != i + 1) {
            member.expect(&format!("joined n{other} at {}", addrs[other - 1]), 0, within);
        }
    }

    // kill -9 (SIGKILL): no Leave, no connection close.
    let marks: Vec<usize> = members.iter().map(|m| m.seen.len()).collect();
    members[2].child.kill().unwrap();
    members[2].child.wait().unwrap();
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        member.expect("failed n3", mark, within);
    }

    // Restarted with its state directory, it comes back at a higher incarnation.
    let marks: Vec<usize> = members.iter().map(|m| m.seen.len()).collect();
    members[2] = spawn(2);
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        member.expect("recovered n3", mark, within);
    }
    for member in &mut members[..2] {
        assert!(!member.seen.iter().any(|l| l.ends_with("failed n1") || l.ends_with("failed n2")), "{:?}", member.seen);
    }
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
}
