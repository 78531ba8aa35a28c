//! Three members in Linux network namespaces the test makes itself: each its own address
//! behind a veth pair on a bridge (in a fourth namespace, so nothing outside changes).
//! They form a cluster; 10 % loss (`tc netem`) gives no false verdict; a host whose link
//! goes down is seen failed, and recovers when the link comes back.
//!
//! Needs root and iproute2 (`.ci/run` has both). Where `ip netns add` fails the test says
//! so and passes without checking anything; where `tc netem` is missing (a kernel without
//! `sch_netem`) it says so and skips the loss part only.

#![allow(clippy::disallowed_methods, reason = "a test of real processes waits on the real clock")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{example_node, Member};
use conclave_core::NodeId;
use conclave_quic::DevCa;

/// Runs `ip` with `args`; the error carries what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The namespaces made so far, deleted on drop (which also deletes their interfaces).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.0.push(name.to_string());
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.0.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

const HOSTS: usize = 3;

fn host_ip(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

/// Builds the bridge namespace and one namespace per host.
fn topology(ns: &mut Namespaces, tag: &str) -> Result<(String, Vec<String>), String> {
    let bridge = format!("{tag}br");
    ns.add(&bridge)?;
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let host = format!("{tag}h{i}");
        ns.add(&host)?;
        let port = format!("veth{i}");
        ip(&["link", "add", &port, "netns", &bridge, "type", "veth", "peer", "name", "eth0", "netns", &host])?;
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &bridge, "link", "set", &port, "up"])?;
        ip(&["-n", &host, "addr", "add", &format!("{}/24", host_ip(i)), "dev", "eth0"])?;
        ip(&["-n", &host, "link", "set", "eth0", "up"])?;
        ip(&["-n", &host, "link", "set", "lo", "up"])?;
        hosts.push(host);
    }
    Ok((bridge, hosts))
}

#[test]
fn members_in_namespaces_survive_loss_and_a_cut() {
    let tag = format!("cq{}", std::process::id() % 100_000);
    let mut ns = Namespaces(Vec::new());
    if let Err(e) = ns.add(&format!("{tag}probe")) {
        eprintln!("skipped: cannot make network namespaces ({e}); run as root with iproute2, as .ci/run does");
        return;
    }
    let (bridge, hosts) = topology(&mut ns, &tag).expect("the namespaces and links are made");

    let bin = example_node();
    let dir = std::env::temp_dir().join(format!("conclave-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ids: Vec<NodeId> = (1..=HOSTS as u64).map(NodeId).collect();
    DevCa::new("netns").unwrap().write_files(dir.join("certs"), &ids).unwrap();
    let listen = |i: usize| format!("{}:7000", host_ip(i));
    let mut members: Vec<Member> = (0..HOSTS)
        .map(|i| {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &hosts[i]]).arg(&bin);
            let seeds = if i == 0 { vec![] } else { vec![listen(0)] };
            Member::args(&mut command, i as u64 + 1, &listen(i), &seeds, "lan", &dir);
            Member::spawn(command)
        })
        .collect();
    let within = Duration::from_secs(20);
    for (i, member) in members.iter_mut().enumerate() {
        for other in (0..HOSTS).filter(|&o| o != i) {
            member.expect(&format!("joined n{} at {}", other + 1, listen(other)), 0, within);
        }
    }

    // 10 % loss (and 1 ms of delay) on every host's link: no verdict at all.
    let netem: Result<Vec<()>, String> = hosts
        .iter()
        .map(|h| {
            run(
                "ip",
                &[
                    "netns", "exec", h, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss", "10%", "delay",
                    "1ms",
                ],
            )
        })
        .collect();
    match netem {
        Ok(_) => {
            std::thread::sleep(Duration::from_secs(10));
            for member in &mut members {
                member.drain();
                assert!(
                    !member.seen.iter().any(|l| l.contains(" failed n")),
                    "a false verdict under 10 % loss: {:#?}",
                    member.seen
                );
            }
            for h in &hosts {
                run("ip", &["netns", "exec", h, "tc", "qdisc", "del", "dev", "eth0", "root"])
                    .expect("netem is removed");
            }
        }
        Err(e) => eprintln!("loss part skipped: tc netem is unavailable here ({e})"),
    }

    // Host 3's link goes down: the others see it failed.
    let marks = seen_so_far(&mut members);
    ip(&["-n", &bridge, "link", "set", "veth2", "down"]).unwrap();
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        member.expect("failed n3", mark, within);
    }
    // It comes back: they see it recovered.
    let marks = seen_so_far(&mut members);
    ip(&["-n", &bridge, "link", "set", "veth2", "up"]).unwrap();
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        member.expect("recovered n3", mark, Duration::from_secs(40));
    }
    // The cut host's own verdicts (it saw the others fail) may spread for a moment after
    // the heal, as across any healed partition: the members they name refute them. So a
    // verdict on n1 or n2 is allowed only after the heal, and must be followed by its
    // recovery.
    for (member, &mark) in members[..2].iter_mut().zip(&marks) {
        for other in ["n1", "n2"] {
            let (failed, recovered) = (format!("failed {other}"), format!("recovered {other}"));
            let last_verdict =
                member.seen.iter().enumerate().rfind(|(_, l)| l.ends_with(&failed) || l.ends_with(&recovered));
            if let Some((at, line)) = last_verdict.map(|(at, line)| (at, line.clone())) {
                let before_heal = member.seen[..mark].iter().any(|l| l.ends_with(&failed));
                assert!(at >= mark && !before_heal, "a verdict on {other} before the heal: {:#?}", member.seen);
                if line.ends_with(&failed) {
                    member.expect(&recovered, at + 1, within);
                }
            }
        }
    }
    drop(members);
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

/// How many lines each member has printed so far: later expectations look past them.
fn seen_so_far(members: &mut [Member]) -> Vec<usize> {
    members
        .iter_mut()
        .map(|m| {
            m.drain();
            m.seen.len()
        })
        .collect()
}
