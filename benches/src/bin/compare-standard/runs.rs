//! Running the plan: each program under each allocator, `--runs` times, the allocators
//! alternating (the library's `run_alternating`), each run a fresh process started as
//! bench.sh starts it.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::options::Options;
use crate::plan::{Config, Plan, Row};
use crate::programs::Time;
use ptalloc_benches::child;
use ptalloc_benches::runs::{run_alternating, Measure, Results};

pub fn run(plan: &Plan, o: &Options) -> Results {
    let rows = plan.rows.iter().map(|r| r.program.name.to_string()).collect();
    let configs = plan.configs.iter().map(|c| c.name.clone()).collect();
    let total = plan.rows.len() * plan.configs.len() * o.runs;
    let mut done = 0;
    run_alternating(rows, configs, o.runs, |ri, ci| {
        let (row, config) = (&plan.rows[ri], &plan.configs[ci]);
        let m = run_once(row, config, o);
        done += 1;
        // A line per run: the whole measurement takes most of an hour.
        match &m {
            Ok(m) => eprintln!(
                "[{done}/{total}] {} on {}: {:.3} s, {:.1} MiB",
                row.program.name,
                config.name,
                m.seconds,
                m.rss_kib / 1024.0
            ),
            Err(e) => eprintln!("[{done}/{total}] {} on {}: failed ({e})", row.program.name, config.name),
        }
        m
    })
}

fn run_once(row: &Row, config: &Config, o: &Options) -> Result<Measure, String> {
    let p = row.program;
    let mut cmd = Command::new(&row.exe);
    // In the build directory, as bench.sh runs in its build's: rptest leaves a file there.
    cmd.args(p.args(&o.bench, o.threads)).current_dir(&o.build_dir).env_remove("PTALLOC_STATS");
    match &config.preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let stdin = match p.stdin {
        Some(f) => {
            let path = o.bench.join(f);
            Stdio::from(File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => Stdio::null(),
    };
    // Only the programs whose time is in their output need it kept.
    let stdout = if p.is_relative() { Stdio::piped() } else { Stdio::null() };
    // Its own process group, so that nothing it leaves behind lingers with ours.
    cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped()).process_group(0);
    let out = child::run(&mut cmd)?;
    let seconds = match p.time {
        Time::Wall => out.seconds,
        Time::Relative(read) => read(&String::from_utf8_lossy(&out.stdout))
            .ok_or("its output has no line to read the relative time from")?,
    };
    Ok(Measure { seconds, rss_kib: out.max_rss_kib as f64, peak_live: f64::NAN })
}
