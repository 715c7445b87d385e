//! Running the plan: every row under every configuration, `runs` times, the configurations
//! alternating (the library's `run_alternating`).

use std::process::{Command, Stdio};

use crate::plan::Plan;
use ptalloc_benches::child;
use ptalloc_benches::runs::{run_alternating, Measure, Results};

pub fn run(plan: &Plan, runs: usize) -> Results {
    let rows = plan.rows.iter().map(|r| r.label.clone()).collect();
    let configs = plan.configs.iter().map(|c| c.name.clone()).collect();
    run_alternating(rows, configs, runs, |ri, ci| {
        let c = &plan.configs[ci];
        let mut cmd = Command::new(&c.program);
        cmd.args(&plan.rows[ri].args).env_remove("PTALLOC_STATS");
        match &c.preload {
            Some(lib) => cmd.env("LD_PRELOAD", lib),
            None => cmd.env_remove("LD_PRELOAD"),
        };
        run_once(&mut cmd)
    })
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
