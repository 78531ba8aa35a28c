//! Three `example node` processes on loopback: `kill -9` one, the others report it
//! failed; restart it with its state directory, they report it recovered.

#![allow(clippy::disallowed_methods, reason = "a test of real processes waits on the real clock")]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conclave_core::NodeId;
use conclave_quic::DevCa;

/// The example binary `cargo test` built beside this test (built now if it is missing).
fn example_node() -> PathBuf {
    let exe = std::env::current_exe().expect("a test knows its own path");
    // target/<profile>/deps/processes-<hash> -> target/<profile>/examples/node
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("tests run from target/<profile>/deps");
    let node = profile_dir.join("examples").join("node");
    if !node.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "conclave-quic", "--example", "node"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the example failed");
    }
    node
}

/// A free loopback UDP port (bound, read, released).
fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("loopback has free ports")
}

struct Member {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Member {
    fn spawn(bin: &PathBuf, id: u64, addr: SocketAddr, seeds: &[SocketAddr], dir: &std::path::Path) -> Self {
        let mut command = Command::new(bin);
        command
            .args(["--id", &id.to_string(), "--listen", &addr.to_string(), "--config", "local"])
            .arg("--certs")
            .arg(dir.join("certs"))
            .arg("--state-dir")
            .arg(dir.join(format!("state-{id}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for seed in seeds {
            command.args(["--seed", &seed.to_string()]);
        }
        let mut child = command.spawn().expect("the example starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a line ending with `what`, among the lines from the `since`-th on.
    fn expect(&mut self, what: &str, since: usize, within: Duration) {
        if self.seen.iter().skip(since).any(|line| line.ends_with(what)) {
            return;
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.ends_with(what);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no {what:?} within {within:?}; printed: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_process_is_seen_failed_and_then_recovered() {
    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DevCa::new("processes").unwrap().write_files(dir.join("certs"), &[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    let addrs = [free_addr(), free_addr(), free_addr()];
    let mut members: Vec<Member> =
        (0..3).map(|i| Member::spawn(&bin, i as u64 + 1, addrs[i], &addrs[..i.min(1)], &dir)).collect();
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
    members[2] = Member::spawn(&bin, 3, addrs[2], &addrs[..1], &dir);
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        member.expect("recovered n3", mark, within);
    }
    for member in &mut members[..2] {
        assert!(!member.seen.iter().any(|l| l.ends_with("failed n1") || l.ends_with("failed n2")), "{:?}", member.seen);
    }
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
}
