//! The standard programs: the rows of the tables, each a target of the folder's
//! CMakeLists.txt run with the arguments mimalloc-bench's `bench.sh` gives it, named as
//! bench.sh names its tests (`larsonN`: larson on N threads). Where bench.sh reports a
//! program's "relative time" instead of its wall time — the programs that run for a fixed
//! time and report how much they did — the same conversion is done here, from the same line
//! of the program's output.

use std::ffi::OsString;
use std::path::Path;

/// One of a program's arguments.
pub enum Arg {
    Word(&'static str),
    /// The number of threads (bench.sh's `$procs`).
    Threads,
    /// The number of threads, at most 16 (bench.sh's limit for alloc-test).
    ThreadsMax16,
    /// A file of the folder, by its path there.
    File(&'static str),
}

/// How a run's time is read.
pub enum Time {
    Wall,
    /// The relative time bench.sh derives from the output (None: the line is missing).
    Relative(fn(&str) -> Option<f64>),
}

pub struct Program {
    /// The row's label, bench.sh's name for the test.
    pub name: &'static str,
    /// The CMake target that builds it.
    pub target: &'static str,
    pub args: &'static [Arg],
    /// A file of the folder on its stdin (else /dev/null, as bench.sh does).
    pub stdin: Option<&'static str>,
    pub time: Time,
}

use Arg::{File, Threads, ThreadsMax16, Word};

const fn wall(name: &'static str, target: &'static str, args: &'static [Arg]) -> Program {
    Program { name, target, args, stdin: None, time: Time::Wall }
}

const fn relative(
    name: &'static str,
    target: &'static str,
    args: &'static [Arg],
    time: fn(&str) -> Option<f64>,
) -> Program {
    Program { name, target, args, stdin: None, time: Time::Relative(time) }
}

pub const PROGRAMS: [Program; 17] = [
    wall("cfrac", "cfrac", &[Word("17545186520507317056371138836327483792789528")]),
    wall("espresso", "espresso", &[File("espresso/largest.espresso")]),
    Program { stdin: Some("barnes/input"), ..wall("barnes", "barnes", &[]) },
    relative("larsonN", "larson", LARSON, larson),
    relative("larsonN-sized", "larson-sized", LARSON, larson),
    wall("alloc-test1", "alloc-test", &[Word("1")]),
    wall("alloc-testN", "alloc-test", &[ThreadsMax16]),
    relative(
        "xmalloc-testN",
        "xmalloc-test",
        &[Word("-w"), Threads, Word("-t"), Word("5"), Word("-s"), Word("64")],
        xmalloc,
    ),
    wall("cache-scratch1", "cache-scratch", &[Word("1"), Word("1000"), Word("1"), Word("2000000"), Threads]),
    wall("cache-scratchN", "cache-scratch", &[Threads, Word("1000"), Word("1"), Word("2000000"), Threads]),
    wall("cache-thrashN", "cache-thrash", &[Threads, Word("1000"), Word("1"), Word("2000000"), Threads]),
    wall("mstressN", "mstress", &[Threads, Word("50"), Word("25")]),
    relative(
        "rptestN",
        "rptest",
        &[
            Threads,
            Word("0"),
            Word("1"),
            Word("2"),
            Word("500"),
            Word("1000"),
            Word("100"),
            Word("8"),
            Word("16000"),
        ],
        rptest,
    ),
    wall("glibc-simple", "glibc-simple", &[]),
    relative("glibc-thread", "glibc-thread", &[Threads], glibc_thread),
    wall("malloc-large", "malloc-large", &[]),
    wall("mleak10", "mleak", &[Word("5")]),
];

const LARSON: &[Arg] =
    &[Word("5"), Word("8"), Word("1000"), Word("5000"), Word("100"), Word("4141"), Threads];

impl Program {
    /// Its command-line arguments, for the folder `bench` and `threads` threads.
    pub fn args(&self, bench: &Path, threads: usize) -> Vec<OsString> {
        self.args
            .iter()
            .map(|a| match a {
                Word(w) => w.into(),
                Threads => threads.to_string().into(),
                ThreadsMax16 => threads.min(16).to_string().into(),
                File(f) => bench.join(f).into(),
            })
            .collect()
    }

    pub fn is_relative(&self) -> bool {
        matches!(self.time, Time::Relative(_))
    }
}

/// larson prints "… relative time: 12.345s." (1e9 / its throughput); bench.sh takes the
/// number after the line's (last) " time: ".
fn larson(out: &str) -> Option<f64> {
    out.lines().find_map(|l| l.rfind(" time: ").and_then(|i| leading_number(&l[i + 7..])))
}

/// xmalloc-test prints "rtime: 1.234, free/sec: …" and bench.sh takes that number.
fn xmalloc(out: &str) -> Option<f64> {
    out.lines().find_map(|l| l.strip_prefix("rtime: ").and_then(leading_number))
}

/// rptest prints "…….1234567 memory ops/CPU second …"; bench.sh's relative time is
/// 2,000,000 / ops.
fn rptest(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let before = &l[..l.find(" memory ops")?];
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let ops: f64 = before[before.len() - digits..].parse().ok()?;
        (ops > 0.0).then(|| 2_000_000.0 / ops)
    })
}

/// glibc-thread prints "123456 iterations"; bench.sh's relative time is 1e9 / iterations.
fn glibc_thread(out: &str) -> Option<f64> {
    let iterations = out.lines().find_map(leading_number)?;
    (iterations > 0.0).then(|| 1e9 / iterations)
}

/// The number a string starts with (digits and dots, as bench.sh's `[0-9\.]*`).
fn leading_number(s: &str) -> Option<f64> {
    let end = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    s[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_as_bench_sh_reads_them() {
        let larson_out =
            "C++ version\nThroughput =  1000000 operations per second, relative time: 1000.000s.\nDone\n";
        assert_eq!(larson(larson_out), Some(1000.0));
        assert_eq!(
            xmalloc("Total 5 freed in 5.00 seconds. 1.00M free/second\nrtime: 2.500, free/sec: 40.000 M\n"),
            Some(2.5)
        );
        assert_eq!(
            rptest("rptest 2 threads … 100 ops: ........400000 memory ops/CPU second (37MiB peak)\n"),
            Some(5.0)
        );
        assert_eq!(glibc_thread("2000000000 iterations\n"), Some(0.5));
        for f in [larson, xmalloc, rptest, glibc_thread] {
            assert_eq!(f("nothing of the kind\n"), None);
        }
    }

    #[test]
    fn names_and_arguments() {
        let mut names: Vec<_> = PROGRAMS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len());
        let larson = PROGRAMS.iter().find(|p| p.name == "larsonN").unwrap();
        assert_eq!(larson.args(Path::new("b"), 3), ["5", "8", "1000", "5000", "100", "4141", "3"]);
        let alloc = PROGRAMS.iter().find(|p| p.name == "alloc-testN").unwrap();
        assert_eq!(alloc.args(Path::new("b"), 64), ["16"]);
        let espresso = PROGRAMS.iter().find(|p| p.name == "espresso").unwrap();
        assert_eq!(espresso.args(Path::new("b"), 1), [OsString::from("b/espresso/largest.espresso")]);
    }
}
