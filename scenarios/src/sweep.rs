//! Sweeps: many seeds of many scenarios, one [`Record`] per run, and a [`Summary`] of
//! percentiles built from the records alone.
//!
//! A sweep is a list of [`Job`]s (a scenario and a seed) in a fixed order. A [`Shard`]
//! `K/N` takes every job whose position modulo `N` is `K`, so `N` machines that run the
//! shards `0/N` to `N-1/N` run every job once between them; each writes its records as JSON
//! lines, and [`Summary::of`] over all the lines (in any order, from any number of files)
//! gives the very table one machine would have printed.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use conclave_sim::TraceMode;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Scenario, CATALOG};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::trial::{Outcome, Trial};

/// One run of a sweep.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// The seed.
    pub seed: u64,
}

/// The jobs of a sweep over `scenarios` (in catalog order), `seeds` seeds each from
/// `first` (each scenario's default when `None`).
pub fn jobs(scenarios: &[&'static Scenario], seeds: Option<u64>, first: u64) -> Vec<Job> {
    let mut out = Vec::new();
    for scenario in CATALOG.iter().filter(|s| scenarios.iter().any(|x| x.name == s.name)) {
        let count = seeds.unwrap_or(scenario.default_seeds);
        out.extend((first..first.saturating_add(count)).map(|seed| Job { scenario, seed }));
    }
    out
}

/// A deterministic slice of a sweep: the jobs whose position modulo `count` is `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, from 0.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// This shard's jobs.
    pub fn take(&self, jobs: Vec<Job>) -> Vec<Job> {
        jobs.into_iter().enumerate().filter(|(i, _)| *i as u64 % self.count == self.index).map(|(_, j)| j).collect()
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N`, with `K` from 0 to `N - 1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: K/N with K from 0 to N-1, such as 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The check that failed a run, where and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The check.
    pub check: String,
    /// Virtual time, as printed (`17.500s`); `null` for a check that could not judge.
    pub at: Option<String>,
    /// What was wrong.
    pub message: String,
}

/// One run's result: a line of a shard's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The scenario.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The cluster size.
    pub members: usize,
    /// Whether every check judged and held.
    pub held: bool,
    /// The first failed check, if any.
    pub failure: Option<Failure>,
    /// The trace hash, in hex.
    pub trace_hash: String,
    /// Virtual seconds the run lasted.
    pub virtual_secs: f64,
    /// The figures.
    pub metrics: Metrics,
}

impl Record {
    /// Runs `job` (on `members` members instead of the default, if given).
    pub fn run(job: Job, members: Option<usize>) -> Result<Self, Error> {
        let trial = Trial::of(job.scenario, job.seed, members)?;
        let outcome = trial.run(TraceMode::Events, None)?;
        Ok(Self::of(&trial, &outcome))
    }

    /// The record of `trial`'s `outcome`.
    pub fn of(trial: &Trial, outcome: &Outcome) -> Self {
        let failure = outcome.first_violation().map(|v| Failure {
            check: v.checker.to_string(),
            at: Some(v.at.to_string()),
            message: v.message.clone(),
        });
        let failure = failure.or_else(|| {
            outcome.report.checks.iter().find_map(|c| match &c.status {
                conclave_sim::Status::NotJudged(why) if !c.opted_out => {
                    Some(Failure { check: c.checker.to_string(), at: None, message: format!("could not judge: {why}") })
                }
                _ => None,
            })
        });
        Self {
            scenario: trial.name().to_string(),
            seed: trial.seed,
            members: trial.members,
            held: outcome.held(),
            failure,
            trace_hash: format!("{:#018x}", outcome.report.trace_hash),
            virtual_secs: outcome.report.end.since_epoch().as_secs_f64(),
            metrics: outcome.metrics.clone(),
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads JSON lines (blank lines skipped); `path` names the source in errors.
    pub fn read_lines(text: &str, path: &str) -> Result<Vec<Self>, Error> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Self = serde_json::from_str(line).map_err(|e| Error::Record {
                path: path.to_string(),
                line: i + 1,
                message: e.to_string(),
            })?;
            out.push(record);
        }
        Ok(out)
    }
}

/// Percentiles of one figure, in milliseconds.
fn histogram() -> Histogram<u64> {
    // 1 ms to a day, three significant figures: values within the bounds always record.
    Histogram::new_with_bounds(1, 86_400_000, 3).expect("valid bounds")
}

/// One scenario's row.
#[derive(Debug)]
struct Row {
    runs: u64,
    failed: Vec<(u64, String)>,
    detection: Histogram<u64>,
    election: Histogram<u64>,
    partition: Histogram<u64>,
    heal: Histogram<u64>,
    false_verdicts: u64,
    messages: u64,
    bytes: u64,
    member_seconds: f64,
}

impl Row {
    fn new() -> Self {
        Self {
            runs: 0,
            failed: Vec::new(),
            detection: histogram(),
            election: histogram(),
            partition: histogram(),
            heal: histogram(),
            false_verdicts: 0,
            messages: 0,
            bytes: 0,
            member_seconds: 0.0,
        }
    }

    fn add(&mut self, r: &Record) {
        self.runs += 1;
        if !r.held {
            let check = r.failure.as_ref().map_or_else(|| "?".to_string(), |f| f.check.clone());
            self.failed.push((r.seed, check));
        }
        let m = &r.metrics;
        for (hist, values) in [
            (&mut self.detection, &m.detection_ms),
            (&mut self.election, &m.election_ms),
            (&mut self.partition, &m.partition_ms),
            (&mut self.heal, &m.heal_ms),
        ] {
            for &v in values {
                hist.saturating_record(v.max(1));
            }
        }
        self.false_verdicts += m.false_verdicts;
        self.messages += m.messages;
        self.bytes += m.bytes;
        self.member_seconds += m.member_seconds;
    }
}

/// The summary of a sweep: per scenario, runs, failures and the figures' percentiles.
#[derive(Debug)]
pub struct Summary {
    rows: Vec<(String, Row)>,
}

impl Summary {
    /// The summary of `records`, whatever their order or source.
    pub fn of(records: &[Record]) -> Self {
        let order = |name: &str| CATALOG.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
        let mut sorted: Vec<&Record> = records.iter().collect();
        sorted
            .sort_by(|a, b| (order(&a.scenario), &a.scenario, a.seed).cmp(&(order(&b.scenario), &b.scenario, b.seed)));
        let mut rows: BTreeMap<(usize, String), Row> = BTreeMap::new();
        for r in sorted {
            rows.entry((order(&r.scenario), r.scenario.clone())).or_insert_with(Row::new).add(r);
        }
        Self { rows: rows.into_iter().map(|((_, name), row)| (name, row)).collect() }
    }

    /// Runs in all.
    pub fn runs(&self) -> u64 {
        self.rows.iter().map(|(_, r)| r.runs).sum()
    }

    /// Runs that failed a check.
    pub fn failed(&self) -> usize {
        self.rows.iter().map(|(_, r)| r.failed.len()).sum()
    }

    /// Each failed run: scenario, seed and the check.
    pub fn failures(&self) -> Vec<(&str, u64, &str)> {
        self.rows
            .iter()
            .flat_map(|(name, r)| r.failed.iter().map(move |(seed, check)| (name.as_str(), *seed, check.as_str())))
            .collect()
    }
}

/// `p50/p99` of a histogram in seconds, or `-`.
fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".to_string();
    }
    let s = |ms: u64| {
        if ms < 10_000 {
            format!("{:.2}", ms as f64 / 1000.0)
        } else {
            format!("{:.1}", ms as f64 / 1000.0)
        }
    };
    format!("{}/{}", s(h.value_at_quantile(0.5)), s(h.value_at_quantile(0.99)))
}

impl fmt::Display for Summary {
    /// The table: one row per scenario; times are p50/p99 in seconds of virtual time,
    /// load per member-second averaged over the runs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:>5} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6} {:>8} {:>8}",
            "scenario", "runs", "failed", "detect s", "elect s", "split s", "heal s", "false", "msg/m·s", "B/m·s"
        )?;
        for (name, r) in &self.rows {
            let per = |x: u64| if r.member_seconds > 0.0 { x as f64 / r.member_seconds } else { 0.0 };
            writeln!(
                f,
                "{:<22} {:>5} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6} {:>8.1} {:>8.0}",
                name,
                r.runs,
                r.failed.len(),
                percentiles(&r.detection),
                percentiles(&r.election),
                percentiles(&r.partition),
                percentiles(&r.heal),
                r.false_verdicts,
                per(r.messages),
                per(r.bytes)
            )?;
        }
        write!(f, "times: p50/p99 seconds (virtual) from the fault to the last member; false: false failure verdicts")
    }
}

/// The scenarios named, or all when none is.
pub fn scenarios(names: &[String]) -> Result<Vec<&'static Scenario>, Error> {
    if names.is_empty() {
        return Ok(CATALOG.iter().collect());
    }
    names.iter().map(|n| catalog::find(n).ok_or_else(|| Error::UnknownScenario(n.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_jobs_without_overlap_or_gap() {
        let all = jobs(&CATALOG.iter().collect::<Vec<_>>(), Some(3), 1);
        assert_eq!(all.len(), CATALOG.len() * 3);
        let mut seen: Vec<(&str, u64)> = Vec::new();
        for k in 0..4 {
            seen.extend(Shard { index: k, count: 4 }.take(all.clone()).iter().map(|j| (j.scenario.name, j.seed)));
        }
        let mut expected: Vec<(&str, u64)> = all.iter().map(|j| (j.scenario.name, j.seed)).collect();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1", "a/b", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_merged_give_the_summary_of_one_sweep() {
        let scenarios = [
            catalog::find("leader-crash").expect("in the catalog"),
            catalog::find("crash-detection").expect("in the catalog"),
        ];
        let all = jobs(&scenarios, Some(3), 1);
        let records: Vec<Record> = all.iter().map(|&j| Record::run(j, Some(5)).expect("runs")).collect();
        let one = Summary::of(&records).to_string();
        // Two shards, written as JSON lines and read back in the other order.
        let mut lines = String::new();
        for k in [1, 0] {
            for job in (Shard { index: k, count: 2 }).take(all.clone()) {
                lines.push_str(&Record::run(job, Some(5)).expect("runs").to_json());
                lines.push('\n');
            }
        }
        let merged = Record::read_lines(&lines, "shards").expect("reads back");
        assert_eq!(Summary::of(&merged).to_string(), one);
        assert!(one.contains("leader-crash") && one.contains("crash-detection"), "{one}");
        let err = Record::read_lines("{\"scenario\":1}\n", "bad.jsonl").expect_err("not a record").to_string();
        assert!(err.starts_with("bad.jsonl line 1:"), "{err}");
    }
}
