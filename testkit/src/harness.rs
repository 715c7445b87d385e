//! A test harness for the test files that run other programs (`harness = false` in their
//! crate's `[[test]]` entries, and a `main` that calls [`run`]).
//!
//! libtest knows only "passed", "failed" and "ignored at compile time", so a test whose
//! program is not installed could only fail (on a fresh machine, where nothing is wrong with
//! the code) or pass without testing anything. Here a test names what it needs
//! ([`Test::needs`]); when something is missing it is reported in one line and counted as
//! skipped:
//!
//! ```text
//! test sqlite3 ... skipped: sqlite3 is not installed
//! test result: ok. 9 passed; 0 failed; 1 skipped; 0 filtered out; finished in 41.20s
//! ```
//!
//! Under `PTALLOC_REQUIRE_ALL_TESTS=1` (CI sets it) a skip is a failure instead, so a
//! machine that should have everything cannot quietly test less.
//!
//! The command line is libtest's, as far as these tests need it: substring filters,
//! `--exact`, `--skip`, `--list`, `--test-threads`, `--ignored` / `--include-ignored` (no
//! test here is ignored). Unlike libtest it does not capture what tests print; a panic's
//! message is kept and shown with the failures, as libtest does.

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// `tests![a, b needs("sort"), c]`: the [`Test`]s that run functions `a`, `b` and `c`, each
/// named after its function (as libtest names `#[test]` functions), `b` needing `sort`.
#[macro_export]
macro_rules! tests {
    ($($f:ident $(needs($($program:expr),+))?),* $(,)?) => {
        vec![$($crate::harness::Test::new(stringify!($f), $f)$($(.needs($program))+)?),*]
    };
}

/// The environment variable under which a test that would be skipped fails.
pub const REQUIRE_ALL: &str = "PTALLOC_REQUIRE_ALL_TESTS";

/// One test: a name, what it needs, and its body (which passes by returning `()` or
/// `Ok(())`, and fails by panicking or returning an error).
pub struct Test {
    name: String,
    needs: Vec<Need>,
    body: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

enum Need {
    /// An executable on `PATH` (or at this path, if it has a `/`).
    Program(String),
    /// Anything else: the sentence that says what is missing, and the check.
    Probe { missing: String, present: Box<dyn Fn() -> bool + Send> },
}

/// What a test body may return.
pub trait Verdict {
    fn verdict(self) -> Result<(), String>;
}

impl Verdict for () {
    fn verdict(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> Verdict for Result<(), E> {
    fn verdict(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

impl Test {
    pub fn new<R: Verdict>(name: impl Into<String>, body: impl FnOnce() -> R + Send + 'static) -> Test {
        Test { name: name.into(), needs: Vec::new(), body: Box::new(move || body().verdict()) }
    }

    /// Skip the test unless `program` is installed.
    pub fn needs(mut self, program: impl Into<String>) -> Test {
        let program = program.into();
        if !self.needs.iter().any(|n| matches!(n, Need::Program(p) if *p == program)) {
            self.needs.push(Need::Program(program));
        }
        self
    }

    /// Skip the test, saying `missing`, unless `present()`; checked only once every program
    /// the test needs is there (so the check may run them).
    pub fn needs_that(
        mut self,
        missing: impl Into<String>,
        present: impl Fn() -> bool + Send + 'static,
    ) -> Test {
        self.needs.push(Need::Probe { missing: missing.into(), present: Box::new(present) });
        self
    }

    /// Why the test cannot run here, if it cannot.
    fn missing(&self) -> Option<String> {
        let absent: Vec<&str> = self
            .needs
            .iter()
            .filter_map(|n| match n {
                Need::Program(p) if !installed(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        if let Some((last, rest)) = absent.split_last() {
            return Some(match rest {
                [] => format!("{last} is not installed"),
                _ => format!("{} and {last} are not installed", rest.join(", ")),
            });
        }
        self.needs.iter().find_map(|n| match n {
            Need::Probe { missing, present } if !present() => Some(missing.clone()),
            _ => None,
        })
    }
}

/// Whether `program` can be run: an executable file on `PATH`, or at `program` itself if
/// it names a path.
pub fn installed(program: &str) -> bool {
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| !dir.as_os_str().is_empty() && executable(&dir.join(program)))
}

/// Run the tests the command line selects, as many at a time as `--test-threads`,
/// `RUST_TEST_THREADS` or else the number of CPUs says; exit 0 if none failed, 101 (as
/// libtest does) if any did.
pub fn run(tests: Vec<Test>) -> ! {
    main(tests, None)
}

/// [`run`], one test at a time unless the command line or `RUST_TEST_THREADS` asks for more:
/// for tests that measure their machine (time, memory) and should not compete for it.
pub fn run_one_at_a_time(tests: Vec<Test>) -> ! {
    main(tests, Some(1))
}

fn main(tests: Vec<Test>, default_threads: Option<usize>) -> ! {
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(101)
    });
    let total = tests.len();
    let selected: Vec<Test> = tests.into_iter().filter(|t| args.selects(&t.name)).collect();
    let filtered_out = total - selected.len();
    if args.list {
        for t in &selected {
            println!("{}: test", t.name);
        }
        if !args.terse {
            println!("\n{}, 0 benchmarks", count(selected.len(), "test"));
        }
        std::process::exit(0);
    }
    let threads = args
        .threads
        .or_else(|| std::env::var("RUST_TEST_THREADS").ok()?.parse().ok().filter(|&n| n > 0))
        .or(default_threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let require_all = std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0");
    let summary = run_all(selected, threads, require_all);
    println!(
        "\ntest result: {}. {} passed; {} failed; {} skipped; {filtered_out} filtered out; finished in {:.2}s\n",
        if summary.failed.is_empty() { "ok" } else { "FAILED" },
        summary.passed,
        summary.failed.len(),
        summary.skipped,
        summary.seconds
    );
    std::process::exit(if summary.failed.is_empty() { 0 } else { 101 })
}

enum Outcome {
    Ok,
    Skipped(String),
    Failed(String),
}

struct Summary {
    passed: usize,
    skipped: usize,
    /// Name and what went wrong.
    failed: Vec<(String, String)>,
    seconds: f64,
}

/// Run the tests, up to `threads` at once, each on a thread of its own (named after it, as
/// libtest's are); print each outcome as it comes, then the failures.
fn run_all(tests: Vec<Test>, threads: usize, require_all: bool) -> Summary {
    capture_panic_messages();
    let start = Instant::now();
    println!("\nrunning {}", count(tests.len(), "test"));
    let mut s = Summary { passed: 0, skipped: 0, failed: Vec::new(), seconds: 0.0 };
    let (done, finished) = mpsc::channel::<(String, Outcome)>();
    let mut waiting = tests.into_iter();
    let mut running = 0;
    loop {
        while running < threads {
            let Some(test) = waiting.next() else { break };
            let done = done.clone();
            std::thread::Builder::new()
                .name(test.name.clone())
                .spawn(move || {
                    let name = test.name.clone();
                    let _ = done.send((name, outcome(test, require_all)));
                })
                .expect("cannot start a test thread");
            running += 1;
        }
        if running == 0 {
            break;
        }
        let (name, result) = finished.recv().expect("a test thread vanished");
        running -= 1;
        match result {
            Outcome::Ok => {
                s.passed += 1;
                println!("test {name} ... ok");
            }
            Outcome::Skipped(why) => {
                s.skipped += 1;
                println!("test {name} ... skipped: {why}");
            }
            Outcome::Failed(why) => {
                println!("test {name} ... FAILED");
                s.failed.push((name, why));
            }
        }
    }
    if !s.failed.is_empty() {
        println!("\nfailures:\n");
        for (name, why) in &s.failed {
            println!("---- {name} ----\n{}\n", why.trim_end());
        }
        println!("failures:");
        for (name, _) in &s.failed {
            println!("    {name}");
        }
    }
    s.seconds = start.elapsed().as_secs_f64();
    s
}

fn outcome(test: Test, require_all: bool) -> Outcome {
    if let Some(why) = test.missing() {
        return if require_all {
            Outcome::Failed(format!("{why}, and {REQUIRE_ALL} is set: every test must run"))
        } else {
            Outcome::Skipped(why)
        };
    }
    PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let result = panic::catch_unwind(AssertUnwindSafe(test.body));
    let message = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
    match result {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(message),
    }
}

thread_local! {
    /// On a test's own thread, the messages of its panics (for the failures list).
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keep a test thread's panic message for the report instead of printing it at once; other
/// threads' panics (those a test starts) print as usual.
fn capture_panic_messages() {
    let print = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let kept = PANIC.with(|p| match p.try_borrow_mut().as_deref_mut() {
            Ok(Some(text)) => {
                let thread = std::thread::current();
                let _ = writeln!(text, "thread '{}' {info}", thread.name().unwrap_or("?"));
                true
            }
            _ => false,
        });
        if !kept {
            print(info);
        }
    }));
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The libtest options these tests can honour.
#[derive(Default)]
struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
    terse: bool,
    /// `--ignored`: only the ignored tests, which is none of them.
    ignored_only: bool,
    threads: Option<usize>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args::default();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--list" => a.list = true,
                "--exact" => a.exact = true,
                "--ignored" => a.ignored_only = true,
                "--skip" => a.skip.push(value()?),
                "--test-threads" => {
                    let v = value()?;
                    a.threads = Some(
                        v.parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or(format!("--test-threads takes a positive number, not {v:?}"))?,
                    );
                }
                "--format" => match value()?.as_str() {
                    "pretty" => a.terse = false,
                    "terse" => a.terse = true,
                    other => return Err(format!("--format {other} is not supported here (pretty or terse)")),
                },
                "-q" | "--quiet" => a.terse = true,
                // Accepted for libtest's sake; they change nothing here.
                "--include-ignored" | "--nocapture" | "--no-capture" | "--show-output" => {}
                "--color" | "-Z" => {
                    value()?;
                }
                f if f.starts_with('-') => return Err(format!("Unrecognized option: '{f}'")),
                _ => a.filters.push(arg),
            }
        }
        Ok(a)
    }

    fn selects(&self, name: &str) -> bool {
        let hit =
            |pattern: &String| if self.exact { name == pattern } else { name.contains(pattern.as_str()) };
        !self.ignored_only
            && (self.filters.is_empty() || self.filters.iter().any(hit))
            && !self.skip.iter().any(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        Args::parse(line.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn filters_as_libtest_does() {
        assert!(args("").selects("sqlite3"));
        assert!(args("sql").selects("sqlite3"));
        assert!(args("git sql").selects("sqlite3"));
        assert!(!args("git").selects("sqlite3"));
        assert!(!args("sql --exact").selects("sqlite3"));
        assert!(args("--exact sqlite3").selects("sqlite3"));
        assert!(!args("--skip sql").selects("sqlite3"));
        assert!(!args("--skip=lite").selects("sqlite3"));
        assert!(!args("--ignored").selects("sqlite3"));
        assert!(args("--include-ignored --nocapture --color never").selects("sqlite3"));
        assert_eq!(args("--test-threads=3").threads, Some(3));
        assert_eq!(args("--test-threads 1").threads, Some(1));
        for bad in ["--test-threads 0", "--test-threads", "--bogus", "--format json"] {
            assert!(Args::parse(bad.split_whitespace().map(String::from)).is_err(), "{bad}");
        }
    }

    #[test]
    fn needs_name_what_is_missing() {
        let t = Test::new("t", || ()).needs("sh").needs("no-such-program-1").needs("no-such-program-2");
        assert_eq!(t.missing().as_deref(), Some("no-such-program-1 and no-such-program-2 are not installed"));
        let t = Test::new("t", || ()).needs("/bin/sh").needs_that("no luck", || false);
        assert_eq!(t.missing().as_deref(), Some("no luck"));
        let t = Test::new("t", || ()).needs("sh").needs_that("fine", || true);
        assert_eq!(t.missing(), None);
        let t = Test::new("t", || ()).needs("no-such-program").needs("no-such-program");
        assert_eq!(t.missing().as_deref(), Some("no-such-program is not installed"));
        assert!(installed("sh") && !installed("/nonexistent/sh"));
    }

    #[test]
    fn named_after_their_functions() {
        fn first() {}
        fn second() -> Result<(), String> {
            Ok(())
        }
        let tests = crate::tests![first, second needs("no-such-program", "sh")];
        assert_eq!(tests[1].missing().as_deref(), Some("no-such-program is not installed"));
        let names: Vec<String> = tests.into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["first", "second"]);
    }

    #[test]
    fn outcomes() {
        assert!(matches!(outcome(Test::new("a", || ()), false), Outcome::Ok));
        assert!(
            matches!(outcome(Test::new("b", || Err::<(), _>("no")), false), Outcome::Failed(e) if e == "no")
        );
        let missing = || Test::new("c", || ()).needs("no-such-program");
        assert!(
            matches!(outcome(missing(), false), Outcome::Skipped(e) if e == "no-such-program is not installed")
        );
        assert!(matches!(outcome(missing(), true), Outcome::Failed(e) if e.contains(REQUIRE_ALL)));
        capture_panic_messages();
        let failed = outcome(Test::new::<()>("d", || panic!("boom")), false);
        assert!(matches!(failed, Outcome::Failed(e) if e.contains("boom") && e.contains("harness.rs")));
    }
}
