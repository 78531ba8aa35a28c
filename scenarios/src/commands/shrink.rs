//! `conclave shrink`: a failing seed's plan made small, saved as a plan file, with the line
//! that replays it.

use std::path::PathBuf;

use clap::Parser;
use conclave_scenarios::shrink::shrink;
use conclave_scenarios::{catalog, Error, PlanFile, Trial};
use conclave_sim::TraceMode;
use indicatif::{ProgressBar, ProgressStyle};

use super::run::{timed, verdict_line};
use super::{program, read, write, Output, Verdict};

/// Flags of `conclave shrink`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The scenario whose seed fails; or give `--plan FILE`.
    #[arg(required_unless_present = "plan")]
    scenario: Option<String>,
    /// The failing seed.
    #[arg(long, required_unless_present = "plan")]
    seed: Option<u64>,
    /// The cluster size, instead of the scenario's.
    #[arg(long)]
    members: Option<usize>,
    /// Shrink this plan file's plan instead.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    plan: Option<PathBuf>,
    /// The check the smaller plans must still fail (default: the first violated).
    #[arg(long)]
    check: Option<String>,
    /// Where to save the shrunk plan (default: `<scenario>-seed<S>.plan`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The most runs to spend.
    #[arg(long, default_value_t = 2000)]
    max_runs: usize,
}

pub(crate) fn run(args: &Args, output: Output) -> Result<Verdict, Error> {
    let trial = match &args.plan {
        Some(path) => {
            let file: PlanFile = read(path)?
                .parse()
                .map_err(|e: Error| Error::File { path: path.display().to_string(), message: e.to_string() })?;
            Trial::from_file(&file)?
        }
        None => {
            let name = args.scenario.as_deref().unwrap_or_default();
            let scenario = catalog::find(name).ok_or_else(|| Error::UnknownScenario(name.to_string()))?;
            Trial::of(scenario, args.seed.unwrap_or(1), args.members)?
        }
    };
    let outcome = trial.run(TraceMode::Events, None)?;
    if outcome.held() {
        println!("{}: nothing to shrink", verdict_line(&trial, &outcome));
        return Ok(Verdict::Held);
    }
    let violated: Vec<&'static str> = outcome.report.violations.iter().map(|v| v.checker).collect();
    let check = match &args.check {
        Some(name) => match violated.iter().find(|c| **c == name) {
            Some(c) => *c,
            None => {
                return Err(Error::File {
                    path: name.clone(),
                    message: format!("is not violated by this run (violated: {})", violated.join(", ")),
                })
            }
        },
        None => match outcome.first_violation() {
            Some(v) => v.checker,
            None => {
                println!("{}", verdict_line(&trial, &outcome));
                println!("shrinking needs a violated check; this run only failed to judge one");
                return Ok(Verdict::Failed);
            }
        },
    };
    if output != Output::Json {
        println!("{}", verdict_line(&trial, &outcome));
        println!(
            "shrinking {} fault steps on {} members, keeping `{check}` violated ...",
            trial.plan.steps.len(),
            trial.members
        );
    }
    let bar =
        if matches!(output, Output::Quiet | Output::Json) { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut show = |best: &Trial, runs: usize| {
        bar.set_message(format!("run {runs}: {} fault steps on {} members", best.plan.steps.len(), best.members));
        bar.tick();
    };
    let (shrunk, wall) = timed(|| shrink(&trial, check, args.max_runs, &mut show));
    bar.finish_and_clear();
    let shrunk = shrunk?;
    let path = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-seed{}.plan", trial.name(), trial.seed)));
    let file = shrunk.trial.plan_file();
    let header = format!(
        "# conclave plan: {} seed {} shrunk from {} fault steps on {} members; it fails {}\n",
        trial.name(),
        trial.seed,
        shrunk.before.0,
        shrunk.before.1,
        check
    );
    write(&path, &format!("{header}{file}"))?;
    let replay = format!("{} replay {}", program(), path.display());
    let again = shrunk.trial.run(TraceMode::Events, Some(replay.clone()))?;
    let violation = again.report.violations.iter().filter(|v| v.checker == check).min_by_key(|v| v.at);
    if output == Output::Json {
        let json = serde_json::json!({
            "scenario": trial.name(), "seed": trial.seed, "check": check,
            "before": {"steps": shrunk.before.0, "members": shrunk.before.1},
            "after": {"steps": shrunk.trial.plan.steps.len(), "members": shrunk.trial.members},
            "runs": shrunk.runs, "budget_spent": shrunk.budget_spent, "plan": file, "file": path.display().to_string(),
            "violation": violation.map(|v| serde_json::json!({"at": v.at.to_string(), "message": v.message})),
            "replay": replay,
        });
        println!("{json}");
        return Ok(Verdict::Failed);
    }
    println!(
        "shrunk in {} runs ({:.1}s wall{}): {} fault steps on {} members -> {} on {}",
        shrunk.runs,
        wall.as_secs_f64(),
        if shrunk.budget_spent { ", budget spent" } else { "" },
        shrunk.before.0,
        shrunk.before.1,
        shrunk.trial.plan.steps.len(),
        shrunk.trial.members
    );
    if output != Output::Quiet {
        println!("saved to {}:\n", path.display());
        print!("{file}");
        println!();
    }
    if let Some(v) = violation {
        println!("{} violated at {}: {}", v.checker, v.at, v.message);
    }
    println!("replay: {replay}");
    Ok(Verdict::Failed)
}
