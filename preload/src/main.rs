//! `ptalloc`: the command-line face of ptalloc.
//!
//! With no arguments it runs the demonstration (`ptalloc demo`).

mod demo;
mod run;

use demo::DemoConfig;

const HELP: &str = "\
ptalloc - a glibc-style (ptmalloc) memory allocator in Rust

usage:
  ptalloc run [--stats] [--lib PATH] [--] PROGRAM [ARGS...]
                          run PROGRAM with libptalloc.so preloaded (LD_PRELOAD), so all its
                          malloc/free calls go to ptalloc; its exit status is passed through
      --stats             print a summary on stderr when each process exits
                          (bytes in use now and at peak, brk/mmap/munmap/mremap calls and
                          bytes, arenas, threads; same as PTALLOC_STATS=1, and
                          PTALLOC_STATS=/path/file appends the summaries to a file)
      --lib PATH          the library to preload (default: libptalloc.so next to this program)
  ptalloc                 run the demonstration with its defaults (same as `ptalloc demo`)
  ptalloc demo [OPTIONS]  run one multi-threaded workload on ptalloc and on the system
                          allocator (glibc), each in a fresh process, and print time,
                          peak RSS and what ptalloc asked of the kernel
      --threads N         worker threads (default 4)
      --ops N             operations per thread (default 1000000)
      --seed N            workload seed (default 1)
  ptalloc help | --help   this text

environment: the glibc settings work unchanged under ptalloc: GLIBC_TUNABLES=glibc.malloc.*
(mmap_threshold, trim_threshold, top_pad, mmap_max, arena_max, arena_test, tcache_count,
tcache_max, mxfast, perturb) and MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_, MALLOC_ARENA_MAX, MALLOC_ARENA_TEST, MALLOC_PERTURB_.
";

fn parse_number(flag: &str, value: Option<&String>) -> Result<u64, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse::<u64>().map_err(|_| format!("{flag} takes a whole number, not {v:?}"))
}

fn run(args: &[String]) -> Result<i32, String> {
    let Some(cmd) = args.first() else {
        return Ok(demo::demo(DemoConfig::default()));
    };
    match cmd.as_str() {
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        "run" => run::run(run::parse(&args[1..])?),
        "demo" => {
            let mut cfg = DemoConfig::default();
            let mut worker = None;
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--threads" => cfg.threads = parse_number(a, it.next())?.clamp(1, 1024) as usize,
                    "--ops" => cfg.ops = parse_number(a, it.next())?,
                    "--seed" => cfg.seed = parse_number(a, it.next())?,
                    "--worker" => worker = Some(it.next().ok_or("--worker needs ptalloc or system")?.clone()),
                    other => return Err(format!("demo: unknown option {other:?} (see ptalloc --help)")),
                }
            }
            match worker.as_deref() {
                None => Ok(demo::demo(cfg)),
                Some(w @ ("ptalloc" | "system")) => Ok(demo::worker(w, cfg)),
                Some(w) => Err(format!("demo: --worker takes ptalloc or system, not {w:?}")),
            }
        }
        other => Err(format!("unknown command {other:?} (see ptalloc --help)")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            eprintln!("ptalloc: {msg}");
            std::process::exit(2);
        }
    }
}
