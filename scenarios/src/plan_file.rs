//! Plan files: a fault plan with the little it needs to run on its own.
//!
//! ```text
//! # conclave plan: random-chaos seed 7, shrunk from 11 faults on 9 members
//! scenario random-chaos
//! seed 7
//! members 4
//! voters 4
//! preset lan
//! at 12.3s partition n1,n2
//! at 65s heal
//! ```
//!
//! The header says which scenario's bounds judge the run (none: the standard checkers
//! alone), the seed, the cluster size, how many of the first members vote and the protocol
//! preset; then one step per line in the plan's text form
//! ([`conclave_sim::fault::text`]). Every header line may be left out: the scenario's
//! defaults, else seed 1, as many members as the plan names (at least 3), five voters (all,
//! when fewer), `lan`. `conclave run --plan FILE` and `conclave replay FILE` run it; JSON
//! carries it as this text.

use std::fmt;
use std::str::FromStr;

use conclave_sim::chaos::VOTERS;
use conclave_sim::FaultPlan;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Preset};
use crate::error::Error;

/// A plan and the cluster it runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PlanFile {
    /// The scenario whose bounds judge it, if any.
    pub scenario: Option<String>,
    /// The seed.
    pub seed: u64,
    /// The cluster size.
    pub members: usize,
    /// How many of the first members vote.
    pub voters: usize,
    /// The protocol preset.
    pub preset: Preset,
    /// The faults.
    pub plan: FaultPlan,
}

impl fmt::Display for PlanFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scenario) = &self.scenario {
            writeln!(f, "scenario {scenario}")?;
        }
        writeln!(f, "seed {}", self.seed)?;
        writeln!(f, "members {}", self.members)?;
        writeln!(f, "voters {}", self.voters)?;
        writeln!(f, "preset {}", self.preset)?;
        if !self.plan.is_empty() {
            writeln!(f, "{:#}", self.plan)?;
        }
        Ok(())
    }
}

impl FromStr for PlanFile {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |line: usize, message: String| Error::PlanFile { line, message };
        let (mut scenario, mut seed, mut members, mut voters, mut preset) = (None, None, None, None, None);
        let mut plan = FaultPlan::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let number = i + 1;
            // `(no faults)` is how an empty plan prints on one line.
            if line.is_empty() || line.starts_with('#') || line == "(no faults)" {
                continue;
            }
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let value = value.trim();
            let count = |what: &str| -> Result<u64, Error> {
                value.parse::<u64>().map_err(|_| bad(number, format!("`{value}` is not a {what}")))
            };
            match key {
                "scenario" => {
                    if catalog::find(value).is_none() {
                        return Err(bad(number, format!("no scenario `{value}` (there are: {})", catalog::names())));
                    }
                    scenario = Some(value.to_string());
                }
                "seed" => seed = Some(count("seed")?),
                "members" => members = Some(count("member count")? as usize),
                "voters" => voters = Some(count("voter count")? as usize),
                "preset" => preset = Some(value.parse::<Preset>().map_err(|e| bad(number, e))?),
                "at" => {
                    for step in line.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                        let step = step.parse().map_err(|e: conclave_sim::Error| bad(number, e.to_string()))?;
                        plan.steps.push(step);
                    }
                }
                other => {
                    return Err(bad(
                        number,
                        format!(
                            "`{other}` starts no line of a plan file (scenario, seed, members, voters, preset, at)"
                        ),
                    ))
                }
            }
        }
        let defaults = scenario.as_deref().and_then(catalog::find);
        let seed = seed.unwrap_or(1);
        let named = plan.highest_member().map_or(0, |m| m.0 as usize);
        let members = members.unwrap_or_else(|| defaults.map_or(3, |s| s.members_for(seed)).max(named).max(3));
        let voters = voters.unwrap_or_else(|| defaults.map_or(VOTERS, |s| s.voters)).min(members);
        let preset = preset.unwrap_or_else(|| defaults.map_or(Preset::Lan, |s| s.preset));
        if named > members {
            return Err(Error::PlanNamesOthers { member: conclave_core::NodeId(named as u64), members });
        }
        Ok(Self { scenario, seed, members, voters, preset, plan })
    }
}

impl From<PlanFile> for String {
    fn from(file: PlanFile) -> Self {
        file.to_string()
    }
}

impl TryFrom<String> for PlanFile {
    type Error = Error;

    fn try_from(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::{Instant, NodeId};
    use conclave_sim::Fault;

    #[test]
    fn a_plan_file_prints_its_header_and_steps_and_reads_back() {
        let file = PlanFile {
            scenario: Some("random-chaos".to_string()),
            seed: 7,
            members: 4,
            voters: 4,
            preset: Preset::Lan,
            plan: FaultPlan::new()
                .at(Instant::from_millis(12_300), Fault::Partition(vec![vec![NodeId(1), NodeId(2)]]))
                .at(Instant::from_secs(65), Fault::Heal),
        };
        let text = file.to_string();
        assert_eq!(
            text,
            "scenario random-chaos\nseed 7\nmembers 4\nvoters 4\npreset lan\nat 12.3s partition n1,n2\nat 65s heal\n"
        );
        assert_eq!(text.parse::<PlanFile>().expect("its own output"), file);
        let json = serde_json::to_string(&file).expect("a string");
        assert_eq!(json, serde_json::to_string(&text).expect("a string"));
        assert_eq!(serde_json::from_str::<PlanFile>(&json).expect("reads back"), file);
    }

    #[test]
    fn a_bare_plan_takes_the_defaults_and_a_scenario_lends_its_own() {
        let bare: PlanFile = "at 1s crash n4; at 2s heal".parse().expect("steps alone");
        let empty: PlanFile = "seed 2\n(no faults)\n".parse().expect("an empty plan, as a report prints it");
        assert!(empty.plan.is_empty());
        assert_eq!((bare.scenario, bare.seed, bare.members, bare.voters, bare.preset), (None, 1, 4, 4, Preset::Lan));
        let crash: PlanFile = "scenario crash-detection\nseed 3\nat 1s crash n4".parse().expect("a header");
        assert_eq!((crash.members, crash.voters), (10, 5));
    }

    #[test]
    fn a_bad_line_is_named_with_what_is_wrong() {
        for (text, says) in [
            ("scenario no-such\n", "line 1: no scenario `no-such`"),
            ("seed seven\n", "line 1: `seven` is not a seed"),
            ("seed 1\nmembers 3\nat 1s crash n5\n", "names n5, but the cluster has 3 members"),
            ("preset fast\n", "`fast` is no preset"),
            ("\n\nat 1s smash n1\n", "line 3: cannot read `at 1s smash n1`"),
            ("{\"steps\":[]}", "starts no line"),
        ] {
            let err = text.parse::<PlanFile>().expect_err(text).to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
