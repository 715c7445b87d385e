//! `ptalloc record`, `trace-stats` and `replay`: a C program's known calls are in the trace
//! one by one, with the kernel calls they caused; Python and sqlite3 traces agree with
//! ptalloc's own statistics of the same run, and replay on ptalloc, glibc (sqlite3's) and
//! the simulated kernel with the trace's calls, bytes and peak live bytes; eight threads freeing each
//! other's blocks are recorded with every free after its malloc and replayed with the same
//! cross-thread pairs; forked and executed children write their own files; a killed
//! program leaves a readable, replayable trace; what is not a trace, or not an allocator,
//! gets one line and status 2.

mod common;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ptalloc_testkit::harness::{self, Test};
use ptalloc_testkit::program_workloads;

fn main() {
    let cc = common::c_compiler();
    harness::run(vec![
        Test::new("records_a_known_sequence_call_by_call", records_a_known_sequence_call_by_call).needs(&cc),
        Test::new("eight_threads_freeing_each_others_blocks", eight_threads_freeing_each_others_blocks)
            .needs(&cc),
        Test::new("forked_and_executed_children_write_their_own_files", children_write_their_own_files)
            .needs(&cc),
        Test::new("a_killed_program_leaves_a_readable_trace", a_killed_program_leaves_a_readable_trace)
            .needs(&cc),
        Test::new("bad_traces_get_one_line_and_status_2", bad_traces_get_one_line_and_status_2).needs(&cc),
        Test::new("python_trace_agrees_with_ptalloc_statistics", || agrees_with_statistics("python"))
            .needs("bash")
            .needs("awk")
            .needs("python3"),
        Test::new("sqlite3_trace_agrees_with_ptalloc_statistics", || agrees_with_statistics("sqlite"))
            .needs("bash")
            .needs("awk")
            .needs("sqlite3"),
        Test::new("replays_sqlite3_on_ptalloc_glibc_and_the_simulated_kernel", || {
            replays_real_program("sqlite", "sqlite3", &["ptalloc", "glibc"])
        })
        .needs("bash")
        .needs("awk")
        .needs("sqlite3"),
        // 22 million calls: reading the trace takes most of a replay's 20 seconds, so glibc's
        // replay is left to sqlite3's.
        Test::new("replays_python_on_ptalloc_and_the_simulated_kernel", || {
            replays_real_program("python", "python", &["ptalloc"])
        })
        .needs("bash")
        .needs("awk")
        .needs("python3"),
        Test::new(
            "replay_keeps_cross_thread_frees_and_compares",
            replay_keeps_cross_thread_frees_and_compares,
        )
        .needs(&cc),
        Test::new("replay_of_a_killed_program_and_bad_input", replay_of_a_killed_program_and_bad_input)
            .needs(&cc),
    ]);
}

fn ptalloc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptalloc"))
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ptalloc record -o FILE -- program args`, with the test's library.
fn record(file: &Path, program: &Path, args: &[&str]) -> Output {
    common::output_within(
        ptalloc()
            .arg("record")
            .arg("-o")
            .arg(file)
            .arg("--lib")
            .arg(common::library())
            .arg("--")
            .arg(program)
            .args(args),
    )
}

/// `trace-stats --calls`: the report, and each thread's calls as lines.
fn stats(file: &Path) -> (String, HashMap<u32, Vec<String>>) {
    let out = ptalloc().arg("trace-stats").arg("--calls").arg(file).output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let (report, calls) = text.split_once("\ncalls, each thread's in its order").expect("no calls section");
    let mut threads: HashMap<u32, Vec<String>> = HashMap::new();
    for line in calls.lines().skip(1) {
        let (thread, rest) = line.strip_prefix('[').unwrap().split_once("] ").unwrap();
        let (_time, call) = rest.split_once(' ').unwrap();
        threads.entry(thread.parse().unwrap()).or_default().push(call.to_string());
    }
    (report.to_string(), threads)
}

fn is_kernel_call(c: &str) -> bool {
    ["sbrk(", "mmap(", "munmap(", "mremap(", "mprotect(", "madvise(", "rss "].iter().any(|k| c.starts_with(k))
}

/// The value after `= ` in a call line, as an address.
fn result_of(c: &str) -> u64 {
    let v = c.rsplit("= ").next().unwrap().split_whitespace().next().unwrap();
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

fn records_a_known_sequence_call_by_call() {
    let prog = common::compile_c("trace_calls.c", &["-Wno-alloc-size-larger-than"]);
    let dir = tmp("known");
    let file = dir.join("t.trace");
    let out = record(&file, &prog, &[]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let expected: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(expected.len(), 26, "{expected:?}");
    let (report, threads) = stats(&file);
    assert_eq!(threads.len(), 1, "{report}");
    let all = &threads[&1];
    let program: Vec<&String> = all.iter().filter(|c| !is_kernel_call(c)).collect();
    let first = program.iter().position(|c| **c == expected[0]).expect("no first fence");
    let got: Vec<&str> = program[first..first + expected.len()].iter().map(|s| s.as_str()).collect();
    assert_eq!(got, expected, "the trace's calls differ from the program's log");

    // The kernel calls each call caused sit just before its record, and match it.
    let at =
        |call: &str| all.iter().position(|c| c == call).unwrap_or_else(|| panic!("{call} not in the trace"));
    let page = |a: u64| a & !4095;
    let big = &expected[10];
    let i = at(big);
    assert!(all[i - 1].starts_with("mmap(1052672, 0x3, 0x22) = "), "{:?}", &all[i - 2..=i]);
    assert_eq!(result_of(&all[i - 1]), page(result_of(big)));
    let grown = &expected[11];
    let i = at(grown);
    assert!(all[i - 1].starts_with("mremap("), "{:?}", &all[i - 2..=i]);
    assert_eq!(result_of(&all[i - 1]), page(result_of(grown)));
    let freed = format!("free({:#x})", result_of(grown));
    let i = at(&freed);
    assert_eq!(all[i + 1], format!("munmap({:#x}, 4198400) = 0x0", page(result_of(grown))));
    // malloc_trim gave memory back with madvise or a lower break, recorded before it returned.
    let i = at("malloc_trim(0) = 1");
    assert!(all[..i]
        .iter()
        .rev()
        .take_while(|c| is_kernel_call(c))
        .any(|c| c.starts_with("sbrk(-") || c.starts_with("madvise(")));

    // The report's counts.
    for line in [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "valloc",
        "pvalloc",
    ] {
        assert!(report.lines().any(|l| l.trim_start().starts_with(line)), "no {line} in\n{report}");
    }
    assert!(report.contains("allocations that failed: 2"), "{report}");
    let largest = report.lines().skip_while(|l| *l != "largest blocks").nth(1).unwrap();
    assert!(largest.trim_start().starts_with("4.0 MiB  thread 1"), "{report}");
}

fn eight_threads_freeing_each_others_blocks() {
    let prog = common::compile_c("trace_threads.c", &[]);
    let dir = tmp("threads");
    let file = dir.join("t.trace");
    let out = record(&file, &prog, &[]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let (report, threads) = stats(&file);
    // Eight workers and the main thread.
    assert!(threads.len() >= 9, "{report}");
    // Every block of 777 bytes was freed by the next thread: 8 x 2000, each free of one
    // after its malloc on another thread.
    let mut owner: HashMap<u64, u32> = HashMap::new();
    let mut cross = 0;
    let out = ptalloc().arg("trace-stats").arg("--calls").arg(&file).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<(u64, u32, String)> = text
        .split_once("\ncalls, each thread's in its order")
        .unwrap()
        .1
        .lines()
        .skip(1)
        .map(|l| {
            let (thread, rest) = l.strip_prefix('[').unwrap().split_once("] ").unwrap();
            let (time, call) = rest.split_once(' ').unwrap();
            (time.parse().unwrap(), thread.parse().unwrap(), call.to_string())
        })
        .collect();
    lines.sort_by_key(|(t, _, c)| (*t, !c.starts_with("free(")));
    for (_, thread, call) in &lines {
        if call.starts_with("malloc(777) = ") {
            assert!(owner.insert(result_of(call), *thread).is_none(), "{call} while still live");
        } else if let Some(p) = call.strip_prefix("free(0x") {
            let p = u64::from_str_radix(p.trim_end_matches(')'), 16).unwrap();
            if let Some(t) = owner.remove(&p) {
                assert_ne!(t, *thread, "a 777-byte block freed on its own thread");
                cross += 1;
            }
        }
    }
    assert_eq!(cross, 8 * 2000, "{report}");
    assert!(owner.is_empty(), "blocks never freed: {}", owner.len());
    let reported: u64 =
        report.lines().find_map(|l| l.strip_prefix("cross-thread frees: ")).unwrap().parse().unwrap();
    assert!(reported >= 8 * 2000, "{report}");
}

fn children_write_their_own_files() {
    let prog = common::compile_c("trace_fork.c", &[]);
    let dir = tmp("fork");
    let file = dir.join("t.trace");
    let out = record(&file, &prog, &[]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let log = String::from_utf8(out.stdout).unwrap();
    let pids: Vec<u32> = log.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The two, and the subshell sh forks for $(...).
    assert!(stderr.contains("3 child processes"), "{stderr}");
    // The parent's file has its own calls only; the forked child's has malloc(4321); the
    // executed child (sh, a program of its own) has its own file too.
    let (parent, pt) = stats(&file);
    assert!(pt.values().flatten().any(|c| c.starts_with("malloc(1234) = ")), "{parent}");
    assert!(!pt.values().flatten().any(|c| c.starts_with("malloc(4321)")), "{parent}");
    let forked = dir.join(format!("t.trace.{}", pids[0]));
    let (report, ct) = stats(&forked);
    assert!(report.contains(", a forked child"), "{report}");
    assert!(ct.values().flatten().any(|c| c.starts_with("malloc(4321) = ")), "{report}");
    assert!(!ct.values().flatten().any(|c| c.starts_with("malloc(1234)")), "{report}");
    let executed = dir.join(format!("t.trace.{}", pids[1]));
    let (report, _) = stats(&executed);
    assert!(report.contains(": sh -c"), "{report}");
}

fn a_killed_program_leaves_a_readable_trace() {
    let prog = common::compile_c("trace_killed.c", &[]);
    let dir = tmp("killed");
    let file = dir.join("t.trace");
    let out = record(&file, &prog, &[]);
    // The command dies of the program's signal.
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", common::describe(&out));
    let (report, threads) = stats(&file);
    let mallocs = threads.values().flatten().filter(|c| c.starts_with("malloc(")).count();
    assert!(mallocs >= 50_000, "{mallocs} mallocs\n{report}");
    // Cut anywhere, it reads up to its last complete record and says so.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.trace");
    std::fs::write(&cut, &bytes[..65536 + 65536 / 2 + 3]).unwrap();
    let (report, threads) = stats(&cut);
    assert!(report.contains("the trace ends mid-way"), "{report}");
    let n = threads.values().flatten().count();
    assert!(n > 1000 && n < 8192 / 2, "{n} records in half a block\n{report}");
}

fn bad_traces_get_one_line_and_status_2() {
    let dir = tmp("bad");
    let prog = common::compile_c("trace_calls.c", &["-Wno-alloc-size-larger-than"]);
    let good = dir.join("good.trace");
    assert!(record(&good, &prog, &[]).status.success());
    let bytes = std::fs::read(&good).unwrap();
    let mut other_version = bytes.clone();
    other_version[8] = 7;
    let mut bad_kind = bytes.clone();
    bad_kind[65536 + 16] = 0xEE;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "is empty"),
        (
            "garbage",
            (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
            "not a ptalloc trace",
        ),
        ("short", bytes[..40].to_vec(), "truncated"),
        ("version", other_version, "format version 7"),
        ("kind", bad_kind, "unknown record kind"),
    ];
    for (name, content, says) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let out = ptalloc().arg("trace-stats").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", common::describe(&out));
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("ptalloc: trace-stats: ") && err.contains(says), "{name}: {err}");
    }
    let out = ptalloc().arg("trace-stats").arg(dir.join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"), "{}", common::describe(&out));
    // record: an output in a missing directory; a program that does not exist.
    let out = ptalloc()
        .args(["record", "-o", "/nonexistent/dir/t.trace", "--lib"])
        .arg(common::library())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"), "{}", common::describe(&out));
    let out = ptalloc()
        .arg("record")
        .arg("-o")
        .arg(dir.join("x.trace"))
        .arg("--lib")
        .arg(common::library())
        .arg("/nonexistent/program")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", common::describe(&out));
}

/// `ptalloc record -o FILE` of a workload of the real-program set.
fn record_workload(workload: &str, file: &Path) -> Command {
    let inputs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads");
    program_workloads::prepare(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let w = program_workloads::command(workload, &inputs);
    let mut cmd = ptalloc();
    cmd.arg("record")
        .arg("-o")
        .arg(file)
        .arg("--lib")
        .arg(common::library())
        .arg("--")
        .arg(w.get_program())
        .args(w.get_args());
    cmd
}

/// Per process: the kernel calls in its trace, against its PTALLOC_STATS report.
fn agrees_with_statistics(workload: &str) {
    let dir = tmp(workload);
    let file = dir.join("t.trace");
    let report = dir.join("stats.log");
    let mut cmd = record_workload(workload, &file);
    cmd.env("PTALLOC_STATS", &report);
    let out = common::output_within(&mut cmd);
    assert!(out.status.success(), "{}", common::describe(&out));
    let log = std::fs::read_to_string(&report).unwrap();
    // pid -> [brk, mmap, munmap, mremap] calls, and threads seen.
    let mut ours: HashMap<u32, ([u64; 4], u64)> = HashMap::new();
    for l in log.lines() {
        let Some((pid, rest)) = l.strip_prefix("ptalloc[").and_then(|l| l.split_once("]: ")) else {
            continue;
        };
        let e = ours.entry(pid.parse().unwrap()).or_default();
        let words: Vec<&str> = rest.split_whitespace().collect();
        for (i, name) in ["brk", "mmap", "munmap", "mremap"].iter().enumerate() {
            if let Some(at) = words.iter().position(|w| w == name) {
                e.0[i] = words[at + 1].parse().unwrap();
            }
        }
        if rest.ends_with("threads seen") {
            e.1 = words[words.len() - 3].parse().unwrap();
        }
    }
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("t.trace"))
        .collect();
    assert!(files.len() >= 2, "the workload's programs wrote no trace of their own: {files:?}");
    let mut biggest = 0;
    for f in &files {
        let (report, threads) = stats(f);
        // A forked child's statistics start from its parent's counts at the fork, its trace
        // from nothing: only processes that began with a program of their own compare. A
        // program that executed another (env running bash) wrote no report: its successor
        // in the same process did, in FILE.PID.
        if report.lines().next().unwrap().contains(", a forked child") {
            continue;
        }
        let pid: u32 = report.split_whitespace().nth(3).unwrap().parse().unwrap();
        if *f == file && dir.join(format!("t.trace.{pid}")).exists() {
            continue;
        }
        let pid: u32 = report.split_whitespace().nth(3).unwrap().parse().unwrap();
        let Some((calls, seen)) = ours.get(&pid) else {
            panic!("no statistics of process {pid}:\n{log}\n{report}")
        };
        let count = |name: &str| {
            threads.values().flatten().filter(|c| c.starts_with(&format!("{name}("))).count() as u64
        };
        let traced = [count("sbrk"), count("mmap"), count("munmap"), count("mremap")];
        assert_eq!(&traced, calls, "process {pid}: kernel calls in the trace (brk, mmap, munmap, mremap) against its statistics\n{report}");
        assert_eq!(threads.len() as u64, *seen, "process {pid}: threads\n{report}");
        let program_calls = threads.values().flatten().filter(|c| !is_kernel_call(c)).count();
        biggest = biggest.max(program_calls);
    }
    assert!(biggest > 10_000, "the workload's main program made only {biggest} calls");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ replay

/// `ptalloc replay FILE ARGS...`: its output, which must be a success.
fn replay(file: &Path, args: &[&str]) -> String {
    let out = common::output_within(
        ptalloc().arg("replay").arg(file).arg("--lib").arg(common::library()).args(args),
    );
    assert!(out.status.success(), "replay {args:?}: {}", common::describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The calls by kind a replay reports ("calls replayed, as in the trace: malloc 3, ...").
fn replayed_calls(out: &str) -> HashMap<String, u64> {
    let line = out.lines().find_map(|l| l.strip_prefix("calls replayed, as in the trace: ")).expect(out);
    line.split(", ")
        .map(|kv| {
            let (k, v) = kv.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The number after `prefix` on the line that starts with it.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
    rest.split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty()).unwrap().parse().unwrap()
}

/// The program calls a trace-stats report counts, by kind.
fn traced_calls(report: &str) -> HashMap<String, u64> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("program calls"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with("requested in all"))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().parse().unwrap())
        })
        .collect()
}

/// Record a workload of the real-program set and replay its main program's trace on
/// `allocators` (as recorded) and on the simulated kernel (one thread): the replays make
/// the trace's calls, with its bytes, and on one thread reach its peak live bytes.
fn replays_real_program(workload: &str, program: &str, allocators: &[&str]) {
    let dir = tmp(&format!("replay-{workload}"));
    let file = dir.join("t.trace");
    let mut cmd = record_workload(workload, &file);
    let out = common::output_within(&mut cmd);
    assert!(out.status.success(), "{}", common::describe(&out));
    // The program's own file: the largest one whose command line names it.
    let mut main: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        let head = ptalloc().arg("trace-stats").arg(&p).output().unwrap();
        let first = String::from_utf8_lossy(&head.stdout).lines().next().unwrap_or("").to_string();
        if first.contains(program) && main.as_ref().is_none_or(|(l, _)| len > *l) {
            main = Some((len, p));
        }
    }
    let (_, main) = main.unwrap_or_else(|| panic!("no trace of {program}"));
    let (report, _) = stats(&main);
    let calls = traced_calls(&report);
    let requested = number_after(&report, "requested in all: ");
    let peak = report.lines().find_map(|l| l.strip_prefix("live bytes: peak ")).unwrap();
    let peak: u64 = peak.split_once('(').unwrap().1.split(' ').next().unwrap().parse().unwrap();
    let unknown = report.lines().find_map(|l| l.split("never returned: ").nth(1)).unwrap();
    assert!(unknown.starts_with("0;"), "the program's trace starts before its first call: {report}");
    let mut runs: Vec<(Vec<&str>, bool)> =
        allocators.iter().map(|a| (vec!["--allocator", *a, "--runs", "1"], false)).collect();
    runs.push((vec!["--kernel", "sim", "--threads", "1"], true));
    for (args, serial) in runs {
        let out = replay(&main, &args);
        assert_eq!(
            replayed_calls(&out),
            calls,
            "{args:?}: the replay's calls against the trace's\n{out}\n{report}"
        );
        let bytes = out.lines().find_map(|l| l.strip_prefix("bytes requested: ")).unwrap();
        assert!(
            bytes.contains(&format!("({requested} bytes)")),
            "{args:?}: {bytes} against {requested}\n{report}"
        );
        if serial {
            assert!(
                out.contains(&format!("peak live bytes: {peak} (the trace's: {peak})")),
                "{args:?}\n{out}"
            );
            assert!(out.contains("simulated page faults: "), "{out}");
            assert!(
                out.contains("/proc/PID/maps at the end (simulated):") && out.contains("[heap]"),
                "{out}"
            );
        }
    }
    // Hundreds of MiB: not left in the build directory.
    let _ = std::fs::remove_dir_all(&dir);
}

fn replay_keeps_cross_thread_frees_and_compares() {
    let prog = common::compile_c("trace_threads.c", &[]);
    let dir = tmp("replay-threads");
    let file = dir.join("t.trace");
    assert!(record(&file, &prog, &[]).status.success());
    for alloc in ["ptalloc", "glibc"] {
        let out = replay(&file, &["--allocator", alloc, "--runs", "2"]);
        // The command itself fails a replay whose cross-thread pairs are not the trace's.
        let n = number_after(&out, "cross-thread frees: ");
        assert!(n >= 8 * 2000, "{out}");
        assert!(out.contains("the same pairs of threads as in the trace"), "{out}");
        assert_eq!(replayed_calls(&out)["malloc"], 8 * 2000 * 2, "{out}");
    }
    let svg = dir.join("compare.svg");
    let out = replay(&file, &["--compare", "--runs", "1", "--svg", svg.to_str().unwrap()]);
    for alloc in ["ptalloc", "glibc"] {
        assert!(out.lines().any(|l| l.starts_with(alloc)), "{out}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg")
            && picture.contains(">ptalloc</text>")
            && picture.contains(">glibc</text>"),
        "{picture}"
    );
    assert!(picture.contains("requested sizes"), "{picture}");
}

fn replay_of_a_killed_program_and_bad_input() {
    let prog = common::compile_c("trace_killed.c", &[]);
    let dir = tmp("replay-bad");
    let file = dir.join("t.trace");
    let _ = record(&file, &prog, &[]);
    let out = replay(&file, &["--runs", "1"]);
    assert!(replayed_calls(&out)["malloc"] >= 50_000, "{out}");
    // The simulated kernel runs ptalloc in the worker: no library file is needed.
    let out = ptalloc()
        .arg("replay")
        .arg(&file)
        .args(["--kernel", "sim", "--lib", "/nonexistent/libptalloc.so"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("simulated page faults: "),
        "{}",
        common::describe(&out)
    );
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"not a trace at all, just some words of text that go on for a while").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![garbage.to_str().unwrap()], "not a ptalloc trace"),
        (vec![empty.to_str().unwrap()], "is empty"),
        (vec![file.to_str().unwrap(), "--allocator", "frobmalloc"], "unknown allocator"),
        (
            vec![file.to_str().unwrap(), "--kernel", "sim", "--allocator", "glibc"],
            "simulated kernel runs ptalloc",
        ),
        (vec![file.to_str().unwrap(), "--kernel", "windows"], "invalid value"),
        (vec![file.to_str().unwrap(), "--runs", "0"], "0"),
    ];
    for (args, says) in cases {
        // The test's library, so that only the case at hand can be wrong.
        let out = ptalloc().arg("replay").args(&args).arg("--lib").arg(common::library()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", common::describe(&out));
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ptalloc: ") && err.contains(says), "{args:?}: {err}");
    }
}
