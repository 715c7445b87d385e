//! `compare`'s report: a Markdown table of times and one of peak RSS, each cell with its
//! ratio to glibc, then the notes.

use std::fmt::Write as _;

use crate::options::Options;
use crate::plan::{Config, Plan};
use crate::runs::Results;
use ptalloc_benches::stats::geometric_mean;

pub fn render(o: &Options, plan: &Plan, results: &Results) -> String {
    let mut out = String::new();
    times(&mut out, o, plan, results);
    let _ = writeln!(
        out,
        "\n\nPeak RSS in MiB (ratio to glibc); for workloads that report it, peak live data in MiB.\n"
    );
    peak_rss(&mut out, plan, results);
    for n in plan.notes.iter().chain(&results.failures) {
        let _ = writeln!(out, "\nnote: {n}");
    }
    out
}

/// Time (ratio to glibc), one row per workload, and the geometric mean of each column's ratios.
fn times(out: &mut String, o: &Options, plan: &Plan, results: &Results) {
    let _ = writeln!(
        out,
        "Time in seconds (ratio to glibc), median of {} runs; {} threads, scale {}.\n",
        o.runs, o.threads, o.scale
    );
    header(out, &["workload"], &plan.configs);
    let mut ratios: Vec<Vec<f64>> = plan.configs.iter().map(|_| Vec::new()).collect();
    for (ri, row) in plan.rows.iter().enumerate() {
        let _ = write!(out, "| {} |", row.label);
        for (ci, cell) in results.cells[ri].iter().enumerate() {
            match (cell, results.time_ratio(ri, ci)) {
                (Some(m), Some(ratio)) => {
                    ratios[ci].push(ratio);
                    let _ = write!(out, " {:.3} ({ratio:.2}) |", m.seconds);
                }
                (Some(m), None) => {
                    let _ = write!(out, " {:.3} |", m.seconds);
                }
                (None, _) => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    let _ = write!(out, "| geometric mean of ratios |");
    for r in &ratios {
        let _ = write!(out, " {:.3} |", geometric_mean(r));
    }
}

/// Peak RSS (ratio to glibc), and the workload's peak live data where it reports it.
fn peak_rss(out: &mut String, plan: &Plan, results: &Results) {
    header(out, &["workload", "live"], &plan.configs);
    for (ri, row) in plan.rows.iter().enumerate() {
        let cells = &results.cells[ri];
        let base = cells[0].map(|m| m.rss_kib);
        let live = cells.iter().flatten().map(|m| m.peak_live).find(|v| v.is_finite());
        let live = live.map_or("—".into(), |l| format!("{:.1}", l / (1 << 20) as f64));
        let _ = write!(out, "| {} | {live} |", row.label);
        for cell in cells {
            match (cell, base) {
                (Some(m), Some(b)) => {
                    let _ = write!(out, " {:.1} ({:.2}) |", m.rss_kib / 1024.0, m.rss_kib / b);
                }
                _ => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
}

/// A Markdown table's header: the leading columns, then one per allocator.
fn header(out: &mut String, leading: &[&str], configs: &[Config]) {
    let names = leading.iter().copied().chain(configs.iter().map(|c| c.name.as_str()));
    let _ = writeln!(out, "| {} |", names.collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(leading.len() + configs.len()));
}
