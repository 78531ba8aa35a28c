//! The `conclave` command, as a user runs it: exit codes (0 held, 1 a check failed, 2 bad
//! usage or input), one clear line for bad arguments and unreadable plans, replay lines
//! that work when pasted, plan files that replay, shards that merge into one summary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `conclave` with `args` in `dir`: (exit code, stdout, stderr).
fn conclave(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .current_dir(dir)
        // As a user starts it: not through cargo, so replay lines name the binary itself.
        .env_remove("CARGO_PKG_NAME")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conclave-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Runs a printed replay line (`<binary> run ...`) as a shell would split it.
fn paste(dir: &Path, line: &str) -> (i32, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], env!("CARGO_BIN_EXE_conclave"), "the line names the binary that printed it: {line}");
    conclave(dir, &words[1..])
}

/// A crash that one member, paused, cannot see in time: `crash-detection`'s bound fails.
const MISSED_CRASH: &str = "# a crash that n3, paused, cannot see within the bound\nscenario crash-detection\nseed 4\nmembers 4\nat 10s crash n2\nat 10s pause n3 for 9s\n";

#[test]
fn bad_arguments_and_unreadable_plans_give_one_line_and_exit_code_two() {
    let dir = scratch("bad");
    std::fs::write(dir.join("broken.plan"), "seed 1\nat 10s explode n2\n").expect("written");
    std::fs::write(dir.join("outside.plan"), "members 3\nat 10s crash n9\n").expect("written");
    for args in [
        &["run", "no-such-scenario"][..],
        &["run"],
        &["run", "crash-detection", "--seed", "seven"],
        &["run", "partial-connectivity", "--members", "3"],
        &["run", "--plan", "missing.plan"],
        &["run", "--plan", "broken.plan"],
        &["run", "--plan", "outside.plan"],
        &["run", "crash-detection", "--seeds", "2", "--timeline", "t.html"],
        &["replay", "crash-detection"],
        &["replay", "no-such-thing"],
        &["sweep", "--shard", "4/4"],
        &["merge", "missing.jsonl"],
        &["shrink", "crash-detection"],
        &["no-such-command"],
    ] {
        let (code, stdout, stderr) = conclave(&dir, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("conclave: ") || first.starts_with("error: "), "{args:?}: {stderr}");
    }
    let (_, _, stderr) = conclave(&dir, &["run", "--plan", "broken.plan"]);
    assert_eq!(
        stderr.trim(),
        "conclave: broken.plan: line 2: cannot read `at 10s explode n2`: `explode` is no fault (crash, restart, pause, slow, partition, one-way, cut, heal, links, clock)"
    );
    let (_, _, stderr) = conclave(&dir, &["run", "--plan", "missing.plan"]);
    assert!(stderr.starts_with("conclave: missing.plan: ") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn a_held_run_exits_zero_and_quiet_prints_the_verdict_alone() {
    let dir = scratch("held");
    let (code, stdout, _) = conclave(&dir, &["run", "crash-detection", "--seed", "2", "--members", "4", "--quiet"]);
    assert_eq!((code, stdout.as_str()), (0, "held: crash-detection seed 2\n"));
    let (code, stdout, _) = conclave(&dir, &["run", "crash-detection", "--seed", "2", "--members", "4"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("plan: at ") && stdout.contains("crash detected by all in") && stdout.ends_with("held\n"),
        "{stdout}"
    );
    assert!(stdout.lines().count() < 12, "a summary, not every event:\n{stdout}");
    let (code, stdout, _) = conclave(&dir, &["run", "crash-detection", "--seed", "2", "--members", "4", "--verbose"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(" fault crash n") && stdout.contains(" failed n"), "every fault and event:\n{stdout}");
    // How `bench chaos --verbose` names a failing seed's replay.
    let (code, stdout, _) = conclave(&dir, &["run", "--chaos", "--seed", "3", "--quiet"]);
    assert_eq!((code, stdout.as_str()), (0, "held: random-chaos seed 3\n"));
    let (code, stdout, _) = conclave(&dir, &["list"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("random-chaos") && stdout.contains("big-partition"), "{stdout}");
}

#[test]
fn a_failed_check_exits_one_and_its_replay_line_replays_it_exactly() {
    let dir = scratch("failed");
    std::fs::write(dir.join("missed.plan"), MISSED_CRASH).expect("written");
    let (code, stdout, _) = conclave(&dir, &["run", "--plan", "missed.plan"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("crash-detected-within-bound violated once, first at 17.500s: n2 crashed at 10.000s"),
        "{stdout}"
    );
    let replay = stdout.lines().find_map(|l| l.trim().strip_prefix("replay: ")).expect("a replay line");
    assert!(replay.ends_with(" run --plan missed.plan"), "{replay}");
    let hash = |out: &str| {
        out.lines().find(|l| l.contains("trace hash")).map(|l| l.split(';').next().unwrap_or_default().to_string())
    };
    let (again, pasted, _) = paste(&dir, replay);
    assert_eq!((again, hash(&pasted)), (1, hash(&stdout)));
    // Machines: one JSON object with the check, its time and the plan file.
    let (code, json, _) = conclave(&dir, &["run", "--plan", "missed.plan", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(v["held"], false);
    assert_eq!(v["failure"]["check"], "crash-detected-within-bound");
    assert_eq!(v["failure"]["at"], "17.500s");
    assert!(v["plan"].as_str().is_some_and(|p| p.contains("at 10s pause n3 for 9s")), "{v}");
    // A scenario's seed prints `run <scenario> --seed <n>`, which replays it.
    let (code, stdout, _) = conclave(&dir, &["run", "crash-detection", "--seed", "3", "--members", "4", "--quiet"]);
    assert_eq!((code, stdout.trim()), (0, "held: crash-detection seed 3"));
}

#[test]
fn shrink_saves_a_smaller_plan_that_fails_the_same_check_when_replayed() {
    let dir = scratch("shrink");
    let noisy = format!(
        "{MISSED_CRASH}at 12s links n1<->n4 loss 10%\nat 14s clock n4 jump 1s\nat 30s links all latency 500us\n"
    );
    std::fs::write(dir.join("noisy.plan"), noisy).expect("written");
    let (code, stdout, stderr) = conclave(&dir, &["shrink", "--plan", "noisy.plan", "--out", "small.plan"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("5 fault steps on 4 members -> 2 on 3"), "{stdout}");
    let small = std::fs::read_to_string(dir.join("small.plan")).expect("saved");
    assert!(small.contains("crash n2") && small.contains("pause n3"), "{small}");
    assert!(!small.contains("links") && !small.contains("clock"), "{small}");
    let replay = stdout.lines().find_map(|l| l.strip_prefix("replay: ")).expect("a replay line");
    let (code, stdout, _) = paste(&dir, replay);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("crash-detected-within-bound violated"), "{stdout}");
    // Nothing to shrink in a run that holds.
    let (code, stdout, _) = conclave(&dir, &["shrink", "crash-detection", "--seed", "1", "--members", "4"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("nothing to shrink"), "{stdout}");
}

#[test]
fn shards_written_as_json_lines_merge_into_the_summary_of_one_sweep() {
    let dir = scratch("shards");
    let scenarios = ["crash-detection", "leader-crash"];
    let sweep = |extra: &[&str]| {
        let mut args = vec!["sweep"];
        args.extend(scenarios);
        args.extend(["--seeds", "2", "--jobs", "1"]);
        args.extend(extra);
        conclave(&dir, &args)
    };
    let (code, whole, _) = sweep(&[]);
    assert_eq!(code, 0, "{whole}");
    let table = |out: &str| out.lines().filter(|l| !l.contains("wall")).map(|l| format!("{l}\n")).collect::<String>();
    assert!(whole.contains("4 of 4 runs held"), "{whole}");
    for k in ["0/3", "1/3", "2/3"] {
        let file = format!("shard-{}.jsonl", &k[..1]);
        let (code, stdout, _) = sweep(&["--shard", k, "--out", &file]);
        assert_eq!((code, stdout.as_str()), (0, ""));
    }
    let lines: usize = (0..3)
        .map(|k| std::fs::read_to_string(dir.join(format!("shard-{k}.jsonl"))).expect("written").lines().count())
        .sum();
    assert_eq!(lines, 4, "every run in exactly one shard");
    let (code, merged, _) = conclave(&dir, &["merge", "shard-2.jsonl", "shard-0.jsonl", "shard-1.jsonl"]);
    assert_eq!(code, 0);
    assert_eq!(table(&merged), table(&whole));
    let (code, merged, _) = conclave(&dir, &["sweep", "--merge", "shard-0.jsonl", "shard-1.jsonl", "shard-2.jsonl"]);
    assert_eq!((code, table(&merged)), (0, table(&whole)));
    let (code, stdout, _) = conclave(&dir, &["check-determinism", "leader-crash", "--seeds", "1"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 of 1 seeds gave the same trace hash twice"), "{stdout}");
}

#[test]
fn the_trace_and_the_timeline_speak_the_plans_vocabulary() {
    let dir = scratch("files");
    let (code, stdout, _) = conclave(
        &dir,
        &["run", "partition-heal", "--seed", "1", "--trace", "run.trace", "--timeline", "run.html", "--quiet"],
    );
    assert_eq!(code, 0, "{stdout}");
    let trace = std::fs::read_to_string(dir.join("run.trace")).expect("written");
    assert!(trace.starts_with("# conclave trace: partition-heal seed 1"), "{}", &trace[..200]);
    let plan = "at 10s partition ";
    assert!(trace.lines().any(|l| l.starts_with("# plan: ") && l.contains(plan)), "the header's plan");
    assert!(trace.lines().any(|l| l.starts_with("10.000s fault partition ")), "the fault, as the plan writes it");
    assert!(trace.contains(" -> ") && trace.contains("partition: keeps ["), "datagrams and events");
    let page = std::fs::read_to_string(dir.join("run.html")).expect("written");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("partition-heal seed 1"));
    assert!(page.contains("10s partition "), "the page names the fault as the plan does");
}
