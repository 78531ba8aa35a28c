//! What the process tests share: the example binary, and a member process whose printed
//! lines can be awaited.

#![allow(dead_code, reason = "each test file uses part of this module")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The example binary `cargo test` built beside this test (built now if it is missing).
pub(crate) fn example_node() -> PathBuf {
    let exe = std::env::current_exe().expect("a test knows its own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/node
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

/// One `example node` process and the lines it printed.
pub(crate) struct Member {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Member {
    /// Runs `command` (an example node, maybe wrapped), reading its standard output.
    pub(crate) fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
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

    /// The arguments of member `id` listening at `listen`.
    pub(crate) fn args(command: &mut Command, id: u64, listen: &str, seeds: &[String], config: &str, dir: &Path) {
        command
            .args(["--id", &id.to_string(), "--listen", listen, "--config", config])
            .arg("--certs")
            .arg(dir.join("certs"))
            .arg("--state-dir")
            .arg(dir.join(format!("state-{id}")));
        for seed in seeds {
            command.args(["--seed", seed]);
        }
    }

    /// Reads what was printed so far without waiting.
    pub(crate) fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for a line ending with `what`, among the lines from the `since`-th on.
    pub(crate) fn expect(&mut self, what: &str, since: usize, within: Duration) {
        self.drain();
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
