//! The comparison runner: every workload on every allocator, repeated, side by side.
//!
//! ```text
//! compare [--runs N] [--threads N] [--scale X] [--only WORKLOAD,...] [--svg FILE]
//!         [-- COMMAND ARGS...]
//! ```
//!
//! Two ways of running an allocator:
//! - as the Rust global allocator: `workload-ptalloc`, `workload-system` (glibc), and when
//!   built with `--features compare`, `workload-mimalloc` and `workload-jemalloc`;
//! - under `LD_PRELOAD`: `workload-system` (whose malloc is whatever library is preloaded) with
//!   libptalloc.so, and Debian's libjemalloc2, libmimalloc2.0 and libtcmalloc-minimal4 when
//!   installed. After `--`, any command is run the same way instead of the workloads.
//!
//! Each run happens in a fresh process; runs of the different allocators alternate, and the
//! table gives the median time, the median peak RSS (from `wait4`) and the ratio to glibc.
//! An allocator that is not available is skipped with a note.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ptalloc_benches::median;
use ptalloc_benches::workloads::WORKLOADS;

struct Config {
    name: String,
    /// The program to run, and LD_PRELOAD for it (None: unset).
    program: PathBuf,
    preload: Option<PathBuf>,
}

struct Measure {
    seconds: f64,
    rss_kib: f64,
    peak_live: f64,
}

fn die(msg: &str) -> ! {
    eprintln!("compare: {msg}");
    std::process::exit(2);
}

/// Run once; time is the workload's own report if it gives one (`time_s=`), else wall time.
fn run_once(cmd: &mut Command) -> Result<Measure, String> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let pid = child.id() as i32;
    let out = child.wait_with_output_rusage(pid)?;
    let wall = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.0);
    let field =
        |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<f64>().ok());
    Ok(Measure {
        seconds: field("time_s=").unwrap_or(wall),
        rss_kib: out.1 as f64,
        peak_live: field("peak_live=").unwrap_or(f64::NAN),
    })
}

trait WaitRusage {
    /// Read the child's output, then reap it with wait4: (stdout, peak RSS in KiB).
    fn wait_with_output_rusage(self, pid: i32) -> Result<(Vec<u8>, i64), String>;
}

impl WaitRusage for std::process::Child {
    fn wait_with_output_rusage(mut self, pid: i32) -> Result<(Vec<u8>, i64), String> {
        use std::io::Read;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut s) = self.stdout.take() {
            s.read_to_end(&mut stdout).map_err(|e| e.to_string())?;
        }
        if let Some(mut s) = self.stderr.take() {
            s.read_to_end(&mut stderr).map_err(|e| e.to_string())?;
        }
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: reaping the child we spawned (std has not waited for it).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        std::mem::forget(self);
        if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("exit status {status:#x}: {}", String::from_utf8_lossy(&stderr).trim()));
        }
        Ok((stdout, usage.ru_maxrss))
    }
}

fn find_lib(names: &[&str]) -> Option<PathBuf> {
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"] {
        for n in names {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// A Markdown table's header: the leading columns, then one per allocator.
fn table_header(out: &mut String, leading: &[&str], configs: &[Config]) {
    let names = leading.iter().copied().chain(configs.iter().map(|c| c.name.as_str()));
    let _ = writeln!(out, "| {} |", names.collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(leading.len() + configs.len()));
}

fn main() {
    let mut runs = 5usize;
    let mut threads = 2usize;
    let mut scale = 1.0f64;
    let mut only: Option<Vec<String>> = None;
    let mut svg: Option<PathBuf> = None;
    let mut command: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| die("--runs takes a positive number"))
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| die("--threads takes a positive number"))
            }
            "--scale" => {
                scale = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s: &f64| s > 0.0)
                    .unwrap_or_else(|| die("--scale takes a positive number"))
            }
            "--only" => {
                only = Some(
                    args.next()
                        .unwrap_or_else(|| die("--only takes workload names"))
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "--svg" => svg = Some(PathBuf::from(args.next().unwrap_or_else(|| die("--svg takes a file")))),
            "--" => {
                command = args.by_ref().collect();
                if command.is_empty() {
                    die("nothing after --");
                }
            }
            "--help" | "-h" => {
                println!("usage: compare [--runs N] [--threads N] [--scale X] [--only W,...] [--svg FILE] [-- COMMAND ARGS...]");
                return;
            }
            other => die(&format!("unknown option {other:?} (see --help)")),
        }
    }
    if let Some(names) = &only {
        if let Some(bad) = names.iter().find(|n| !WORKLOADS.iter().any(|(w, _)| w == n)) {
            let known: Vec<&str> = WORKLOADS.iter().map(|(w, _)| *w).collect();
            die(&format!("unknown workload {bad:?} (one of {})", known.join(", ")));
        }
    }
    let bin_dir =
        std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)).unwrap_or_default();
    let mut notes: Vec<String> = Vec::new();

    // The allocators: as global allocators (workloads only), and under LD_PRELOAD.
    let mut configs: Vec<Config> = Vec::new();
    let system = bin_dir.join("workload-system");
    if command.is_empty() {
        for (name, bin) in [
            ("glibc", "workload-system"),
            ("ptalloc", "workload-ptalloc"),
            ("mimalloc (crate)", "workload-mimalloc"),
            ("jemalloc (crate)", "workload-jemalloc"),
        ] {
            let p = bin_dir.join(bin);
            if p.exists() {
                configs.push(Config { name: name.into(), program: p, preload: None });
            } else {
                notes.push(format!(
                    "{name}: {bin} not built (cargo build --release -p ptalloc-benches --features compare)"
                ));
            }
        }
    } else {
        configs.push(Config { name: "glibc".into(), program: PathBuf::from(&command[0]), preload: None });
    }
    let program = if command.is_empty() { system.clone() } else { PathBuf::from(&command[0]) };
    let ours = bin_dir.join("libptalloc.so");
    let preloads: [(&str, Option<PathBuf>); 4] = [
        ("ptalloc (LD_PRELOAD)", ours.exists().then_some(ours.clone())),
        ("jemalloc (libjemalloc2)", find_lib(&["libjemalloc.so.2"])),
        ("mimalloc (libmimalloc2.0)", find_lib(&["libmimalloc.so.2.0", "libmimalloc.so.2"])),
        ("tcmalloc (libtcmalloc-minimal4)", find_lib(&["libtcmalloc_minimal.so.4"])),
    ];
    for (name, lib) in preloads {
        match lib {
            Some(lib) => {
                configs.push(Config { name: name.into(), program: program.clone(), preload: Some(lib) })
            }
            None => notes.push(format!("{name}: library not installed, skipped")),
        }
    }

    let workloads: Vec<(String, Vec<String>)> = if command.is_empty() {
        WORKLOADS
            .iter()
            .filter(|(w, _)| only.as_ref().is_none_or(|o| o.iter().any(|x| x == w)))
            .map(|(w, _)| {
                (
                    w.to_string(),
                    vec![
                        w.to_string(),
                        "--threads".into(),
                        threads.to_string(),
                        "--scale".into(),
                        scale.to_string(),
                    ],
                )
            })
            .collect()
    } else {
        vec![(command.join(" "), command[1..].to_vec())]
    };

    let mut results: Vec<Vec<Medians>> = Vec::new();
    for (w, wargs) in &workloads {
        eprintln!("{w}...");
        let mut samples: Vec<Vec<Measure>> = configs.iter().map(|_| Vec::new()).collect();
        let mut failed: Vec<Option<String>> = configs.iter().map(|_| None).collect();
        for _ in 0..runs {
            for (i, c) in configs.iter().enumerate() {
                if failed[i].is_some() {
                    continue;
                }
                let mut cmd = Command::new(&c.program);
                cmd.args(wargs).env_remove("PTALLOC_STATS");
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
                notes.push(format!("{w} on {}: failed ({e})", configs[i].name));
            }
        }
        results.push(
            samples
                .into_iter()
                .map(|s| {
                    (!s.is_empty()).then(|| {
                        (
                            median(s.iter().map(|m| m.seconds).collect()),
                            median(s.iter().map(|m| m.rss_kib).collect()),
                            median(s.iter().map(|m| m.peak_live).collect()),
                        )
                    })
                })
                .collect(),
        );
    }

    // The table: time (ratio to glibc) and peak RSS, one row per workload.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Time in seconds (ratio to glibc), median of {runs} runs; {threads} threads, scale {scale}.\n"
    );
    table_header(&mut out, &["workload"], &configs);
    let mut logs: Vec<Vec<f64>> = configs.iter().map(|_| Vec::new()).collect();
    for (wi, (w, _)) in workloads.iter().enumerate() {
        let base = results[wi][0].map(|r| r.0);
        let _ = write!(out, "| {w} |");
        for (ci, r) in results[wi].iter().enumerate() {
            match (r, base) {
                (Some(r), Some(b)) => {
                    logs[ci].push((r.0 / b).ln());
                    let _ = write!(out, " {:.3} ({:.2}) |", r.0, r.0 / b);
                }
                (Some(r), None) => {
                    let _ = write!(out, " {:.3} |", r.0);
                }
                (None, _) => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    let _ = write!(out, "| geometric mean of ratios |");
    for l in &logs {
        let _ = write!(out, " {:.3} |", (l.iter().sum::<f64>() / l.len().max(1) as f64).exp());
    }
    let _ = writeln!(
        out,
        "\n\nPeak RSS in MiB (ratio to glibc); for workloads that report it, peak live data in MiB.\n"
    );
    table_header(&mut out, &["workload", "live"], &configs);
    for (wi, (w, _)) in workloads.iter().enumerate() {
        let base = results[wi][0].map(|r| r.1);
        let live = results[wi].iter().flatten().map(|r| r.2).find(|v| v.is_finite());
        let _ =
            write!(out, "| {w} | {} |", live.map_or("—".into(), |l| format!("{:.1}", l / (1 << 20) as f64)));
        for r in &results[wi] {
            match (r, base) {
                (Some(r), Some(b)) => {
                    let _ = write!(out, " {:.1} ({:.2}) |", r.1 / 1024.0, r.1 / b);
                }
                _ => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    for n in &notes {
        let _ = writeln!(out, "\nnote: {n}");
    }
    print!("{out}");

    if let Some(path) = svg {
        let chart = svg_chart(&workloads.iter().map(|w| w.0.clone()).collect::<Vec<_>>(), &configs, &results);
        if let Err(e) = std::fs::write(&path, chart) {
            die(&format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("chart written to {}", path.display());
    }
}

/// One workload under one configuration: (median time, median RSS, median live bytes), or
/// `None` if it failed.
type Medians = Option<(f64, f64, f64)>;

/// A grouped bar chart of time relative to glibc (1.0 = glibc; lower is better).
fn svg_chart(workloads: &[String], configs: &[Config], results: &[Vec<Medians>]) -> String {
    const COLORS: [&str; 8] =
        ["#888888", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];
    let bar = 14.0;
    let group = bar * configs.len() as f64 + 24.0;
    let left = 60.0;
    let top = 40.0;
    let height = 260.0;
    let width = left + group * workloads.len() as f64 + 20.0;
    let max = results
        .iter()
        .flat_map(|row| {
            let base = row[0].map(|r| r.0);
            row.iter().filter_map(move |r| Some(r.as_ref()?.0 / base?))
        })
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
    for (wi, w) in workloads.iter().enumerate() {
        let x0 = left + 12.0 + group * wi as f64;
        let base = results[wi][0].map(|r| r.0);
        for (ci, r) in results[wi].iter().enumerate() {
            if let (Some(r), Some(b)) = (r, base) {
                let v = r.0 / b;
                let x = x0 + bar * ci as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.2}</title></rect>"#,
                    y(v),
                    bar - 2.0,
                    top + height - y(v),
                    COLORS[ci % COLORS.len()],
                    configs[ci].name
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{w}</text>"#,
            x0 + bar * configs.len() as f64 / 2.0,
            top + height + 16.0
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
        let _ = writeln!(s, r#"<text x="{:.0}" y="{ly:.1}">{}</text>"#, left + 18.0, c.name);
    }
    s.push_str("</svg>\n");
    s
}
