//! Repeated runs of every row (a workload, a program) under every configuration (an
//! allocator), and what they measured. The configurations alternate — A B C A B C … — so that
//! a slow spell of the machine falls on all of them alike.

use crate::stats::median;

/// What one run measured.
#[derive(Clone, Copy)]
pub struct Measure {
    pub seconds: f64,
    pub rss_kib: f64,
    /// Peak live bytes, for workloads that report them (NaN otherwise).
    pub peak_live: f64,
}

pub struct Results {
    /// The configurations' names, the columns; the first (glibc) is the base of every ratio.
    pub configs: Vec<String>,
    /// The rows' labels.
    pub rows: Vec<String>,
    /// `samples[row][config]`: every run that succeeded, in order.
    samples: Vec<Vec<Vec<Measure>>>,
    /// One line for each row and configuration that failed (it is not run again).
    pub failures: Vec<String>,
}

impl Results {
    /// The medians of a cell's runs (each quantity on its own), or None if it has none.
    pub fn median(&self, row: usize, config: usize) -> Option<Measure> {
        let s = &self.samples[row][config];
        let of = |f: fn(&Measure) -> f64| median(s.iter().map(f).collect());
        (!s.is_empty()).then(|| Measure {
            seconds: of(|m| m.seconds),
            rss_kib: of(|m| m.rss_kib),
            peak_live: of(|m| m.peak_live),
        })
    }

    /// The shortest and longest time of a cell's runs, and how many there were.
    pub fn time_range(&self, row: usize, config: usize) -> Option<(f64, f64, usize)> {
        let s = &self.samples[row][config];
        let min = s.iter().map(|m| m.seconds).min_by(f64::total_cmp)?;
        let max = s.iter().map(|m| m.seconds).max_by(f64::total_cmp)?;
        Some((min, max, s.len()))
    }

    /// The median time of `row` under configuration `config` relative to glibc's (the first).
    pub fn time_ratio(&self, row: usize, config: usize) -> Option<f64> {
        Some(self.median(row, config)?.seconds / self.median(row, 0)?.seconds)
    }
}

/// Measure every row under every configuration `runs` times, alternating configurations;
/// `measure(row, config)` does one run in a fresh process. A configuration that fails on a
/// row is not run on it again: its cell keeps the runs before, and `failures` says why.
pub fn run_alternating(
    rows: Vec<String>,
    configs: Vec<String>,
    runs: usize,
    mut measure: impl FnMut(usize, usize) -> Result<Measure, String>,
) -> Results {
    let mut results = Results { samples: Vec::new(), failures: Vec::new(), rows, configs };
    // A bar on a terminal; elsewhere (a log, CI) a line per row.
    let bar = indicatif::ProgressBar::new((results.rows.len() * results.configs.len() * runs) as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    for (ri, label) in results.rows.iter().enumerate() {
        if bar.is_hidden() {
            eprintln!("{label}...");
        }
        bar.set_prefix(label.clone());
        let mut samples: Vec<Vec<Measure>> = results.configs.iter().map(|_| Vec::new()).collect();
        let mut failed: Vec<Option<String>> = results.configs.iter().map(|_| None).collect();
        for _ in 0..runs {
            for ci in 0..results.configs.len() {
                if failed[ci].is_some() {
                    continue;
                }
                bar.set_message(results.configs[ci].clone());
                match measure(ri, ci) {
                    Ok(m) => samples[ci].push(m),
                    Err(e) => failed[ci] = Some(e),
                }
                bar.inc(1);
            }
        }
        for (ci, f) in failed.iter().enumerate() {
            if let Some(e) = f {
                results.failures.push(format!("{label} on {}: failed ({e})", results.configs[ci]));
            }
        }
        results.samples.push(samples);
    }
    bar.finish_and_clear();
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_and_keeps_runs_before_a_failure() {
        let mut order = Vec::new();
        let mut calls = 0;
        let r = run_alternating(vec!["w".into()], vec!["a".into(), "b".into()], 3, |_, c| {
            order.push(c);
            calls += 1;
            // b fails on its second run.
            if c == 1 && calls == 4 {
                return Err("boom".into());
            }
            Ok(Measure { seconds: calls as f64, rss_kib: 1.0, peak_live: f64::NAN })
        });
        assert_eq!(order, [0, 1, 0, 1, 0]);
        assert_eq!(r.failures, ["w on b: failed (boom)"]);
        assert_eq!(r.median(0, 0).unwrap().seconds, 3.0);
        assert_eq!(r.time_range(0, 0), Some((1.0, 5.0, 3)));
        assert_eq!(r.median(0, 1).unwrap().seconds, 2.0);
        assert_eq!(r.time_ratio(0, 1), Some(2.0 / 3.0));
    }
}
