//! The text form of fault plans: what people read and write.
//!
//! One step per line (or separated by `;`), times and durations with their unit, members
//! by name:
//!
//! ```text
//! at 10s crash n5
//! at 25s restart n5 with disk
//! at 40s partition n1,n2 | n3-n5
//! at 60s heal
//! at 5s links n1->n2 loss 10% latency 1ms..5ms
//! ```
//!
//! The grammar, word by word:
//!
//! | fault | text |
//! |---|---|
//! | [`Fault::Crash`] | `crash n5` |
//! | [`Fault::CrashAtPersist`] | `crash n5 at next persist` |
//! | [`Fault::Restart`] | `restart n5 with disk`, `restart n5 without disk` |
//! | [`Fault::Pause`] | `pause n3 for 8s` |
//! | [`Fault::Slow`] | `slow n3 20ms per message` (`0s` restores the speed) |
//! | [`Fault::Partition`] | `partition n1,n2 \| n3` (members in no group form one more; `none` is an empty group) |
//! | [`Fault::OneWay`] | `one-way n1,n2 -> n3` |
//! | [`Fault::CutLinks`] | `cut n1<->n2, n4<->n5` |
//! | [`Fault::Heal`] | `heal` |
//! | [`Fault::SetLinks`] | `links all latency 500us`, `links n1<->n2 loss 25%`, `links n1->n2 ...`, `links from n1 ...`, `links to n1 ...` |
//! | [`Fault::ClockOffset`] | `clock n3 offset -5s` |
//! | [`Fault::ClockDrift`] | `clock n3 drift -12.5ppm` |
//! | [`Fault::ClockJump`] | `clock n3 jump 1ms` |
//!
//! - Durations: a decimal number and a unit, `ns`, `us` (or `µs`), `ms`, `s`, `min` or `h`:
//!   `10s`, `250ms`, `1.5s`. Exact to the nanosecond; printed in the largest unit that
//!   keeps them at or above one (`6.767s`, `250ms`, `1.5ms`). Clock offsets and jumps may
//!   be negative (`-3s`).
//! - Members: `n5`; lists `n1,n2,n7`, with runs of ids as ranges, `n1-n50` (both ends in).
//! - Link parameters, any of, in any order: `latency` (`500us` constant, `1ms..5ms`
//!   uniform, `normal 5ms sd 1ms`, `lognormal 400us sigma 0.6`, `pareto 200us shape 1.5`),
//!   `loss`, `duplicate`, `corrupt` (a probability: `10%` or `0.1`), `reorder 5% within
//!   5ms`, `stale 1% within 2min`. What is not named takes its default (500 µs constant
//!   latency, nothing lost): a `links` step replaces the links' whole behaviour.
//! - Probabilities print as percentages when that is exact, else as the number itself, so
//!   that a printed plan parses back to the very same plan (and the same trace).
//!
//! `#` starts a comment line; blank lines are skipped.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use conclave_core::{Instant, NodeId};

use super::{Disk, Fault, FaultPlan, Step};
use crate::error::Error;
use crate::network::{Latency, LinkParams, LinkSelector};

/// `d` in the plan's duration syntax: `10s`, `250ms`, `1.5ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    format_nanos(d.as_nanos())
}

fn format_nanos(n: u128) -> String {
    const UNITS: [(u128, &str); 4] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us"), (1, "ns")];
    if n == 0 {
        return "0s".to_string();
    }
    let (size, unit) = UNITS.into_iter().find(|&(size, _)| n >= size).unwrap_or((1, "ns"));
    let (whole, rest) = (n / size, n % size);
    if rest == 0 {
        return format!("{whole}{unit}");
    }
    let digits = size.ilog10() as usize;
    let fraction = format!("{rest:0digits$}");
    format!("{whole}.{}{unit}", fraction.trim_end_matches('0'))
}

/// Nanoseconds with a sign, in the duration syntax (`-3s`).
fn format_signed(nanos: i64) -> String {
    let d = format_nanos(u128::from(nanos.unsigned_abs()));
    if nanos < 0 {
        format!("-{d}")
    } else {
        d
    }
}

/// Reads a duration: a decimal number and a unit (`10s`, `250ms`, `1.5s`, `2min`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = parse_nanos(text)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

fn parse_nanos(text: &str) -> Result<u128, String> {
    let bad = || format!("`{text}` is not a duration (like 10s, 250ms, 1.5s)");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let size: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if number.ends_with('.') {
        return Err(bad());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let mut nanos = whole.checked_mul(size).ok_or_else(bad)?;
    if !fraction.is_empty() {
        let scale = 10u128.checked_pow(fraction.len() as u32).ok_or_else(bad)?;
        let digits: u128 = fraction.parse().map_err(|_| bad())?;
        let part = digits.checked_mul(size).ok_or_else(bad)?;
        if part % scale != 0 {
            return Err(format!("`{text}` is finer than a nanosecond"));
        }
        nanos = nanos.checked_add(part / scale).ok_or_else(bad)?;
    }
    if nanos > u128::from(u64::MAX) {
        return Err(format!("`{text}` is too long"));
    }
    Ok(nanos)
}

fn parse_signed(text: &str) -> Result<i64, String> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let nanos = i64::try_from(parse_nanos(magnitude)?).map_err(|_| format!("`{text}` is too long"))?;
    Ok(if negative { -nanos } else { nanos })
}

/// A probability: a percentage when that prints and parses back exactly, else the number.
fn format_probability(p: f64) -> String {
    let percent = format!("{}", p * 100.0);
    match percent.parse::<f64>() {
        Ok(back) if back / 100.0 == p => format!("{percent}%"),
        _ => format!("{p}"),
    }
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let bad = || format!("`{text}` is not a probability (like 10% or 0.1)");
    let p = match text.strip_suffix('%') {
        Some(percent) => percent.parse::<f64>().map_err(|_| bad())? / 100.0,
        None => text.parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(p)
}

fn parse_number(text: &str, what: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("`{text}` is not a number ({what})")),
    }
}

fn parse_node(text: &str) -> Result<NodeId, String> {
    text.strip_prefix('n')
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
        .map(NodeId)
        .ok_or_else(|| format!("`{text}` is not a member (like n5)"))
}

/// Members as `n1,n2,n7`, ascending runs of three or more as `n1-n50`; `none` when empty.
fn format_nodes(nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        return "none".to_string();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let mut j = i;
        while j + 1 < nodes.len() && nodes[j + 1].0 == nodes[j].0.wrapping_add(1) {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", nodes[i], nodes[j]));
        } else {
            parts.extend(nodes[i..=j].iter().map(ToString::to_string));
        }
        i = j + 1;
    }
    parts.join(",")
}

fn parse_nodes(words: &[&str]) -> Result<Vec<NodeId>, String> {
    let text = words.join("");
    if text == "none" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_node(a)?, parse_node(b)?);
                if b.0 < a.0 || b.0 - a.0 > 1_000_000 {
                    return Err(format!("`{part}` is not a range of members (like n1-n50)"));
                }
                out.extend((a.0..=b.0).map(NodeId));
            }
            None => out.push(parse_node(part)?),
        }
    }
    Ok(out)
}

fn format_latency(latency: &Latency) -> String {
    match latency {
        Latency::Constant(d) => format_duration(*d),
        Latency::Uniform { min, max } => format!("{}..{}", format_duration(*min), format_duration(*max)),
        Latency::Normal { mean, std_dev } => {
            format!("normal {} sd {}", format_duration(*mean), format_duration(*std_dev))
        }
        Latency::LogNormal { median, sigma } => format!("lognormal {} sigma {sigma}", format_duration(*median)),
        Latency::Pareto { scale, shape } => format!("pareto {} shape {shape}", format_duration(*scale)),
    }
}

fn format_selector(links: &LinkSelector) -> String {
    match links {
        LinkSelector::All => "all".to_string(),
        LinkSelector::Between(a, b) => format!("{a}<->{b}"),
        LinkSelector::OneWay { from, to } => format!("{from}->{to}"),
        LinkSelector::From(a) => format!("from {a}"),
        LinkSelector::To(a) => format!("to {a}"),
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Crash(node) => write!(f, "crash {node}"),
            Self::CrashAtPersist(node) => write!(f, "crash {node} at next persist"),
            Self::Restart { node, disk: Disk::Kept } => write!(f, "restart {node} with disk"),
            Self::Restart { node, disk: Disk::Amnesia } => write!(f, "restart {node} without disk"),
            Self::Pause { node, duration } => write!(f, "pause {node} for {}", format_duration(*duration)),
            Self::Slow { node, per_message } => write!(f, "slow {node} {} per message", format_duration(*per_message)),
            Self::Partition(groups) => {
                f.write_str("partition")?;
                for (i, group) in groups.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { " | " })?;
                    f.write_str(&format_nodes(group))?;
                }
                Ok(())
            }
            Self::OneWay { from, to } => write!(f, "one-way {} -> {}", format_nodes(from), format_nodes(to)),
            Self::CutLinks(links) => {
                f.write_str("cut")?;
                for (i, (a, b)) in links.iter().enumerate() {
                    write!(f, "{}{a}<->{b}", if i == 0 { " " } else { ", " })?;
                }
                Ok(())
            }
            Self::Heal => f.write_str("heal"),
            Self::SetLinks { links, params } => {
                write!(f, "links {} latency {}", format_selector(links), format_latency(&params.latency))?;
                if params.loss != 0.0 {
                    write!(f, " loss {}", format_probability(params.loss))?;
                }
                if params.duplicate != 0.0 {
                    write!(f, " duplicate {}", format_probability(params.duplicate))?;
                }
                if params.reorder != 0.0 || !params.reorder_delay.is_zero() {
                    let within = format_duration(params.reorder_delay);
                    write!(f, " reorder {} within {within}", format_probability(params.reorder))?;
                }
                if params.corrupt != 0.0 {
                    write!(f, " corrupt {}", format_probability(params.corrupt))?;
                }
                if params.stale != 0.0 || !params.stale_delay.is_zero() {
                    let within = format_duration(params.stale_delay);
                    write!(f, " stale {} within {within}", format_probability(params.stale))?;
                }
                Ok(())
            }
            Self::ClockOffset { node, offset_nanos } => {
                write!(f, "clock {node} offset {}", format_signed(*offset_nanos))
            }
            Self::ClockDrift { node, ppm } => write!(f, "clock {node} drift {ppm}ppm"),
            Self::ClockJump { node, nanos } => write!(f, "clock {node} jump {}", format_signed(*nanos)),
        }
    }
}

/// Splits a step into words: whitespace separates, and `|`, `,`, `->` and `<->` stand
/// alone (so `n1,n2`, `n1, n2` and `n1 , n2` read the same).
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let punct = match bytes[i] {
            b'|' | b',' => 1,
            b'-' if bytes.get(i + 1) == Some(&b'>') => 2,
            b'<' if bytes.get(i + 1) == Some(&b'-') && bytes.get(i + 2) == Some(&b'>') => 3,
            _ => 0,
        };
        if punct > 0 || bytes[i].is_ascii_whitespace() {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
            if punct > 0 {
                out.push(&text[i..i + punct]);
                i += punct;
                continue;
            }
        } else if start.is_none() {
            start = Some(i);
        }
        i += 1;
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Reads words of one fault.
struct Reader<'a> {
    words: Vec<&'a str>,
    at: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, String> {
        let word = self.words.get(self.at).copied().ok_or_else(|| format!("expected {what}, found the end"))?;
        self.at += 1;
        Ok(word)
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).copied()
    }

    fn keyword(&mut self, word: &str) -> Result<(), String> {
        match self.next(&format!("`{word}`"))? {
            w if w == word => Ok(()),
            other => Err(format!("expected `{word}`, found `{other}`")),
        }
    }

    fn node(&mut self) -> Result<NodeId, String> {
        parse_node(self.next("a member (like n5)")?)
    }

    fn duration(&mut self) -> Result<Duration, String> {
        parse_duration(self.next("a duration (like 10s)")?)
    }

    /// A member list: words up to the next one that is not a member, `,` or `none`.
    fn nodes(&mut self) -> Result<Vec<NodeId>, String> {
        let start = self.at;
        while let Some(w) = self.peek() {
            let member = w == ","
                || w == "none"
                || w.strip_prefix('n').is_some_and(|id| id.starts_with(|c: char| c.is_ascii_digit()));
            if !member {
                break;
            }
            self.at += 1;
        }
        if start == self.at {
            return Err(match self.peek() {
                Some(w) => format!("expected members (like n1,n2), found `{w}`"),
                None => "expected members (like n1,n2), found the end".to_string(),
            });
        }
        parse_nodes(&self.words[start..self.at])
    }

    fn done(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(w) => Err(format!("unexpected `{w}`")),
        }
    }
}

fn parse_latency(r: &mut Reader<'_>) -> Result<Latency, String> {
    let word = r.next("a latency (like 500us or 1ms..5ms)")?;
    Ok(match word {
        "normal" => {
            let mean = r.duration()?;
            r.keyword("sd")?;
            Latency::Normal { mean, std_dev: r.duration()? }
        }
        "lognormal" => {
            let median = r.duration()?;
            r.keyword("sigma")?;
            Latency::LogNormal { median, sigma: parse_number(r.next("sigma")?, "sigma")? }
        }
        "pareto" => {
            let scale = r.duration()?;
            r.keyword("shape")?;
            Latency::Pareto { scale, shape: parse_number(r.next("shape")?, "shape")? }
        }
        range => match range.split_once("..") {
            Some((min, max)) => Latency::Uniform { min: parse_duration(min)?, max: parse_duration(max)? },
            None => Latency::Constant(parse_duration(range)?),
        },
    })
}

fn parse_links(r: &mut Reader<'_>) -> Result<Fault, String> {
    let links = match r.next("which links (all, n1<->n2, n1->n2, from n1, to n1)")? {
        "all" => LinkSelector::All,
        "from" => LinkSelector::From(r.node()?),
        "to" => LinkSelector::To(r.node()?),
        first => {
            let a = parse_node(first)?;
            match r.next("`<->` or `->`")? {
                "<->" => LinkSelector::Between(a, r.node()?),
                "->" => LinkSelector::OneWay { from: a, to: r.node()? },
                other => return Err(format!("expected `<->` or `->`, found `{other}`")),
            }
        }
    };
    let mut params = LinkParams::default();
    while let Some(word) = r.peek() {
        r.at += 1;
        let probability = |r: &mut Reader<'_>| parse_probability(r.next("a probability (like 10%)")?);
        match word {
            "latency" => params.latency = parse_latency(r)?,
            "loss" => params.loss = probability(r)?,
            "duplicate" => params.duplicate = probability(r)?,
            "corrupt" => params.corrupt = probability(r)?,
            "reorder" => {
                params.reorder = probability(r)?;
                r.keyword("within")?;
                params.reorder_delay = r.duration()?;
            }
            "stale" => {
                params.stale = probability(r)?;
                r.keyword("within")?;
                params.stale_delay = r.duration()?;
            }
            other => {
                return Err(format!(
                    "`{other}` is no link parameter (latency, loss, duplicate, reorder, corrupt, stale)"
                ))
            }
        }
    }
    Ok(Fault::SetLinks { links, params })
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    let mut r = Reader { words: words(text), at: 0 };
    let fault = match r.next("a fault")? {
        "crash" => {
            let node = r.node()?;
            if r.peek() == Some("at") {
                r.keyword("at")?;
                r.keyword("next")?;
                r.keyword("persist")?;
                Fault::CrashAtPersist(node)
            } else {
                Fault::Crash(node)
            }
        }
        "restart" => {
            let node = r.node()?;
            let disk = match r.next("`with disk` or `without disk`")? {
                "with" => Disk::Kept,
                "without" => Disk::Amnesia,
                other => return Err(format!("expected `with disk` or `without disk`, found `{other}`")),
            };
            r.keyword("disk")?;
            Fault::Restart { node, disk }
        }
        "pause" => {
            let node = r.node()?;
            r.keyword("for")?;
            Fault::Pause { node, duration: r.duration()? }
        }
        "slow" => {
            let node = r.node()?;
            let per_message = r.duration()?;
            r.keyword("per")?;
            r.keyword("message")?;
            Fault::Slow { node, per_message }
        }
        "partition" => {
            let mut groups = Vec::new();
            if r.peek().is_some() {
                groups.push(r.nodes()?);
                while r.peek() == Some("|") {
                    r.at += 1;
                    groups.push(r.nodes()?);
                }
            }
            Fault::Partition(groups)
        }
        "one-way" => {
            let from = r.nodes()?;
            r.keyword("->")?;
            Fault::OneWay { from, to: r.nodes()? }
        }
        "cut" => {
            let mut links = Vec::new();
            while r.peek().is_some() {
                if !links.is_empty() {
                    r.keyword(",")?;
                }
                let a = r.node()?;
                r.keyword("<->")?;
                links.push((a, r.node()?));
            }
            Fault::CutLinks(links)
        }
        "heal" => Fault::Heal,
        "links" => parse_links(&mut r)?,
        "clock" => {
            let node = r.node()?;
            match r.next("`offset`, `drift` or `jump`")? {
                "offset" => Fault::ClockOffset { node, offset_nanos: parse_signed(r.next("an offset (like -5s)")?)? },
                "jump" => Fault::ClockJump { node, nanos: parse_signed(r.next("a step (like 2s)")?)? },
                "drift" => {
                    let word = r.next("a drift (like 500ppm)")?;
                    let ppm =
                        word.strip_suffix("ppm").ok_or_else(|| format!("`{word}` is not a drift (like 500ppm)"))?;
                    Fault::ClockDrift { node, ppm: parse_number(ppm, "parts per million")? }
                }
                other => return Err(format!("expected `offset`, `drift` or `jump`, found `{other}`")),
            }
        }
        other => {
            return Err(format!(
                "`{other}` is no fault (crash, restart, pause, slow, partition, one-way, cut, heal, links, clock)"
            ))
        }
    };
    r.done()?;
    Ok(fault)
}

impl FromStr for Fault {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        parse_fault(text.trim()).map_err(|message| Error::Plan { text: text.trim().to_string(), message })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} {}", format_duration(self.at.since_epoch()), self.fault)
    }
}

fn parse_step(text: &str) -> Result<Step, String> {
    let rest = text.strip_prefix("at").filter(|r| r.starts_with(char::is_whitespace));
    let rest = rest.ok_or_else(|| "a step starts with `at <time>` (like `at 10s crash n5`)".to_string())?.trim_start();
    let (time, fault) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let at = parse_nanos(time).map_err(|e| format!("{e}, after `at`"))?;
    // parse_nanos keeps within u64.
    let at = Instant::from_nanos(at as u64);
    Ok(Step { at, fault: parse_fault(fault.trim())? })
}

impl FromStr for Step {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        parse_step(text.trim()).map_err(|message| Error::Plan { text: text.trim().to_string(), message })
    }
}

/// One line, steps separated by `; ` (the form a report prints); `{:#}` puts one step on
/// each line (the form of a plan file). Both parse back to the same plan.
impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str(if f.alternate() { "" } else { "(no faults)" });
        }
        let separator = if f.alternate() { "\n" } else { "; " };
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(separator)?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl FromStr for FaultPlan {
    type Err = Error;

    /// Steps separated by newlines or `;`; blank lines, `#` comments and the words
    /// `(no faults)` are skipped.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut plan = Self::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line == "(no faults)" {
                continue;
            }
            for step in line.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                plan.steps.push(step.parse()?);
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    #[test]
    fn durations_print_in_the_largest_unit_and_parse_back_exactly() {
        for (nanos, text) in [
            (0, "0s"),
            (10_000_000_000, "10s"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (6_767_000_000, "6.767s"),
            (1_500_000, "1.5ms"),
            (1_000_500, "1.0005ms"),
            (750, "750ns"),
            (2_000, "2us"),
            (3_600_000_000_001, "3600.000000001s"),
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        for bad in ["", "10", "s", "1.s", ".5s", "1,5s", "10 s", "1x", "-1s", "1.0000000001s", "99999999999999999999h"]
        {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse_signed("-3s"), Ok(-3_000_000_000));
        assert_eq!(format_signed(-3_000_000_000), "-3s");
    }

    #[test]
    fn member_lists_collapse_runs_and_keep_their_order() {
        let ids = |v: &[u64]| v.iter().copied().map(n).collect::<Vec<_>>();
        for (list, text) in [
            (ids(&[1, 2, 3, 4]), "n1-n4"),
            (ids(&[1, 2]), "n1,n2"),
            (ids(&[3, 1, 2]), "n3,n1,n2"),
            (ids(&[1, 2, 3, 7, 9, 10, 11]), "n1-n3,n7,n9-n11"),
            (Vec::new(), "none"),
        ] {
            assert_eq!(format_nodes(&list), text);
            assert_eq!(parse_nodes(&words(text)), Ok(list), "{text}");
        }
        assert_eq!(parse_nodes(&words("n1, n2 ,n3")), Ok(ids(&[1, 2, 3])));
        assert!(parse_nodes(&words("n3-n1")).is_err());
        assert!(parse_nodes(&words("5")).is_err());
    }

    #[test]
    fn probabilities_are_percentages_when_exact() {
        assert_eq!(format_probability(0.1), "10%");
        assert_eq!(format_probability(0.25), "25%");
        for p in [0.1, 0.2, 0.0734523412, 1.0 / 3.0, 0.005, 0.999] {
            assert_eq!(parse_probability(&format_probability(p)), Ok(p), "{p}");
        }
        assert!(parse_probability("120%").is_err() && parse_probability("-0.1").is_err());
    }

    #[test]
    fn every_fault_prints_as_written_and_parses_back() {
        let lossy = LinkParams::default()
            .with_latency(Latency::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(5) })
            .with_loss(0.1);
        for (fault, text) in [
            (Fault::Crash(n(5)), "crash n5"),
            (Fault::CrashAtPersist(n(5)), "crash n5 at next persist"),
            (Fault::Restart { node: n(5), disk: Disk::Kept }, "restart n5 with disk"),
            (Fault::Restart { node: n(5), disk: Disk::Amnesia }, "restart n5 without disk"),
            (Fault::Pause { node: n(3), duration: Duration::from_secs(8) }, "pause n3 for 8s"),
            (Fault::Slow { node: n(3), per_message: Duration::from_millis(20) }, "slow n3 20ms per message"),
            (Fault::Partition(vec![vec![n(1), n(2)], vec![n(3), n(4), n(5)]]), "partition n1,n2 | n3-n5"),
            (Fault::Partition(vec![vec![], vec![n(2)]]), "partition none | n2"),
            (Fault::Partition(vec![]), "partition"),
            (Fault::OneWay { from: vec![n(1), n(2)], to: vec![n(3)] }, "one-way n1,n2 -> n3"),
            (Fault::CutLinks(vec![(n(1), n(2)), (n(4), n(5))]), "cut n1<->n2, n4<->n5"),
            (Fault::Heal, "heal"),
            (
                Fault::SetLinks { links: LinkSelector::OneWay { from: n(1), to: n(2) }, params: lossy },
                "links n1->n2 latency 1ms..5ms loss 10%",
            ),
            (Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default() }, "links all latency 500us"),
            (Fault::ClockOffset { node: n(1), offset_nanos: 9_450_000_000 }, "clock n1 offset 9.45s"),
            (Fault::ClockOffset { node: n(3), offset_nanos: -5 }, "clock n3 offset -5ns"),
            (Fault::ClockDrift { node: n(3), ppm: -12.5 }, "clock n3 drift -12.5ppm"),
            (Fault::ClockJump { node: n(4), nanos: 2_000_000_000 }, "clock n4 jump 2s"),
        ] {
            assert_eq!(fault.to_string(), text);
            assert_eq!(text.parse::<Fault>(), Ok(fault), "{text}");
        }
    }

    #[test]
    fn link_parameters_of_every_kind_round_trip() {
        let params = LinkParams::default()
            .with_latency(Latency::LogNormal { median: Duration::from_micros(400), sigma: 0.6 })
            .with_loss(0.0734523412)
            .with_duplicate(0.125)
            .with_reorder(0.5, Duration::from_millis(3))
            .with_corrupt(0.0625)
            .with_stale(0.01, Duration::from_secs(120));
        for latency in [
            Latency::Normal { mean: Duration::from_millis(5), std_dev: Duration::from_millis(1) },
            Latency::Pareto { scale: Duration::from_micros(200), shape: 1.5 },
            params.latency.clone(),
        ] {
            for links in
                [LinkSelector::All, LinkSelector::Between(n(1), n(2)), LinkSelector::From(n(3)), LinkSelector::To(n(4))]
            {
                let fault = Fault::SetLinks { links, params: params.clone().with_latency(latency.clone()) };
                let text = fault.to_string();
                assert_eq!(text.parse::<Fault>(), Ok(fault), "{text}");
            }
        }
        let text = "links n1<->n2 loss 25% reorder 5% within 20ms latency normal 5ms sd 1ms";
        let parsed: Fault = text.parse().expect("parameters in any order");
        assert_eq!(parsed.to_string(), "links n1<->n2 latency normal 5ms sd 1ms loss 25% reorder 5% within 20ms");
    }

    #[test]
    fn plans_print_on_one_line_or_one_step_per_line_and_parse_back() {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(10), Fault::Crash(n(5)))
            .at(Instant::from_millis(40_500), Fault::Partition(vec![vec![n(1), n(2)], vec![n(3), n(4), n(5)]]))
            .at(Instant::from_secs(60), Fault::Heal);
        let line = plan.to_string();
        assert_eq!(line, "at 10s crash n5; at 40.5s partition n1,n2 | n3-n5; at 60s heal");
        assert_eq!(line.parse::<FaultPlan>(), Ok(plan.clone()));
        let file = format!("{plan:#}");
        assert_eq!(file, "at 10s crash n5\nat 40.5s partition n1,n2 | n3-n5\nat 60s heal");
        assert_eq!(format!("# a comment\n\n{file}\n").parse::<FaultPlan>(), Ok(plan));
        assert_eq!(FaultPlan::new().to_string(), "(no faults)");
        assert_eq!("(no faults)".parse::<FaultPlan>(), Ok(FaultPlan::new()));
    }

    #[test]
    fn a_bad_step_says_what_is_wrong_with_which_words() {
        for (text, says) in [
            ("crash n5", "starts with `at <time>`"),
            ("at 10 crash n5", "`10` is not a duration"),
            ("at 10s explode n5", "`explode` is no fault"),
            ("at 10s crash 5", "`5` is not a member"),
            ("at 10s crash n5 n6", "unexpected `n6`"),
            ("at 10s restart n5", "expected `with disk` or `without disk`, found the end"),
            ("at 10s links all loss 150%", "not between 0% and 100%"),
            ("at 10s links all jitter 5ms", "`jitter` is no link parameter"),
            ("at 10s clock n1 drift 5", "`5` is not a drift"),
            ("at 1.00000000001s heal", "finer than a nanosecond"),
        ] {
            let err = text.parse::<Step>().expect_err(text).to_string();
            assert!(err.contains(says) && err.contains(text), "{text}: {err}");
        }
    }
}
