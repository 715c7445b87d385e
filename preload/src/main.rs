//! `ptalloc`: the command-line face of ptalloc.
//!
//! With no arguments it runs the demonstration (`ptalloc demo`).

mod demo;
mod pictures;
mod record;
mod replay;
mod run;
// Shared by the library (which writes traces) and the command (which reads them): each
// uses its half.
mod history;
#[allow(dead_code)]
mod trace;
mod trace_stats;
mod tracefile;
mod workload;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use demo::DemoConfig;

const ENVIRONMENT: &str = "\
Environment: the glibc settings work unchanged under ptalloc: GLIBC_TUNABLES=glibc.malloc.*
(mmap_threshold, trim_threshold, top_pad, mmap_max, arena_max, arena_test, tcache_count,
tcache_max, mxfast, perturb) and MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_, MALLOC_ARENA_MAX, MALLOC_ARENA_TEST, MALLOC_PERTURB_.
PTALLOC_STATS=1 (or a path) prints the exit report; PTALLOC_RECORD=FILE records a trace.";

/// ptalloc - a glibc-style (ptmalloc) memory allocator in Rust.
///
/// With no command, runs the demonstration (as `ptalloc demo`).
#[derive(Parser)]
#[command(name = "ptalloc", version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROGRAM with libptalloc.so preloaded (LD_PRELOAD), so all its malloc/free calls go
    /// to ptalloc; its exit status is passed through.
    Run(RunArgs),
    /// Run PROGRAM under ptalloc and write a trace of every malloc-family call and of every
    /// memory call ptalloc makes to the kernel (child processes: FILE.PID).
    Record(RecordArgs),
    /// Replay a trace's calls, with their sizes, order and threads, on an allocator and a
    /// kernel, and report time, resident memory and fragmentation; --compare runs every
    /// installed allocator in turn.
    Replay(ReplayArgs),
    /// Run a replay workload (started by `ptalloc replay`).
    #[command(hide = true)]
    ReplayWorker(ReplayWorkerArgs),
    /// Print what a trace holds: calls by kind, sizes, lifetimes, live bytes, threads,
    /// cross-thread frees, the largest blocks, the kernel calls.
    TraceStats(TraceStatsArgs),
    /// Run one multi-threaded workload on ptalloc and on the system allocator (glibc), each in
    /// a fresh process, and print time, peak RSS and what ptalloc asked of the kernel.
    Demo(DemoArgs),
}

/// What `run` and `record` start: the library, the exit report, the program.
#[derive(Args)]
struct Launch {
    /// Print a summary on stderr when each process exits (bytes in use now and at peak,
    /// brk/mmap/munmap/mremap calls and bytes, arenas, threads; same as PTALLOC_STATS=1).
    #[arg(long)]
    stats: bool,
    /// The library to preload (default: libptalloc.so next to this program).
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

impl Launch {
    fn program(&self) -> (OsString, Vec<OsString>) {
        let (program, args) = self.command.split_first().expect("clap requires the program");
        (program.clone(), args.to_vec())
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    launch: Launch,
}

#[derive(Args)]
struct RecordArgs {
    /// The trace to write; a child process writes FILE.PID.
    #[arg(short, long, value_name = "FILE", default_value = "ptalloc.trace")]
    output: PathBuf,
    #[command(flatten)]
    launch: Launch,
}

#[derive(Args)]
struct ReplayArgs {
    /// A trace written by `ptalloc record`.
    file: PathBuf,
    /// The allocator to replay on: ptalloc, glibc, jemalloc, mimalloc or tcmalloc (Debian's
    /// packages).
    #[arg(long, default_value = "ptalloc", value_name = "NAME")]
    allocator: String,
    /// linux, or sim: ptalloc on kernel-sim's simulated kernel (page faults, RSS and the
    /// final /proc/PID/maps as the simulation saw them).
    #[arg(long, default_value = "linux", value_parser = ["linux", "sim"], value_name = "KERNEL")]
    kernel: String,
    /// as-recorded (one replay thread per recorded thread) or 1 (all calls on one thread, in
    /// the trace's order).
    #[arg(long, default_value = "as-recorded", value_parser = ["as-recorded", "1"], value_name = "MODE")]
    threads: String,
    /// Replay on every installed allocator, alternating, and print the table.
    #[arg(long)]
    compare: bool,
    /// Runs of each allocator (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100), value_name = "N")]
    runs: u64,
    /// libptalloc.so to replay on (default: the one next to this program).
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Also draw the trace and each allocator's resident memory over the replay (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayWorkerArgs {
    workload: PathBuf,
    #[arg(long, value_parser = ["linux", "sim"])]
    kernel: String,
}

#[derive(Args)]
struct TraceStatsArgs {
    /// A trace written by `ptalloc record`.
    file: PathBuf,
    /// How many of the largest blocks to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    largest: usize,
    /// Also list every record, as the C call it was, each thread's in its order.
    #[arg(long)]
    calls: bool,
    /// Also draw live bytes, memory from the kernel and resident memory over time, and the
    /// sizes (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    threads: u64,
    /// Operations per thread.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    ops: u64,
    /// Workload seed.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
    /// Run one side only, in this process (the demonstration starts itself so).
    #[arg(long, hide = true, value_parser = ["ptalloc", "system"])]
    worker: Option<String>,
}

fn dispatch(cli: Cli) -> Result<i32, String> {
    match cli.command {
        None => Ok(demo::demo(DemoConfig::default())),
        Some(Command::Run(a)) => {
            let (program, args) = a.launch.program();
            run::run(run::RunConfig { stats: a.launch.stats, lib: a.launch.lib, program, args })
        }
        Some(Command::Record(a)) => {
            let (program, args) = a.launch.program();
            record::record(record::RecordConfig {
                output: a.output,
                stats: a.launch.stats,
                lib: a.launch.lib,
                program,
                args,
            })
        }
        Some(Command::TraceStats(a)) => {
            trace_stats::trace_stats(&a.file, a.largest, a.calls, a.svg.as_deref())
        }
        Some(Command::Replay(a)) => replay::replay(replay::ReplayConfig {
            file: a.file,
            allocator: a.allocator,
            kernel: if a.kernel == "sim" { replay::Kernel::Sim } else { replay::Kernel::Linux },
            one_thread: a.threads == "1",
            compare: a.compare,
            runs: a.runs as usize,
            lib: a.lib,
            svg: a.svg,
        }),
        Some(Command::ReplayWorker(a)) => replay::worker(
            &a.workload,
            if a.kernel == "sim" { replay::Kernel::Sim } else { replay::Kernel::Linux },
        )
        .map_err(|e| format!("replay-worker: {e}")),
        Some(Command::Demo(a)) => {
            let cfg = DemoConfig { threads: a.threads as usize, ops: a.ops, seed: a.seed };
            Ok(match a.worker.as_deref() {
                Some(w) => demo::worker(w, cfg),
                None => demo::demo(cfg),
            })
        }
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            // One line, as shell commands report a bad argument.
            let text = e.kind().as_str().map(str::to_string).unwrap_or_default();
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or(&text).trim_start_matches("error: ").to_string();
            eprintln!("ptalloc: {first} (see ptalloc --help)");
            std::process::exit(2);
        }
    };
    match dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            eprintln!("ptalloc: {msg}");
            std::process::exit(2);
        }
    }
}
