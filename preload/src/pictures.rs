//! SVG pictures of a trace and of its replays: lines over time (live bytes, the memory
//! ptalloc had from the kernel, resident memory — one line per allocator after a replay
//! with `--compare`) and the histogram of requested sizes, in the manner of heaptrack's
//! and Massif's graphs. Plain SVG, no script.

use std::fmt::Write;

use crate::history::{self, History};
use crate::replay::RunResult;
use crate::trace_stats::bytes;
use crate::tracefile::Trace;

const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const W: f64 = 760.0;
const H: f64 = 240.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 30.0;

/// A line: its name and points (nanoseconds, bytes).
pub struct Line<'a> {
    pub name: String,
    pub points: &'a [(u64, u64)],
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One panel of lines at vertical offset `y0`.
fn panel(o: &mut String, y0: f64, title: &str, lines: &[Line]) {
    let tmax = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).max().unwrap_or(1).max(1) as f64;
    let vmax = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).max().unwrap_or(1).max(1) as f64;
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        y0 + 18.0,
        escape(title)
    );
    let (x0, top) = (LEFT, y0 + TOP);
    let _ = writeln!(o, r##"<rect x="{x0}" y="{top}" width="{W}" height="{H}" fill="none" stroke="#888"/>"##);
    for i in 0..=4 {
        let y = top + H - H * i as f64 / 4.0;
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            x0 + W,
            x0 - 6.0,
            y + 4.0,
            bytes((vmax * i as f64 / 4.0) as u64)
        );
        let x = x0 + W * i as f64 / 4.0;
        let _ = writeln!(
            o,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{:.3} s</text>"#,
            top + H + 16.0,
            tmax * i as f64 / 4.0 / 1e9
        );
    }
    for (i, l) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        for (j, (t, v)) in l.points.iter().enumerate() {
            let x = x0 + W * *t as f64 / tmax;
            let y = top + H - H * *v as f64 / vmax;
            let _ = write!(d, "{}{x:.1},{y:.1}", if j == 0 { "M" } else { " L" });
        }
        let _ = writeln!(o, r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>"#);
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{color}"/><text x="{}" y="{:.1}" font-size="12">{}</text>"#,
            x0 + W + 12.0,
            ly - 3.0,
            x0 + W + 30.0,
            ly,
            escape(&l.name)
        );
    }
}

/// The histogram of requested sizes (powers of two) at vertical offset `y0`.
fn histogram(o: &mut String, y0: f64, trace: &Trace) {
    let mut classes = [0u64; 65];
    for r in trace.threads.iter().flat_map(|t| t.records.iter()) {
        if history::is_allocation(r.kind) && history::result(r) != 0 {
            let s = history::request(r);
            classes[if s <= 1 { 0 } else { 64 - (s - 1).leading_zeros() as usize }] += 1;
        }
    }
    let lo = classes.iter().position(|n| *n > 0).unwrap_or(0);
    let hi = classes.iter().rposition(|n| *n > 0).unwrap_or(0);
    let max = classes.iter().copied().max().unwrap_or(1).max(1) as f64;
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">requested sizes (allocations that succeeded)</text>"#,
        y0 + 18.0
    );
    let top = y0 + TOP;
    let n = (hi - lo + 1) as f64;
    let bw = W / n;
    for (i, c) in (lo..=hi).enumerate() {
        let h = H * classes[c] as f64 / max;
        let x = LEFT + bw * i as f64;
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1f77b4"><title>{} allocations of up to {}</title></rect>"##,
            x + 1.0,
            top + H - h,
            (bw - 2.0).max(1.0),
            classes[c],
            bytes(1u64 << c.min(63))
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            x + bw / 2.0,
            top + H + 14.0,
            escape(&bytes(1u64 << c.min(63)).replace(".0 ", " "))
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            x + bw / 2.0,
            top + H - h - 3.0,
            classes[c]
        );
    }
}

fn document(panels: usize, title: &str, body: &str) -> String {
    let height = TOP + panels as f64 * (H + TOP + 40.0) + 20.0;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="15">{}</text>
{body}</svg>
"#,
        LEFT + W + 180.0,
        escape(title)
    )
}

/// The recorded program's lines: live bytes, memory from the kernel, resident memory.
fn program_panel(body: &mut String, h: &History) {
    let lines = [
        Line { name: "live bytes (requested)".into(), points: &h.live_series },
        Line { name: "heap (from the kernel)".into(), points: &h.heap_series },
        Line { name: "resident (sampled)".into(), points: &h.rss_series },
    ];
    panel(body, TOP, "the recorded program, over its run", &lines);
}

/// The trace over time — live bytes, memory from the kernel, resident memory — and its sizes.
pub fn trace_chart(trace: &Trace, h: &History) -> String {
    let mut body = String::new();
    program_panel(&mut body, h);
    histogram(&mut body, TOP + H + TOP + 40.0, trace);
    document(2, &format!("ptalloc trace of {}", trace.cmdline.join(" ")), &body)
}

/// After a replay: the trace's lines, then each allocator's resident memory over its first
/// run, then the sizes.
pub fn replay_chart(trace: &Trace, h: &History, names: &[&str], results: &[Vec<RunResult>]) -> String {
    let mut body = String::new();
    program_panel(&mut body, h);
    let rss: Vec<Line> = names
        .iter()
        .zip(results)
        .filter_map(|(n, r)| r.first().map(|r| Line { name: n.to_string(), points: &r.rss_series }))
        .collect();
    panel(&mut body, TOP + H + TOP + 40.0, "resident memory of the replay, by allocator (first run)", &rss);
    histogram(&mut body, TOP + 2.0 * (H + TOP + 40.0), trace);
    document(3, &format!("ptalloc replay of {}", trace.cmdline.join(" ")), &body)
}
