//! `example node` processes on loopback: `kill -9` one, the others report it failed;
//! restart it with its state directory, they report it recovered. Three of them serving as
//! workers and a fourth calling them through the registry: `kill -9` a worker, and no call
//! fails.

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

/// A copy of n2's configuration (its certificate, another address, a fresh state
/// directory) started while n2 runs: the newcomer says in one line that the id is taken
/// and exits with status 1; the seed reports the conflict; nobody announces n2 updated or
/// gone, before or after the newcomer stops.
#[test]
fn a_second_process_with_a_running_id_refuses_to_start() {
    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-processes-dup-{}", std::process::id()));
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
    let marks: Vec<usize> = members.iter().map(|m| m.seen.len()).collect();
    let copy_addr = free_addr();
    // n2's configuration, copied: its certificate, another address, its own state directory.
    let mut command = Command::new(&bin);
    command.args([
        "--id",
        "2",
        "--listen",
        &copy_addr.to_string(),
        "--config",
        "local",
        "--seed",
        &addrs[0].to_string(),
    ]);
    command.arg("--certs").arg(dir.join("certs")).arg("--state-dir").arg(dir.join("state-2-copy"));
    let mut copy = Member::spawn(command);
    copy.expect(
        &format!("is already running at {}: this process stopped without joining (a copied configuration?)", addrs[1]),
        0,
        within,
    );
    let status = copy.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{:?}", copy.seen);
    assert!(!copy.seen.iter().any(|l| l.contains(" ready ")), "it never said ready: {:?}", copy.seen);
    members[0].expect(
        &format!("conflict: n2 runs at {}, another process claims it at {copy_addr}", addrs[1]),
        marks[0],
        within,
    );
    // The same copy with n2's own state directory: refused before it sends anything.
    let mut command = Command::new(&bin);
    command.args([
        "--id",
        "2",
        "--listen",
        &free_addr().to_string(),
        "--config",
        "local",
        "--seed",
        &addrs[0].to_string(),
    ]);
    command.arg("--certs").arg(dir.join("certs")).arg("--state-dir").arg(dir.join("state-2"));
    let mut shared = Member::spawn(command);
    shared.expect("is in use by another process (does a member with this id run from it?)", 0, within);
    assert_eq!(shared.child.wait().unwrap().code(), Some(1), "{:?}", shared.seen);
    // Some time for anything wrong to show, then nothing about n2 but the conflict.
    std::thread::sleep(Duration::from_secs(2));
    for (member, &mark) in members.iter_mut().zip(&marks) {
        member.drain();
        let about_n2: Vec<&String> = member.seen[mark..]
            .iter()
            .filter(|l| (l.contains("n2") || l.contains(&addrs[1].to_string())) && !l.contains("conflict:"))
            .collect();
        assert!(about_n2.is_empty(), "{about_n2:?}");
    }
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member given another CA's certificates: it says in one line that the seed refused
/// its handshake, and exits with status 1, instead of printing `ready` and then nothing.
#[test]
fn a_member_with_another_cas_certificates_says_why_it_cannot_join() {
    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-processes-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DevCa::new("the cluster").unwrap().write_files(dir.join("certs"), &[NodeId(1)]).unwrap();
    DevCa::new("another").unwrap().write_files(dir.join("other").join("certs"), &[NodeId(4)]).unwrap();
    let seed = free_addr();
    let mut command = Command::new(&bin);
    Member::args(&mut command, 1, &seed.to_string(), &[], "local", &dir);
    let mut first = Member::spawn(command);
    first.expect(&format!("ready n1 at {seed}"), 0, Duration::from_secs(20));
    let mut command = Command::new(&bin);
    Member::args(&mut command, 4, &free_addr().to_string(), &[seed.to_string()], "local", &dir.join("other"));
    command.args(["--join-timeout", "3"]);
    let mut stranger = Member::spawn(command);
    let status = stranger.child.wait().unwrap();
    // The line may still be on its way through the reader thread.
    for _ in 0..500 {
        stranger.drain();
        if stranger.seen.iter().any(|l| l.contains("refused:")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status.code(), Some(1), "{:?}", stranger.seen);
    let line = stranger.seen.iter().find(|l| l.contains("refused:")).unwrap_or_else(|| panic!("{:?}", stranger.seen));
    assert!(line.contains(&seed.to_string()) && line.contains("certificate"), "{line}");
    assert!(!stranger.seen.iter().any(|l| l.contains(" ready ")), "{:?}", stranger.seen);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The figure `name` of a client's line of figures (`<ms> calls 200 ok 200 failed 0 ...`).
fn figure(line: &str, name: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok())
}

/// Whether `line` is a client's line of figures for one second.
fn is_second(line: &str) -> bool {
    line.split_whitespace().nth(1) == Some("calls")
}

/// Waits for `n` lines of figures ending with `what` (`" workers 2"`) among the lines
/// from the `since`-th on, each within `within` of the one before.
fn figure_lines(client: &mut Member, since: usize, n: usize, what: &str, within: Duration) {
    loop {
        client.drain();
        if client.seen[since..].iter().filter(|l| is_second(l) && l.ends_with(what)).count() >= n {
            return;
        }
        let next = client.seen.len();
        client.expect(what, next, within);
    }
}

/// Three workers (`--worker work`) and a client process calling `work` through the
/// registry (`--client work`): one worker killed with `kill -9` while the client calls,
/// and no call fails, before, during or after its failure is detected.
#[test]
fn no_call_fails_while_two_workers_live() {
    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-processes-service-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ids: Vec<NodeId> = (1..=4).map(NodeId).collect();
    DevCa::new("service").unwrap().write_files(dir.join("certs"), &ids).unwrap();
    let addrs = [free_addr(), free_addr(), free_addr(), free_addr()];
    let spawn = |i: usize, role: &[&str]| {
        let mut command = Command::new(&bin);
        let seeds: Vec<String> = addrs[..i.min(1)].iter().map(ToString::to_string).collect();
        Member::args(&mut command, i as u64 + 1, &addrs[i].to_string(), &seeds, "lan", &dir);
        command.args(role);
        Member::spawn(command)
    };
    let mut workers: Vec<Member> = (0..3).map(|i| spawn(i, &["--worker", "work"])).collect();
    // Generous bounds: a loaded machine may stall a process for a while; what is checked
    // is that no call fails, not how fast they are.
    let client_role = [
        "--client",
        "work",
        "--rate",
        "100",
        "--min-workers",
        "3",
        "--deadline-ms",
        "10000",
        "--attempt-timeout-ms",
        "1000",
    ];
    let mut client = spawn(3, &client_role);
    let within = Duration::from_secs(30);
    client.expect("calling 3 workers", 0, within);
    // Calls answered by all three first.
    let start = client.seen.len();
    figure_lines(&mut client, start, 2, " workers 3", within);

    // kill -9 (SIGKILL): no Leave, no connection close; calls under way to it get no answer.
    let kill = client.seen.len();
    workers[2].child.kill().unwrap();
    workers[2].child.wait().unwrap();
    client.expect("failed n3", kill, within);
    // Seconds of calls after the verdict, with two workers.
    let verdict = client.seen.len();
    figure_lines(&mut client, verdict, 3, " workers 2", within);

    let lines: Vec<&String> = client.seen[start..].iter().filter(|l| is_second(l)).collect();
    let sum = |name: &str, lines: &[&String]| lines.iter().filter_map(|l| figure(l, name)).sum::<u64>();
    let after_kill: Vec<&String> = client.seen[kill..].iter().filter(|l| is_second(l)).collect();
    let failures: Vec<&String> = client.seen.iter().filter(|l| l.contains("call failed")).collect();
    assert!(failures.is_empty(), "calls failed: {failures:#?}\n{:#?}", client.seen);
    assert_eq!(sum("failed", &lines), 0, "{:#?}", client.seen);
    assert!(sum("ok", &after_kill) > 0, "no call was answered after the kill: {:#?}", client.seen);
    eprintln!(
        "{} calls answered, {} after the kill; retried {}, hedged {}",
        sum("ok", &lines),
        sum("ok", &after_kill),
        sum("retried", &lines),
        sum("hedged", &lines)
    );
    drop(client);
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_initial_cluster_state_the_node_cannot_use_is_refused_with_the_reason() {
    let bin = example_node();
    let out = Command::new(&bin).args(["--id", "1", "--initial-cluster-state", "exisiting"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected `new` or `existing`"), "{stderr}");
    // A good value on a member that does not vote: it refuses to start, and says why.
    let dir = std::env::temp_dir().join(format!("conclave-processes-ics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DevCa::new("processes").unwrap().write_files(dir.join("certs"), &[NodeId(1), NodeId(2)]).unwrap();
    let mut command = Command::new(&bin);
    Member::args(&mut command, 2, &free_addr().to_string(), &[], "local", &dir);
    let out = command.args(["--voters", "1", "--initial-cluster-state", "existing"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("refused: ") && stdout.contains("`existing` on n2, which is not one of the voters"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
