//! Building the programs the runner needs from the folder's CMakeLists.txt, as its CMake build
//! would: each source compiled with `cc` or `c++` (`$CC`, `$CXX` if set) and the file's flags,
//! standard, definitions, include directories and options, then linked with its libraries.
//!
//! A target is rebuilt only when something it is built from is newer than it (its sources,
//! the headers beside them and in its include directories), or when its commands changed (a
//! new flag, another checkout); the commands are kept next to the program for that. A target
//! whose sources are missing is skipped with a note; so is one that does not compile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::cmake::{self, Compilers, Lang, Project, Target};

/// The optimization: what CMake's Release build (which the file selects) means, `-DNDEBUG`
/// included — larson's asserts would otherwise be timed — at `-O2`, where CMake's Release
/// uses `-O3`.
const OPTIMIZE: [&str; 2] = ["-O2", "-DNDEBUG"];

pub struct Toolchain {
    cc: String,
    cxx: String,
    pub ids: Compilers,
    /// The first line of `cc --version`, for the report.
    pub version: String,
}

/// The C and C++ compilers, and what CMake would call them.
pub fn toolchain() -> Result<Toolchain, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let id = |compiler: &str, lang: &str| -> Result<String, String> {
        // The compiler's predefined macros tell the families apart as CMake does.
        let out = Command::new(compiler)
            .args(["-dM", "-E", "-x", lang, "/dev/null"])
            .output()
            .map_err(|e| format!("cannot run {compiler}: {e}"))?;
        let macros = String::from_utf8_lossy(&out.stdout);
        let has = |m: &str| macros.lines().any(|l| l.starts_with(&format!("#define {m} ")));
        Ok(if has("__apple_build_version__") {
            "AppleClang"
        } else if has("__clang__") {
            "Clang"
        } else if has("__GNUC__") {
            "GNU"
        } else {
            "Unknown"
        }
        .into())
    };
    let ids = Compilers { c_id: id(&cc, "c")?, cxx_id: id(&cxx, "c++")? };
    let out = Command::new(&cc).arg("--version").output().map_err(|e| format!("cannot run {cc}: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or(&cc).trim().to_string();
    Ok(Toolchain { cc, cxx, ids, version })
}

/// The optimization flags, as the report states them.
pub fn optimization() -> String {
    OPTIMIZE.join(" ")
}

/// Build the `wanted` targets of `project` (defined in folder `bench`) into `build_dir`;
/// returns each built target's program, and a line for each one that was not built.
pub fn build(
    project: &Project,
    wanted: &BTreeSet<&str>,
    bench: &Path,
    build_dir: &Path,
    tc: &Toolchain,
) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let mut built = Vec::new();
    let mut notes = Vec::new();
    let mut note = |n: String| {
        eprintln!("note: {n}");
        notes.push(n);
    };
    for name in wanted {
        let Some(target) = project.targets.iter().find(|t| t.name == *name) else {
            note(format!("{name}: no such target in CMakeLists.txt, skipped"));
            continue;
        };
        let missing: Vec<&String> = target.sources.iter().filter(|s| !bench.join(s).is_file()).collect();
        if let Some(first) = missing.first() {
            note(format!("{name}: source {first} missing, skipped"));
            continue;
        }
        match build_target(project, target, bench, build_dir, tc) {
            Ok(exe) => built.push((target.name.clone(), exe)),
            Err(e) => note(format!("{name}: not built ({e})")),
        }
    }
    (built, notes)
}

/// One compiler run: its command line, the program first.
type Step = Vec<String>;

fn build_target(
    project: &Project,
    t: &Target,
    bench: &Path,
    build_dir: &Path,
    tc: &Toolchain,
) -> Result<PathBuf, String> {
    let objects_dir = build_dir.join("obj").join(&t.name);
    let exe = build_dir.join(&t.name);
    let mut compiles = Vec::new();
    let mut objects = Vec::new();
    let mut cxx = false;
    for src in &t.sources {
        let Some(lang) = language(src)? else { continue };
        cxx |= lang == Lang::Cxx;
        let object = objects_dir.join(format!("{}.o", src.replace('/', "_")));
        let mut argv = compile_flags(project, t, lang, bench, &tc.ids)?;
        argv.insert(0, if lang == Lang::C { tc.cc.clone() } else { tc.cxx.clone() });
        argv.extend(["-o".into(), path(&object), "-c".into(), path(&bench.join(src))]);
        compiles.push(argv);
        objects.push(object);
    }
    // CMake links with the C++ driver when any source is C++, with the language's flags.
    let (driver, flags) = if cxx { (&tc.cxx, &project.cxx_flags) } else { (&tc.cc, &project.c_flags) };
    let mut link = vec![driver.clone()];
    link.extend(flags.iter().cloned());
    link.extend(OPTIMIZE.iter().map(|s| s.to_string()));
    link.extend(objects.iter().map(|o| path(o)));
    link.extend(["-o".into(), path(&exe)]);
    for lib in &t.libraries {
        let lib = cmake::genex(lib, None, &tc.ids)?;
        for l in lib.split(';').filter(|l| !l.is_empty()) {
            link.push(if l.starts_with('-') || l.contains('/') { l.to_string() } else { format!("-l{l}") });
        }
    }

    let commands: String = compiles.iter().chain([&link]).map(|s| s.join(" ") + "\n").collect();
    let stamp = build_dir.join(format!("{}.commands", t.name));
    if up_to_date(&exe, &stamp, &commands, t, bench) {
        return Ok(exe);
    }
    eprintln!("building {} ({} sources)", t.name, compiles.len());
    std::fs::create_dir_all(&objects_dir).map_err(|e| format!("{}: {e}", objects_dir.display()))?;
    // A failed build must not leave a program that looks up to date.
    let _ = std::fs::remove_file(&stamp);
    run_all(&compiles)?;
    run_all(&[link])?;
    std::fs::write(&stamp, commands).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(exe)
}

/// The flags for compiling one source, in CMake's order: definitions, include directories,
/// the language's flags, the build type's, the target's options, then the standard.
fn compile_flags(
    project: &Project,
    t: &Target,
    lang: Lang,
    bench: &Path,
    ids: &Compilers,
) -> Result<Vec<String>, String> {
    let expand = |items: &[String]| -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for item in items {
            let v = cmake::genex(item, Some(lang), ids)?;
            out.extend(v.split(';').filter(|s| !s.is_empty()).map(String::from));
        }
        Ok(out)
    };
    let (flags, standard) = match lang {
        Lang::C => (&project.c_flags, t.c_standard.as_ref().map(|s| format!("-std=gnu{s}"))),
        Lang::Cxx => (&project.cxx_flags, t.cxx_standard.as_ref().map(|s| format!("-std=gnu++{s}"))),
    };
    let mut argv: Vec<String> =
        expand(&t.definitions)?.iter().map(|d| format!("-D{}", d.strip_prefix("-D").unwrap_or(d))).collect();
    argv.extend(expand(&t.include_dirs)?.iter().map(|d| format!("-I{}", path(&bench.join(d)))));
    argv.extend(flags.iter().cloned());
    argv.extend(OPTIMIZE.iter().map(|s| s.to_string()));
    argv.extend(expand(&t.options)?);
    argv.extend(standard);
    Ok(argv)
}

/// A source's language by its extension; None for a header listed among the sources.
fn language(src: &str) -> Result<Option<Lang>, String> {
    let ext = Path::new(src).extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "c" => Ok(Some(Lang::C)),
        "cpp" | "cc" | "cxx" | "C" | "c++" => Ok(Some(Lang::Cxx)),
        "h" | "hh" | "hpp" | "hxx" => Ok(None),
        _ => Err(format!("{src}: not a C or C++ source")),
    }
}

/// Whether `exe` was built by `commands` (the stamp says so) after every file it is built from
/// last changed.
fn up_to_date(exe: &Path, stamp: &Path, commands: &str, t: &Target, bench: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (Some(built), Ok(previous)) = (modified(exe), std::fs::read_to_string(stamp)) else { return false };
    if previous != commands {
        return false;
    }
    let mut dirs: BTreeSet<PathBuf> = t.include_dirs.iter().map(|d| bench.join(d)).collect();
    let mut inputs: Vec<PathBuf> = Vec::new();
    for s in &t.sources {
        let s = bench.join(s);
        dirs.extend(s.parent().map(Path::to_path_buf));
        inputs.push(s);
    }
    for d in &dirs {
        let Ok(entries) = std::fs::read_dir(d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("h" | "hh" | "hpp" | "hxx" | "inc")) {
                inputs.push(p);
            }
        }
    }
    inputs.iter().all(|p| modified(p).is_some_and(|m: SystemTime| m <= built))
}

/// Run the steps, as many at once as there are CPUs; the first failure is the error (with
/// the start of the compiler's complaint).
fn run_all(steps: &[Step]) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let error: Mutex<Option<String>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(steps.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(step) = steps.get(k) else { break };
                if let Err(e) = run_step(step) {
                    error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    break;
                }
            });
        }
    });
    match error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn run_step(step: &Step) -> Result<(), String> {
    let out = Command::new(&step[0])
        .args(&step[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", step[0]))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let first = text.lines().find(|l| l.contains("error")).or_else(|| text.lines().next()).unwrap_or("");
    Err(format!("{} failed: {}", step[0], first.trim()))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
