//! `conclave run` and `conclave replay`: one scenario's seeds (or a plan file), each run
//! until every checker has judged, with a summary, every event, the verdict alone or JSON;
//! the trace and the timeline page on request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use conclave_scenarios::sweep::{Record, Summary};
use conclave_scenarios::{catalog, timeline, Error, Outcome, PlanFile, Trial};
use conclave_sim::{Status, TraceMode, TraceRecord};
use serde::Serialize;

use super::{program, read, write, Output, Verdict};

/// Flags of `conclave run`.
#[derive(Debug, Default, Parser)]
pub(crate) struct Args {
    /// The scenario (`conclave list` shows them); or give `--plan FILE`.
    #[arg(required_unless_present_any = ["plan", "chaos"])]
    pub(crate) scenario: Option<String>,
    /// `random-chaos`: how `bench chaos` names a failing seed's replay.
    #[arg(long, hide = true, conflicts_with_all = ["scenario", "plan"])]
    pub(crate) chaos: bool,
    /// The seed (the first of `--seeds`); default 1, or the plan file's.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// How many seeds, from `--seed` on.
    #[arg(long, conflicts_with_all = ["trace", "timeline"])]
    pub(crate) seeds: Option<u64>,
    /// The cluster size, instead of the scenario's (or the plan file's).
    #[arg(long)]
    pub(crate) members: Option<usize>,
    /// Write every record of the trace (datagrams too) to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) trace: Option<PathBuf>,
    /// Write the run's timeline to this self-contained HTML page.
    #[arg(long, value_name = "FILE.html")]
    pub(crate) timeline: Option<PathBuf>,
    /// Run this plan file (as `conclave shrink` saves it) instead of a scenario's plan.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub(crate) plan: Option<PathBuf>,
}

/// Flags of `conclave replay`.
#[derive(Debug, Parser)]
pub(crate) struct ReplayArgs {
    /// A plan file, or a scenario's name (with `--seed`).
    target: String,
    /// The seed (a scenario's: required; a plan file's: to replace its own).
    #[arg(long)]
    seed: Option<u64>,
    /// The cluster size, instead of the scenario's or the file's.
    #[arg(long)]
    members: Option<usize>,
    /// Write every record of the trace to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the run's timeline to this self-contained HTML page.
    #[arg(long, value_name = "FILE.html")]
    timeline: Option<PathBuf>,
}

/// `conclave replay`: a plan file, or a scenario and seed, as `conclave run` runs them.
pub(crate) fn replay(args: &ReplayArgs, output: Output) -> Result<Verdict, Error> {
    let is_file = Path::new(&args.target).is_file();
    if !is_file && catalog::find(&args.target).is_none() {
        return Err(Error::File {
            path: args.target.clone(),
            message: format!("neither a plan file nor a scenario (there are: {})", catalog::names()),
        });
    }
    if !is_file && args.seed.is_none() {
        return Err(Error::File {
            path: args.target.clone(),
            message: "replaying a scenario needs its seed: conclave replay <scenario> --seed <n>".to_string(),
        });
    }
    let run_args = Args {
        scenario: (!is_file).then(|| args.target.clone()),
        plan: is_file.then(|| PathBuf::from(&args.target)),
        chaos: false,
        seed: args.seed,
        seeds: None,
        members: args.members,
        trace: args.trace.clone(),
        timeline: args.timeline.clone(),
    };
    run(&run_args, output)
}

/// The trials `args` ask for, each with the command that replays it.
fn trials(args: &Args) -> Result<Vec<(Trial, String)>, Error> {
    let program = program();
    let mut out = Vec::new();
    if let Some(path) = &args.plan {
        let file: PlanFile = read(path)?
            .parse()
            .map_err(|e: Error| Error::File { path: path.display().to_string(), message: e.to_string() })?;
        let base = Trial::from_file(&file)?;
        let first = args.seed.unwrap_or(base.seed);
        for seed in first..first.saturating_add(args.seeds.unwrap_or(1)) {
            let members = args.members.unwrap_or(base.members);
            let voters = base.scenario.map_or(base.voters, |s| s.voters_for(members)).min(members);
            let members_changed = members != base.members;
            let trial =
                Trial { seed, members, voters: if members_changed { voters } else { base.voters }, ..base.clone() };
            trial.validate()?;
            let seed_flag = if seed == file.seed { String::new() } else { format!(" --seed {seed}") };
            let members_flag = if members_changed { format!(" --members {members}") } else { String::new() };
            out.push((trial, format!("{program} run --plan {}{seed_flag}{members_flag}", path.display())));
        }
        return Ok(out);
    }
    let name = if args.chaos { "random-chaos" } else { args.scenario.as_deref().unwrap_or_default() };
    let scenario = catalog::find(name).ok_or_else(|| Error::UnknownScenario(name.to_string()))?;
    let first = args.seed.unwrap_or(1);
    for seed in first..first.saturating_add(args.seeds.unwrap_or(1)) {
        let trial = Trial::of(scenario, seed, args.members)?;
        let replay = trial.replay_args().map_or_else(String::new, |a| format!("{program} {a}"));
        out.push((trial, replay));
    }
    Ok(out)
}

/// `conclave run`.
pub(crate) fn run(args: &Args, output: Output) -> Result<Verdict, Error> {
    let trials = trials(args)?;
    let several = trials.len() > 1;
    let mut records = Vec::new();
    for (trial, replay) in &trials {
        let mode =
            if args.trace.is_some() || output == Output::Verbose { TraceMode::Record } else { TraceMode::Events };
        let (outcome, wall) = timed(|| trial.run(mode, Some(replay.clone())));
        let outcome = outcome?;
        if let Some(path) = &args.trace {
            write(path, &trace_text(trial, &outcome))?;
        }
        if let Some(path) = &args.timeline {
            write(path, &timeline::html(trial, &outcome.report))?;
        }
        match output {
            Output::Json => println!("{}", json(trial, &outcome, replay)),
            Output::Quiet => println!("{}", verdict_line(trial, &outcome)),
            Output::Summary | Output::Verbose if several => println!("{}", verdict_line(trial, &outcome)),
            Output::Summary | Output::Verbose => {
                if output == Output::Verbose {
                    for record in outcome.report.records() {
                        if matches!(
                            record,
                            TraceRecord::Fault { .. } | TraceRecord::Event { .. } | TraceRecord::Panicked { .. }
                        ) {
                            println!("{record}");
                        }
                    }
                }
                print!("{}", summary(trial, &outcome, wall, replay, output == Output::Verbose));
                for (what, path) in [("trace", &args.trace), ("timeline", &args.timeline)] {
                    if let Some(path) = path {
                        println!("  {what}: {}", path.display());
                    }
                }
            }
        }
        records.push(Record::of(trial, &outcome));
    }
    let held = records.iter().all(|r| r.held);
    if several && matches!(output, Output::Summary | Output::Verbose) {
        println!("\n{}", Summary::of(&records));
        println!("{} of {} seeds held", records.iter().filter(|r| r.held).count(), records.len());
    }
    Ok(Verdict::of(held))
}

/// `work`'s result and how long it took on the wall clock.
#[allow(clippy::disallowed_methods, reason = "the command reports its speed: wall time, outside the simulation")]
pub(crate) fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let result = work();
    (result, start.elapsed())
}

/// One line: the verdict, and the first failed check with its time and message.
pub(crate) fn verdict_line(trial: &Trial, outcome: &Outcome) -> String {
    let who = format!("{} seed {}", trial.name(), trial.seed);
    if outcome.held() {
        return format!("held: {who}");
    }
    match outcome.first_violation() {
        Some(v) => format!("FAILED: {who}: {} violated at {}: {}", v.checker, v.at, v.message),
        None => {
            let check = outcome.failed_check().unwrap_or("?");
            let why = match outcome.report.status(check) {
                Some(Status::NotJudged(why)) => why.clone(),
                _ => String::new(),
            };
            format!("FAILED: {who}: {check} could not judge: {why}")
        }
    }
}

fn seconds(ms: &[u64]) -> String {
    ms.iter().map(|&m| format!("{:.2}s", m as f64 / 1000.0)).collect::<Vec<_>>().join(", ")
}

/// The terminal summary of one run.
fn summary(trial: &Trial, outcome: &Outcome, wall: Duration, replay: &str, verbose: bool) -> String {
    let report = &outcome.report;
    let m = &outcome.metrics;
    let mut out = String::new();
    let faults = trial.plan.steps.len();
    out += &format!(
        "{} seed {}: {} members ({} vote), {}, {faults} fault step{}\n",
        trial.name(),
        trial.seed,
        trial.members,
        trial.voters,
        trial.preset,
        if faults == 1 { "" } else { "s" }
    );
    let plan = trial.plan.to_string();
    if plan.len() <= 400 {
        out += &format!("  plan: {plan}\n");
    } else {
        let mut end = 300;
        while !plan.is_char_boundary(end) {
            end -= 1;
        }
        let shown = plan[..end].rfind("; ").map_or(end, |i| i);
        let steps = plan[..shown].matches("; ").count() + 1;
        out += &format!(
            "  plan: {}; ... ({} more steps: --verbose prints them, --trace FILE keeps them)\n",
            &plan[..shown],
            faults.saturating_sub(steps)
        );
    }
    let mut figures = Vec::new();
    if !m.detection_ms.is_empty() {
        figures.push(format!("crash detected by all in {}", seconds(&m.detection_ms)));
    }
    if !m.election_ms.is_empty() {
        figures.push(format!("new leader in {}", seconds(&m.election_ms)));
    }
    if !m.partition_ms.is_empty() {
        figures.push(format!("partition decided by all in {}", seconds(&m.partition_ms)));
    }
    if !m.heal_ms.is_empty() {
        figures.push(format!("healed in {}", seconds(&m.heal_ms)));
    }
    figures.push(format!("{} false verdicts", m.false_verdicts));
    figures.push(format!(
        "{:.1} datagrams and {:.0} B per member-second",
        m.messages_per_member_second(),
        m.bytes_per_member_second()
    ));
    out += &format!("  {}\n", figures.join("; "));
    if let Some(w) = &report.workload {
        let ms = |q: f64| w.latency_at(q).as_secs_f64() * 1e3;
        out += &format!(
            "  service: {} calls, {} completed, {} failed; {:.3} attempts per call; p50 {:.1} ms, p99 {:.1} ms; {} workers crashed overloaded\n",
            w.calls,
            w.completed,
            w.failed_total(),
            w.amplification(),
            ms(0.5),
            ms(0.99),
            w.overload_crashes.len()
        );
    }
    let judged: Vec<_> = report.checks.iter().filter(|c| c.status == Status::Held).collect();
    let opted: Vec<_> =
        report.checks.iter().filter(|c| c.opted_out && matches!(c.status, Status::NotJudged(_))).collect();
    let bad: Vec<_> = report
        .checks
        .iter()
        .filter(|c| {
            matches!(c.status, Status::Violated(_)) || (matches!(c.status, Status::NotJudged(_)) && !c.opted_out)
        })
        .collect();
    out += &format!("  {} checks judged and held", judged.len());
    if !opted.is_empty() {
        out += &format!(
            ", {} had nothing to judge ({})",
            opted.len(),
            opted.iter().map(|c| c.checker).collect::<Vec<_>>().join(", ")
        );
    }
    out += "\n";
    for check in &bad {
        let violations: Vec<_> = report.violations.iter().filter(|v| v.checker == check.checker).collect();
        match violations.iter().min_by_key(|v| v.at) {
            Some(first) => {
                let times =
                    if violations.len() == 1 { "once".to_string() } else { format!("{} times", violations.len()) };
                out += &format!("  {} violated {times}, first at {}: {}\n", check.checker, first.at, first.message);
                if verbose {
                    for v in violations.iter().filter(|v| v.at != first.at || v.message != first.message) {
                        out += &format!("    then at {}: {}\n", v.at, v.message);
                    }
                }
            }
            None => out += &format!("  {check}\n"),
        }
    }
    out += &format!(
        "  trace hash {:#018x}; {} virtual in {:.2}s wall\n",
        report.trace_hash,
        report.end,
        wall.as_secs_f64()
    );
    if outcome.held() {
        out += "held\n";
    } else {
        out += &format!("FAILED\n  replay: {replay}\n");
    }
    out
}

/// A run for machines.
#[derive(Serialize)]
struct RunJson<'a> {
    #[serde(flatten)]
    record: Record,
    checks: Vec<serde_json::Value>,
    violations: Vec<serde_json::Value>,
    plan: PlanFile,
    replay: &'a str,
}

fn json(trial: &Trial, outcome: &Outcome, replay: &str) -> String {
    let checks = outcome
        .report
        .checks
        .iter()
        .map(|c| {
            let (status, why) = match &c.status {
                Status::Held => ("held", None),
                Status::Violated(_) => ("violated", None),
                Status::NotJudged(why) => (if c.opted_out { "opted-out" } else { "not-judged" }, Some(why.as_str())),
            };
            serde_json::json!({"check": c.checker, "status": status, "why": why})
        })
        .collect();
    let violations = outcome
        .report
        .violations
        .iter()
        .map(|v| serde_json::json!({"check": v.checker, "at": v.at.to_string(), "at_nanos": v.at.as_nanos(), "message": v.message}))
        .collect();
    let run = RunJson { record: Record::of(trial, outcome), checks, violations, plan: trial.plan_file(), replay };
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_string(&run).unwrap_or_default()
}

/// The trace file: a header, then every record in the vocabulary of the plan and the CLI.
fn trace_text(trial: &Trial, outcome: &Outcome) -> String {
    let mut out = format!(
        "# conclave trace: {} seed {}, {} members ({} vote), {}\n# plan: {}\n# trace hash {:#018x}\n",
        trial.name(),
        trial.seed,
        trial.members,
        trial.voters,
        trial.preset,
        trial.plan,
        outcome.report.trace_hash
    );
    for record in outcome.report.records() {
        out += &record.to_string();
        out.push('\n');
    }
    for v in &outcome.report.violations {
        out += &format!("{} VIOLATED {}: {}\n", v.at, v.checker, v.message);
    }
    out
}
