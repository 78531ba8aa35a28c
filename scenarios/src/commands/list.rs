//! `conclave list`: the catalog.

use clap::Parser;
use conclave_scenarios::catalog::{self, CATALOG};
use conclave_scenarios::{Error, Trial};

use super::{Output, Verdict};

/// Flags of `conclave list`.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Show this scenario in full: what it does, its bounds, its plan for seed 1.
    scenario: Option<String>,
}

pub(crate) fn run(args: &Args, output: Output) -> Result<Verdict, Error> {
    if let Some(name) = &args.scenario {
        let scenario = catalog::find(name).ok_or_else(|| Error::UnknownScenario(name.clone()))?;
        let trial = Trial::of(scenario, 1, None)?;
        if output == Output::Json {
            println!(
                "{}",
                serde_json::json!({"name": scenario.name, "summary": scenario.summary, "doc": scenario.doc, "plan": trial.plan_file()})
            );
            return Ok(Verdict::Held);
        }
        println!("{}: {}\n", scenario.name, scenario.summary);
        println!("{}\n", wrap(scenario.doc, 92));
        println!(
            "members {}, voters {}, preset {}, {} seeds by default; seed 1's plan file:\n",
            scenario.members, scenario.voters, scenario.preset, scenario.default_seeds
        );
        print!("{}", trial.plan_file());
        return Ok(Verdict::Held);
    }
    if output == Output::Json {
        for s in CATALOG {
            println!(
                "{}",
                serde_json::json!({"name": s.name, "summary": s.summary, "members": s.members.to_string(), "voters": s.voters, "seeds": s.default_seeds})
            );
        }
        return Ok(Verdict::Held);
    }
    println!("{:<22} {:>20} {:>6} {:>5}  what", "scenario", "members", "voters", "seeds");
    for s in CATALOG {
        println!("{:<22} {:>20} {:>6} {:>5}  {}", s.name, s.members.to_string(), s.voters, s.default_seeds, s.summary);
    }
    if output != Output::Quiet {
        println!("\n`conclave list <scenario>` shows one in full; `conclave run <scenario> --seed <n>` runs it.");
    }
    Ok(Verdict::Held)
}

/// `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
