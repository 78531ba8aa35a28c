//! A run as a timeline: one self-contained HTML page (inline SVG, script and style; it
//! fetches nothing), one lane per member over virtual time.
//!
//! On each member's lane: the faults that touch it as bands (down after a crash, paused,
//! slow, cut off, lossy links, a drifting clock), restarts and clock steps as ticks, what
//! the others concluded about it (suspected, declared failed, recovered), and what it
//! decided itself (a partition's side, read-only, healed). Across all lanes: partitions,
//! network-wide link changes, the leader of each term in a strip above, and the violation
//! if any, a red marker with its message. Wheel zooms, dragging pans; hovering shows the
//! labels. At a hundred members and more, lanes narrow to a few pixels and marks of the
//! same kind close together on one lane merge into one (the hover says how many).
//!
//! The vocabulary is the CLI's and the trace's: faults in the plan's text form, events as
//! the trace labels them.

use std::collections::BTreeMap;

use conclave_core::{Event, NodeId};
use conclave_sim::trace::event_label;
use conclave_sim::{sim_id, Disk, Fault, LinkParams, LinkSelector, Report, Status};
use serde_json::{json, Value};

use crate::trial::Trial;

/// Marks of one kind on one lane closer than this fraction of the run merge.
const MERGE: u64 = 1500;

/// An open band on some lanes, until a later step closes it.
struct Open {
    kind: &'static str,
    label: String,
    at: u64,
    lanes: Vec<usize>,
}

fn lane_of(members: usize) -> impl Fn(NodeId) -> Option<usize> {
    move |id: NodeId| (id.0 >= 1 && id.0 as usize <= members).then(|| id.0 as usize - 1)
}

/// The page for `trial`'s run, `report` (kept with at least its events).
pub fn html(trial: &Trial, report: &Report) -> String {
    let data = data(trial, report);
    // `<` never appears raw inside the page's script: `</script>` in a message cannot end it.
    let json = data.to_string().replace('<', "\\u003c");
    let title = html_escape(&format!("{} seed {}", trial.name(), trial.seed));
    TEMPLATE.replace("{{TITLE}}", &title).replace("{{DATA}}", &json)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Everything the page draws, as JSON.
fn data(trial: &Trial, report: &Report) -> Value {
    let n = trial.members;
    let lane = lane_of(n);
    let end = report.end.as_nanos().max(1);
    let mut bands: Vec<Value> = Vec::new();
    let mut ticks: Vec<Value> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let all: Vec<usize> = (0..n).collect();
    let close = |open: &mut Vec<Open>, bands: &mut Vec<Value>, at: u64, which: &dyn Fn(&Open) -> bool| {
        open.retain(|o| {
            if which(o) {
                bands.push(json!({"kind": o.kind, "label": o.label, "from": o.at, "to": at, "lanes": o.lanes}));
                false
            } else {
                true
            }
        });
    };
    let mut steps: Vec<_> = trial.plan.steps.iter().filter(|s| s.at.as_nanos() <= end).collect();
    steps.sort_by_key(|s| s.at);
    for step in steps {
        let at = step.at.as_nanos();
        let label = format!("{} {}", step.at, step.fault);
        let one = |id: &NodeId| lane(*id).into_iter().collect::<Vec<_>>();
        match &step.fault {
            Fault::Crash(id) => {
                close(&mut open, &mut bands, at, &|o| o.kind == "down" && o.lanes == one(id));
                open.push(Open { kind: "down", label, at, lanes: one(id) });
            }
            Fault::Restart { node, disk } => {
                close(&mut open, &mut bands, at, &|o| o.kind == "down" && o.lanes == one(node));
                let kind = if *disk == Disk::Kept { "restart" } else { "restart-amnesia" };
                ticks.push(json!({"kind": kind, "label": label, "at": at, "lanes": one(node)}));
            }
            Fault::Pause { node, duration } => {
                let to = (step.at + *duration).as_nanos();
                bands.push(json!({"kind": "paused", "label": label, "from": at, "to": to, "lanes": one(node)}));
            }
            Fault::Slow { node, per_message } => {
                close(&mut open, &mut bands, at, &|o| o.kind == "slow" && o.lanes == one(node));
                if !per_message.is_zero() {
                    open.push(Open { kind: "slow", label, at, lanes: one(node) });
                }
            }
            Fault::Partition(groups) => {
                close(&mut open, &mut bands, at, &|o| o.kind == "partition");
                let mut sides = vec![0usize; n];
                for (g, members) in groups.iter().enumerate() {
                    for id in members {
                        if let Some(l) = lane(*id) {
                            sides[l] = g + 1;
                        }
                    }
                }
                // One band per side, so the sides read apart.
                let mut by_side: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                for (l, s) in sides.iter().enumerate() {
                    by_side.entry(*s).or_default().push(l);
                }
                for (side, lanes) in by_side {
                    let label = format!("{label} (side {})", side + 1);
                    open.push(Open { kind: "partition", label, at, lanes });
                }
            }
            Fault::OneWay { from, to } => {
                let lanes: Vec<usize> = from.iter().chain(to).filter_map(|id| lane(*id)).collect();
                open.push(Open { kind: "cut", label, at, lanes });
            }
            Fault::CutLinks(links) => {
                let mut lanes: Vec<usize> = links.iter().flat_map(|&(a, b)| [a, b]).filter_map(&lane).collect();
                lanes.sort_unstable();
                lanes.dedup();
                open.push(Open { kind: "cut", label, at, lanes });
            }
            Fault::Heal => close(&mut open, &mut bands, at, &|o| o.kind == "partition" || o.kind == "cut"),
            Fault::SetLinks { links, params } => {
                let lanes: Vec<usize> = match links {
                    LinkSelector::All => all.clone(),
                    LinkSelector::Between(a, b) | LinkSelector::OneWay { from: a, to: b } => {
                        [a, b].into_iter().filter_map(|id| lane(*id)).collect()
                    }
                    LinkSelector::From(a) | LinkSelector::To(a) => one(a),
                };
                let everywhere = *links == LinkSelector::All;
                close(&mut open, &mut bands, at, &|o| o.kind == "links" && (everywhere || o.lanes == lanes));
                if *params != LinkParams::default() {
                    open.push(Open { kind: "links", label, at, lanes });
                }
            }
            Fault::ClockDrift { node, ppm } => {
                close(&mut open, &mut bands, at, &|o| o.kind == "drift" && o.lanes == one(node));
                if *ppm != 0.0 {
                    open.push(Open { kind: "drift", label, at, lanes: one(node) });
                }
            }
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => {
                ticks.push(json!({"kind": "clock", "label": label, "at": at, "lanes": one(node)}));
            }
            other => {
                ticks.push(json!({"kind": "fault", "label": format!("{} {other}", step.at), "at": at, "lanes": all}))
            }
        }
    }
    close(&mut open, &mut bands, end, &|_| true);

    // Marks from events, merged per lane and kind within 1/MERGE of the run.
    let bucket = (end / MERGE).max(1);
    let mut marks: BTreeMap<(usize, &'static str, u64), (u64, String, u64)> = BTreeMap::new();
    let mut terms: BTreeMap<u64, (NodeId, u64)> = BTreeMap::new();
    let mut read_only: BTreeMap<usize, u64> = BTreeMap::new();
    for (at, node, event) in report.events() {
        let t = at.as_nanos();
        let (kind, on) = match event {
            Event::MemberSuspected(m) => ("suspected", lane(m.id)),
            Event::MemberFailed(m) => ("failed", lane(m.id)),
            Event::MemberRecovered(m) => ("recovered", lane(m.id)),
            Event::PartitionDetected { .. } => ("decided", lane(node)),
            Event::PartitionHealed => ("healed", lane(node)),
            Event::QuorumLost => {
                if let Some(l) = lane(node) {
                    read_only.entry(l).or_insert(t);
                }
                continue;
            }
            Event::QuorumRegained => {
                if let Some((l, from)) = lane(node).and_then(|l| read_only.remove(&l).map(|f| (l, f))) {
                    bands.push(json!({"kind": "read-only", "label": format!("{node} read-only"), "from": from, "to": t, "lanes": [l]}));
                }
                continue;
            }
            Event::LeaderElected { term, leader } => {
                terms.entry(*term).or_insert((*leader, t));
                continue;
            }
            _ => continue,
        };
        let Some(l) = on else { continue };
        let label = format!("{at} {node} {}", event_label(event));
        marks.entry((l, kind, t / bucket)).and_modify(|m| m.2 += 1).or_insert((t, label, 1));
    }
    for (l, from) in read_only {
        bands.push(json!({"kind": "read-only", "label": format!("{} read-only", sim_id(l)), "from": from, "to": end, "lanes": [l]}));
    }
    let marks: Vec<Value> = marks
        .into_iter()
        .map(|((l, kind, _), (at, label, count))| json!({"kind": kind, "lane": l, "at": at, "label": label, "count": count}))
        .collect();
    let term_list: Vec<(u64, NodeId, u64)> = terms.into_iter().map(|(term, (leader, at))| (term, leader, at)).collect();
    let terms: Vec<Value> = term_list
        .iter()
        .enumerate()
        .map(|(i, &(term, leader, at))| {
            let to = term_list.get(i + 1).map_or(end, |next| next.2);
            json!({"term": term, "leader": leader.to_string(), "from": at, "to": to})
        })
        .collect();
    let violations: Vec<Value> = report
        .violations
        .iter()
        .map(|v| json!({"at": v.at.as_nanos(), "check": v.checker, "message": format!("{} violated at {}: {}", v.checker, v.at, v.message)}))
        .collect();
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|c| {
            let status = match &c.status {
                Status::Held => "held",
                Status::Violated(_) => "violated",
                Status::NotJudged(_) if c.opted_out => "opted-out",
                Status::NotJudged(_) => "not-judged",
            };
            json!({"name": c.checker, "status": status, "text": c.to_string()})
        })
        .collect();
    json!({
        "title": format!("{} seed {}", trial.name(), trial.seed),
        "subtitle": format!(
            "{} members ({} vote), {}, trace hash {:#018x}; plan: {}",
            n, trial.voters, trial.preset, report.trace_hash, trial.plan
        ),
        "end": end,
        "members": (0..n).map(|i| sim_id(i).to_string()).collect::<Vec<_>>(),
        "bands": bands,
        "ticks": ticks,
        "marks": marks,
        "terms": terms,
        "violations": violations,
        "checks": checks,
        "held": report.is_clean(),
    })
}

/// The page; `{{TITLE}}` and `{{DATA}}` are filled in.
const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>conclave timeline: {{TITLE}}</title>
<style>
  body { font: 13px system-ui, sans-serif; margin: 12px 16px; color: #222; background: #fff; }
  h1 { font-size: 17px; margin: 0 0 2px; }
  #subtitle { color: #555; margin-bottom: 6px; max-height: 3.2em; overflow: auto; font-family: ui-monospace, monospace; font-size: 11px; }
  #verdict.held { color: #17692b; font-weight: 600; }
  #verdict.failed { color: #b00020; font-weight: 600; }
  #controls { margin: 6px 0; user-select: none; }
  #controls label { margin-right: 10px; white-space: nowrap; }
  #controls .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 3px; vertical-align: -1px; }
  #chart { border: 1px solid #ddd; overflow-y: auto; max-height: 78vh; cursor: grab; }
  svg text { font: 10px ui-monospace, monospace; fill: #333; }
  .lane { fill: #fafafa; stroke: #eee; stroke-width: 0.5; }
  .lane.odd { fill: #f2f2f2; }
  .axis line { stroke: #ccc; }
  .fault-band { opacity: 0.55; }
  .fault-band.down { fill: #555; } .fault-band.paused { fill: #9c6ade; } .fault-band.slow { fill: #c8a2f0; }
  .fault-band.partition { fill: #f2994a; } .fault-band.partition.side-b { fill: #56ccf2; }
  .fault-band.cut { fill: #eb5757; } .fault-band.links { fill: #f2c94c; } .fault-band.drift { fill: #6fcf97; }
  .fault-band.read-only { fill: #bdbdbd; opacity: 0.8; }
  .tick { stroke-width: 2; } .tick.restart { stroke: #219653; } .tick.restart-amnesia { stroke: #0b5d1e; stroke-dasharray: 2 1; }
  .tick.clock { stroke: #2f80ed; } .tick.fault { stroke: #333; }
  .mark.suspected { fill: #f2c94c; stroke: #9a7d0a; stroke-width: 0.5; } .mark.failed { fill: #d32f2f; }
  .mark.recovered { fill: #27ae60; } .mark.decided { fill: #8e44ad; } .mark.healed { fill: #2d9cdb; }
  .term { stroke: #fff; stroke-width: 1; }
  .violation-marker line { stroke: #b00020; stroke-width: 2; }
  .violation-marker polygon { fill: #b00020; }
  .violation-marker text { fill: #b00020; font-weight: 700; font-size: 11px; }
  .hidden { display: none; }
  #checks { margin-top: 8px; font-family: ui-monospace, monospace; font-size: 11px; }
  #checks .violated, #checks .not-judged { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1>conclave timeline: {{TITLE}} <span id="verdict"></span></h1>
<div id="subtitle"></div>
<div id="controls"></div>
<div id="chart"></div>
<div id="violations"></div>
<div id="checks"></div>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const n = D.members.length;
  const laneH = Math.max(3, Math.min(18, Math.floor(900 / Math.max(1, n))));
  const labelEvery = laneH >= 10 ? 1 : Math.ceil(10 / laneH);
  const left = 48, top = 44, right = 12;
  const kinds = ["down", "paused", "slow", "partition", "cut", "links", "drift", "read-only",
                 "restart", "clock", "suspected", "failed", "recovered", "decided", "healed"];
  const colours = {down: "#555", paused: "#9c6ade", slow: "#c8a2f0", partition: "#f2994a", cut: "#eb5757",
                   links: "#f2c94c", drift: "#6fcf97", "read-only": "#bdbdbd", restart: "#219653", clock: "#2f80ed",
                   suspected: "#f2c94c", failed: "#d32f2f", recovered: "#27ae60", decided: "#8e44ad", healed: "#2d9cdb"};
  const shown = new Set(kinds);
  let view = [0, D.end];
  document.getElementById("subtitle").textContent = D.subtitle;
  const verdict = document.getElementById("verdict");
  verdict.textContent = D.held ? "every check held" : "a check failed";
  verdict.className = D.held ? "held" : "failed";

  function el(name, attrs, parent, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(e, text) { el("title", {}, e, text); return e; }
  function secs(ns) { return (ns / 1e9).toFixed(ns < 1e10 ? 3 : 1) + "s"; }

  const controls = document.getElementById("controls");
  for (const k of kinds) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = true; box.dataset.kind = k;
    box.addEventListener("change", () => { if (box.checked) shown.add(k); else shown.delete(k); draw(); });
    label.appendChild(box);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colours[k];
    label.appendChild(swatch);
    label.appendChild(document.createTextNode(k));
    controls.appendChild(label);
  }
  const reset = document.createElement("button");
  reset.textContent = "whole run";
  reset.addEventListener("click", () => { view = [0, D.end]; draw(); });
  controls.appendChild(reset);

  const chart = document.getElementById("chart");
  const svg = el("svg", {id: "timeline"}, chart);

  function draw() {
    const width = Math.max(600, chart.clientWidth || 1200);
    const height = top + n * laneH + 24;
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const span = Math.max(1, view[1] - view[0]);
    const x = t => left + (t - view[0]) / span * (width - left - right);
    const clipX = t => Math.min(width - right, Math.max(left, x(t)));
    const y = l => top + l * laneH;
    const lanes = el("g", {class: "lanes"}, svg);
    for (let l = 0; l < n; l++) {
      tip(el("rect", {class: "lane" + (l % 2 ? " odd" : ""), x: left, y: y(l), width: width - left - right, height: laneH,
                      "data-member": D.members[l]}, lanes), D.members[l]);
      if (l % labelEvery === 0) el("text", {x: 2, y: y(l) + Math.min(laneH, 10) - 1}, lanes, D.members[l]);
    }
    const axis = el("g", {class: "axis"}, svg);
    const step = Math.pow(10, Math.floor(Math.log10(span / 8)));
    const tickStep = span / step > 40 ? step * 5 : span / step > 16 ? step * 2 : step;
    for (let t = Math.ceil(view[0] / tickStep) * tickStep; t <= view[1]; t += tickStep) {
      el("line", {x1: x(t), x2: x(t), y1: top - 12, y2: top + n * laneH}, axis);
      el("text", {x: x(t) + 2, y: top - 4}, axis, secs(t));
    }
    const terms = el("g", {class: "terms"}, svg);
    D.terms.forEach((t, i) => {
      if (t.to < view[0] || t.from > view[1]) return;
      const r = el("rect", {class: "term", x: clipX(t.from), y: 2, width: Math.max(1, clipX(t.to) - clipX(t.from)), height: 12,
                            fill: "hsl(" + ((i * 67) % 360) + ",55%,70%)", "data-term": t.term}, terms);
      tip(r, "term " + t.term + ": " + t.leader + " leads from " + secs(t.from));
      if (clipX(t.to) - clipX(t.from) > 40) el("text", {x: clipX(t.from) + 2, y: 11}, terms, "t" + t.term + " " + t.leader);
    });
    el("text", {x: 2, y: 11}, terms, "leader");
    const bands = el("g", {class: "bands"}, svg);
    const sides = {};
    for (const b of D.bands) {
      if (!shown.has(b.kind) || b.to < view[0] || b.from > view[1]) continue;
      let cls = "fault-band " + b.kind;
      if (b.kind === "partition") { const k = b.label; if (!(k in sides)) sides[k] = Object.keys(sides).length; if (sides[k] % 2) cls += " side-b"; }
      const w = Math.max(1, clipX(b.to) - clipX(b.from));
      // Consecutive lanes are one rectangle.
      const ls = b.lanes.slice().sort((a, c) => a - c);
      for (let i = 0; i < ls.length;) {
        let j = i;
        while (j + 1 < ls.length && ls[j + 1] === ls[j] + 1) j++;
        tip(el("rect", {class: cls, x: clipX(b.from), y: y(ls[i]), width: w, height: (j - i + 1) * laneH, "data-kind": b.kind}, bands),
            b.label + (b.kind === "down" || b.kind === "read-only" ? " until " + secs(b.to) : ""));
        i = j + 1;
      }
    }
    const ticks = el("g", {class: "ticks"}, svg);
    for (const t of D.ticks) {
      if (!shown.has(t.kind === "restart-amnesia" ? "restart" : t.kind) || t.at < view[0] || t.at > view[1]) continue;
      for (const l of t.lanes) tip(el("line", {class: "tick " + t.kind, x1: x(t.at), x2: x(t.at), y1: y(l), y2: y(l) + laneH}, ticks), t.label);
    }
    const marks = el("g", {class: "marks"}, svg);
    const r = Math.max(1.5, Math.min(4, laneH / 2.5));
    for (const m of D.marks) {
      if (!shown.has(m.kind) || m.at < view[0] || m.at > view[1]) continue;
      const c = el("circle", {class: "mark " + m.kind, cx: x(m.at), cy: y(m.lane) + laneH / 2, r: r, "data-kind": m.kind}, marks);
      tip(c, m.label + (m.count > 1 ? " (and " + (m.count - 1) + " more close by)" : ""));
    }
    const violations = el("g", {class: "violations"}, svg);
    for (const v of D.violations) {
      if (v.at < view[0] || v.at > view[1]) continue;
      const g = el("g", {class: "violation-marker", "data-check": v.check}, violations);
      el("line", {x1: x(v.at), x2: x(v.at), y1: 16, y2: top + n * laneH}, g);
      el("polygon", {points: (x(v.at) - 5) + ",16 " + (x(v.at) + 5) + ",16 " + x(v.at) + ",26"}, g);
      const right = x(v.at) > width / 2;
      el("text", {x: right ? x(v.at) - 7 : x(v.at) + 7, y: 26, "text-anchor": right ? "end" : "start"}, g,
         v.message.length > 90 ? v.message.slice(0, 90) + "..." : v.message);
      tip(g, v.message);
    }
  }

  // Wheel zooms around the pointer; dragging pans.
  chart.addEventListener("wheel", e => {
    if (!e.ctrlKey && !e.shiftKey && Math.abs(e.deltaY) < Math.abs(e.deltaX)) return;
    e.preventDefault();
    const rect = svg.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (e.clientX - rect.left - left) / (rect.width - left - right)));
    const at = view[0] + f * (view[1] - view[0]);
    const scale = e.deltaY > 0 ? 1.25 : 0.8;
    const span = Math.min(D.end, Math.max(1e6, (view[1] - view[0]) * scale));
    view = [Math.max(0, at - f * span), 0]; view[1] = Math.min(D.end, view[0] + span); view[0] = Math.max(0, view[1] - span);
    draw();
  }, {passive: false});
  let drag = null;
  chart.addEventListener("mousedown", e => { drag = {x: e.clientX, view: view.slice()}; chart.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { drag = null; chart.style.cursor = ""; });
  window.addEventListener("mousemove", e => {
    if (!drag) return;
    const rect = svg.getBoundingClientRect();
    const span = drag.view[1] - drag.view[0];
    let shift = -(e.clientX - drag.x) / Math.max(1, rect.width - left - right) * span;
    shift = Math.max(-drag.view[0], Math.min(D.end - drag.view[1], shift));
    view = [drag.view[0] + shift, drag.view[1] + shift];
    draw();
  });
  window.addEventListener("resize", draw);

  const vs = document.getElementById("violations");
  for (const v of D.violations) {
    const p = document.createElement("p");
    p.className = "violation";
    p.style.color = "#b00020";
    p.textContent = v.message;
    vs.appendChild(p);
  }
  const checks = document.getElementById("checks");
  for (const c of D.checks) {
    const div = document.createElement("div");
    div.className = "check " + c.status;
    div.textContent = c.text;
    checks.appendChild(div);
  }
  draw();
})();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Instant;
    use conclave_sim::TraceMode;

    #[test]
    fn the_page_is_self_contained_and_carries_the_runs_lanes_faults_and_checks() {
        let trial = Trial::named("partition-heal", 1, None).expect("a scenario");
        let outcome = trial.run(TraceMode::Events, None).expect("it runs");
        let page = html(&trial, &outcome.report);
        for outside in ["http://", "https://", "src=", "href=", "@import", "url("] {
            // The SVG namespace is a name, not a fetch.
            let count = page.matches(outside).count() - usize::from(outside == "http://");
            assert_eq!(count, 0, "{outside} in the page");
        }
        let start = page.find("id=\"data\">").expect("the data") + "id=\"data\">".len();
        let end = start + page[start..].find("</script>").expect("its end");
        let data: Value = serde_json::from_str(&page[start..end]).expect("JSON");
        assert_eq!(data["members"].as_array().map(Vec::len), Some(5));
        let bands = data["bands"].as_array().expect("bands");
        assert!(bands.iter().any(|b| b["kind"] == "partition"), "{bands:?}");
        assert!(bands.iter().any(|b| b["kind"] == "read-only"), "the minority went read-only");
        assert!(data["marks"].as_array().is_some_and(|m| m.iter().any(|m| m["kind"] == "decided")));
        assert!(!data["terms"].as_array().expect("terms").is_empty());
        assert_eq!(data["held"], true);
    }

    #[test]
    fn a_message_cannot_end_the_script() {
        let trial = Trial::named("crash-detection", 1, Some(3)).expect("a scenario");
        let mut report = trial.run(TraceMode::Events, None).expect("it runs").report;
        report.violations.push(conclave_sim::Violation {
            checker: "a-check",
            seed: 1,
            at: Instant::from_secs(3),
            message: "</script><script>alert(1)</script>".to_string(),
            plan: String::new(),
            replay: String::new(),
        });
        let page = html(&trial, &report);
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own two scripts end");
        assert!(page.contains("\\u003c/script>\\u003cscript>alert(1)"));
    }
}
