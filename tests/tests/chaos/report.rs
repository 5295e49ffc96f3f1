//! The chaos run's report: per fault, what was enqueued, lost, duplicated (and explained), left
//! for an owner, stuck, and how long the fleet took to recover; then the run's totals and the
//! privacy check. Printed at the end, and written as a Markdown table for docs/reliability.md.

use std::fmt::Write as _;
use std::time::Duration;

use crate::faults::Fault;
use crate::ledger::Tally;
use crate::privacy::Hit;

/// What one phase measured.
pub struct Phase {
    pub fault: Fault,
    pub numbers: Vec<usize>,
    /// Requests never confirmed (the upstream gave up): not counted as enqueued.
    pub refused: usize,
    /// From the lift of the fault until messages settled again.
    pub resumed: Option<Duration>,
    /// From the lift until every message enqueued so far was settled.
    pub recovered: Option<Duration>,
    pub tally: Tally,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "not within the limit".to_string(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

fn stuck(t: &Tally) -> String {
    if t.stuck.is_empty() {
        "0".into()
    } else {
        t.stuck
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The per-fault table (Markdown).
pub fn table(phases: &[Phase]) -> String {
    let mut out = String::from(
        "| fault | enqueued | lost | duplicated (explained) | outcome unknown (at the provider) | stuck | progress resumed | all settled |\n|---|---|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let t = &p.tally;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({}) | {} ({}) | {} | {} | {} |",
            p.fault.name(),
            t.enqueued,
            t.lost,
            t.duplicated,
            t.explained,
            t.outcome_unknown,
            t.unknown_but_sent,
            stuck(t),
            secs(p.resumed),
            secs(p.recovered)
        );
    }
    out
}

/// What the end of the run found, beside the phases.
pub struct Findings {
    pub total: Tally,
    /// Replies the gateway took, and replies recorded.
    pub replies: (usize, i64),
    pub hits: Vec<Hit>,
    /// Files searched and bytes read.
    pub scanned: (usize, u64),
    /// Spans exported (`None`: trace export off).
    pub spans: Option<u64>,
    pub crashed: Vec<String>,
    pub took: Duration,
}

/// Everything, as printed at the end of the run.
pub fn render(phases: &[Phase], found: &Findings) -> String {
    let Findings {
        total,
        replies,
        hits,
        scanned,
        spans,
        crashed,
        took,
    } = found;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n=== chaos report ({:.0} s) ===\n",
        took.as_secs_f64()
    );
    for p in phases {
        let _ = writeln!(out, "- {}: {}", p.fault.name(), p.fault.describe());
    }
    out.push('\n');
    out.push_str(&table(phases));
    let _ = writeln!(
        out,
        "\ntotal: {} enqueued, {} lost, {} stuck, {} duplicated at the provider ({} explained by a retry after a timeout at which the provider may have accepted the message), {} claimed by a killed sender before their call and sent again, {} failed as dispatch_outcome_unknown ({} of them at the provider, {} without an owner task), {} unknown_delivery, {} caught by a pause, {} awaiting approval as designed, {} approved but not sent",
        total.enqueued,
        total.lost,
        stuck(total),
        total.duplicated,
        total.explained,
        total.released,
        total.outcome_unknown,
        total.unknown_but_sent,
        total.unknown_without_task,
        total.unknown_delivery,
        total.held,
        total.waiting_approval,
        total.approved_not_sent,
    );
    let refused: usize = phases.iter().map(|p| p.refused).sum();
    let _ = writeln!(
        out,
        "never confirmed to the upstream (not counted): {refused}"
    );
    let failed: Vec<String> = total
        .failed
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    let _ = writeln!(out, "failed or blocked, by reason: {}", failed.join(", "));
    let _ = writeln!(
        out,
        "replies: {} taken by the gateway, {} recorded",
        replies.0, replies.1
    );
    for (what, numbers) in [
        ("lost", &total.numbers_lost),
        ("stuck", &total.numbers_stuck),
        ("unexplained duplicates", &total.numbers_unexplained),
    ] {
        if !numbers.is_empty() {
            let keys: Vec<String> = numbers
                .iter()
                .take(20)
                .map(|n| crate::traffic::key(*n))
                .collect();
            let _ = writeln!(out, "{what}: {}", keys.join(" "));
        }
    }
    let traces = match spans {
        Some(n) => format!("{n} spans exported"),
        None => "trace export off".into(),
    };
    let _ = writeln!(
        out,
        "privacy: {} files (worker logs, traces: {traces}), {} bytes read, {} hits",
        scanned.0,
        scanned.1,
        hits.len()
    );
    for hit in hits.iter().take(20) {
        let _ = writeln!(out, "  {} ({}): {}", hit.file, hit.what, hit.line);
    }
    if !crashed.is_empty() {
        let _ = writeln!(out, "crashed on their own: {}", crashed.join(", "));
    }
    out
}
