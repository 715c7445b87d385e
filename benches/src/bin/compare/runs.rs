//! Running the plan: every row under every configuration, `runs` times, the configurations
//! alternating so that a slow spell of the machine falls on all of them alike.

use std::process::{Command, Stdio};

use crate::plan::Plan;
use ptalloc_benches::child;
use ptalloc_benches::stats::median;

/// What one run measured; in [`Results`], the medians over a configuration's runs.
#[derive(Clone, Copy)]
pub struct Measure {
    pub seconds: f64,
    pub rss_kib: f64,
    /// Peak live bytes, for workloads that report them (NaN otherwise).
    pub peak_live: f64,
}

pub struct Results {
    /// `cells[row][config]`: the medians, or None if the configuration never ran it.
    pub cells: Vec<Vec<Option<Measure>>>,
    /// One line for each row and configuration that failed (it is not run again).
    pub failures: Vec<String>,
}

impl Results {
    /// The time of `row` under configuration `config` relative to glibc's (the first).
    pub fn time_ratio(&self, row: usize, config: usize) -> Option<f64> {
        Some(self.cells[row][config]?.seconds / self.cells[row][0]?.seconds)
    }
}

pub fn run_alternating(plan: &Plan, runs: usize) -> Results {
    let configs = &plan.configs;
    let mut results = Results { cells: Vec::new(), failures: Vec::new() };
    for row in &plan.rows {
        eprintln!("{}...", row.label);
        let mut samples: Vec<Vec<Measure>> = configs.iter().map(|_| Vec::new()).collect();
        let mut failed: Vec<Option<String>> = configs.iter().map(|_| None).collect();
        for _ in 0..runs {
            for (i, c) in configs.iter().enumerate() {
                if failed[i].is_some() {
                    continue;
                }
                let mut cmd = Command::new(&c.program);
                cmd.args(&row.args).env_remove("PTALLOC_STATS");
                match &c.preload {
                    Some(lib) => cmd.env("LD_PRELOAD", lib),
                    None => cmd.env_remove("LD_PRELOAD"),
                };
                match run_once(&mut cmd) {
                    Ok(m) => samples[i].push(m),
                    Err(e) => failed[i] = Some(e),
                }
            }
        }
        for (i, f) in failed.iter().enumerate() {
            if let Some(e) = f {
                results.failures.push(format!("{} on {}: failed ({e})", row.label, configs[i].name));
            }
        }
        results.cells.push(samples.iter().map(|s| medians(s)).collect());
    }
    results
}

/// Run once; time is the workload's own report if it gives one (`time_s=`), else wall time.
fn run_once(cmd: &mut Command) -> Result<Measure, String> {
    let out = child::run(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field =
        |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<f64>().ok());
    Ok(Measure {
        seconds: field("time_s=").unwrap_or(out.seconds),
        rss_kib: out.max_rss_kib as f64,
        peak_live: field("peak_live=").unwrap_or(f64::NAN),
    })
}

fn medians(samples: &[Measure]) -> Option<Measure> {
    let of = |f: fn(&Measure) -> f64| median(samples.iter().map(f).collect());
    (!samples.is_empty()).then(|| Measure {
        seconds: of(|m| m.seconds),
        rss_kib: of(|m| m.rss_kib),
        peak_live: of(|m| m.peak_live),
    })
}
