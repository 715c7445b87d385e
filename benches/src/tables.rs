//! The runners' report: a Markdown table of times and one of peak RSS, each cell with its
//! ratio to glibc (the first column), then the notes.

use std::fmt::Write as _;

use crate::runs::Results;
use crate::stats::geometric_mean;

/// What differs between the runners' reports.
pub struct Layout<'a> {
    /// The heading of the rows' column ("workload", "program").
    pub rows: &'a str,
    /// The line above each table: what its numbers are.
    pub time_caption: String,
    pub rss_caption: String,
    /// A "live" column in the RSS table: the peak live data that workloads report.
    pub live: bool,
    /// Each time cell also gives the range of its runs, `[min–max]`.
    pub spread: bool,
}

pub fn render(layout: &Layout, results: &Results, notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", layout.time_caption);
    times(&mut out, layout, results);
    let _ = writeln!(out, "\n\n{}\n", layout.rss_caption);
    peak_rss(&mut out, layout, results);
    for n in notes.iter().chain(&results.failures) {
        let _ = writeln!(out, "\nnote: {n}");
    }
    out
}

/// Time (ratio to glibc), one row per workload, and the geometric mean of each column's ratios.
fn times(out: &mut String, layout: &Layout, results: &Results) {
    header(out, &[layout.rows], &results.configs);
    let mut ratios: Vec<Vec<f64>> = results.configs.iter().map(|_| Vec::new()).collect();
    for (ri, label) in results.rows.iter().enumerate() {
        let _ = write!(out, "| {label} |");
        for (ci, column) in ratios.iter_mut().enumerate() {
            let Some(m) = results.median(ri, ci) else {
                out.push_str(" — |");
                continue;
            };
            let _ = write!(out, " {:.3}", m.seconds);
            if let Some(ratio) = results.time_ratio(ri, ci) {
                column.push(ratio);
                let _ = write!(out, " ({ratio:.2})");
            }
            match results.time_range(ri, ci) {
                Some((min, max, n)) if layout.spread && n > 1 => {
                    let _ = write!(out, " [{min:.3}–{max:.3}]");
                }
                _ => {}
            }
            out.push_str(" |");
        }
        out.push('\n');
    }
    let _ = write!(out, "| geometric mean of ratios |");
    for r in &ratios {
        let _ = write!(out, " {:.3} |", geometric_mean(r));
    }
}

/// Peak RSS (ratio to glibc), and the workload's peak live data where it reports it.
fn peak_rss(out: &mut String, layout: &Layout, results: &Results) {
    let leading: &[&str] = if layout.live { &[layout.rows, "live"] } else { &[layout.rows] };
    header(out, leading, &results.configs);
    for (ri, label) in results.rows.iter().enumerate() {
        let cells: Vec<_> = (0..results.configs.len()).map(|ci| results.median(ri, ci)).collect();
        let base = cells[0].map(|m| m.rss_kib);
        let _ = write!(out, "| {label} |");
        if layout.live {
            let live = cells.iter().flatten().map(|m| m.peak_live).find(|v| v.is_finite());
            let live = live.map_or("—".into(), |l| format!("{:.1}", l / (1 << 20) as f64));
            let _ = write!(out, " {live} |");
        }
        for cell in &cells {
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
fn header(out: &mut String, leading: &[&str], configs: &[String]) {
    let names = leading.iter().copied().chain(configs.iter().map(String::as_str));
    let _ = writeln!(out, "| {} |", names.collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(leading.len() + configs.len()));
}
