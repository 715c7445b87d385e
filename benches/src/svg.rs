//! The runners' chart: time relative to glibc, a group of bars per row (workload, program).

use std::fmt::Write as _;

use crate::runs::Results;

/// A grouped bar chart of time relative to glibc (1.0 = glibc; lower is better).
pub fn chart(results: &Results) -> String {
    const COLORS: [&str; 8] =
        ["#888888", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];
    let configs = &results.configs;
    let bar = 14.0;
    let group = bar * configs.len() as f64 + 24.0;
    let left = 60.0;
    let top = 40.0;
    let height = 260.0;
    let width = left + group * results.rows.len() as f64 + 20.0;
    let max = (0..results.rows.len())
        .flat_map(|ri| (0..configs.len()).filter_map(move |ci| results.time_ratio(ri, ci)))
        .fold(1.0f64, f64::max)
        .min(4.0)
        .ceil();
    let y = |v: f64| top + height - (v.min(max) / max) * height;
    let mut s = String::new();
    let legend_h = 18.0 * configs.len() as f64;
    let total_h = top + height + 60.0 + legend_h;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{total_h:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="13">time relative to glibc (lower is better)</text>"#
    );
    let mut t = 0.0;
    while t <= max + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="{}"/>"##,
            width - 20.0,
            y(t),
            y(t),
            if (t - 1.0).abs() < 1e-9 { "#000" } else { "#ddd" }
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{t:.1}</text>"#,
            left - 6.0,
            y(t) + 4.0
        );
        t += 0.5;
    }
    for (ri, label) in results.rows.iter().enumerate() {
        let x0 = left + 12.0 + group * ri as f64;
        for ci in 0..configs.len() {
            if let Some(v) = results.time_ratio(ri, ci) {
                let x = x0 + bar * ci as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.2}</title></rect>"#,
                    y(v),
                    bar - 2.0,
                    top + height - y(v),
                    COLORS[ci % COLORS.len()],
                    configs[ci]
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + bar * configs.len() as f64 / 2.0,
            top + height + 16.0,
            label
        );
    }
    for (ci, c) in configs.iter().enumerate() {
        let ly = top + height + 40.0 + 18.0 * ci as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="12" fill="{}"/>"#,
            ly - 10.0,
            COLORS[ci % COLORS.len()]
        );
        let _ = writeln!(s, r#"<text x="{:.0}" y="{ly:.1}">{}</text>"#, left + 18.0, c);
    }
    s.push_str("</svg>\n");
    s
}
