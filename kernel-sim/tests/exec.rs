//! exec against the real kernel: the same programs with the same arguments and environment
//! are started by Linux (in a child stopped at its first instruction by ptrace, with
//! randomisation off by `personality(ADDR_NO_RANDOMIZE)` and an 8 MiB stack limit) and laid
//! out by the simulation; `/proc/PID/maps`, the layout fields of `/proc/PID/stat` and the
//! memory lines of `/proc/PID/status` must agree. Addresses are compared relative to where
//! each region starts on its side (the simulated user range sits elsewhere in the host's
//! address space): the stack and the mmap area relative to their tops, the program relative
//! to its first mapping (or to `ELF_ET_DYN_BASE` when, as for a static PIE, nothing of the
//! program is there). Refused execs must fail with Linux's errno and change nothing.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use kernel_sim::{Config, Machine, MachineBox};

const PAGE: usize = 4096;
/// Linux's x86-64 `TASK_SIZE` (47 bits, less the guard page) and the mmap base under an
/// 8 MiB stack limit.
const REAL_TASK_SIZE: usize = 0x7fff_ffff_f000;
const REAL_MMAP_BASE: usize = REAL_TASK_SIZE - (128 << 20);
const REAL_DYN_BASE: usize = REAL_TASK_SIZE / 3 * 2;
/// Exit statuses of a real child that could not be set up (no errno is this large).
const NO_PERSONALITY: i32 = 200;
const NO_PTRACE: i32 = 201;

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// What is compared of one side.
#[derive(Debug, PartialEq, Eq)]
struct View {
    maps: Vec<String>,
    stat: Vec<String>,
    status: Vec<String>,
}

/// Where one side's regions start.
struct Bases {
    task_size: usize,
    mmap_base: usize,
    dyn_base: usize,
}

impl Bases {
    /// `addr` as (region, offset): the stack and mmap area from their tops, the rest
    /// (absolute addresses such as the vsyscall page aside) from the program's origin.
    fn rel(&self, addr: usize, image: usize) -> String {
        if addr >= 0xffff_8000_0000_0000 {
            format!("abs:{addr:x}")
        } else if addr > self.mmap_base && addr <= self.task_size {
            format!("stack-{:x}", self.task_size - addr)
        } else if addr <= self.mmap_base && addr + (1 << 30) > self.mmap_base {
            format!("mmap-{:x}", self.mmap_base - addr)
        } else {
            format!("image{:+x}", addr as i128 - image as i128)
        }
    }
}

/// Normalise maps text, the stat line and status into comparable rows.
fn view(maps: &str, stat: &str, status: &str, b: &Bases) -> View {
    let lines: Vec<Vec<&str>> = maps.lines().map(|l| l.split_whitespace().collect()).collect();
    let range = |f: &str| {
        let (s, e) = f.split_once('-').unwrap();
        (usize::from_str_radix(s, 16).unwrap(), usize::from_str_radix(e, 16).unwrap())
    };
    // The program's origin: its lowest mapping outside the stack and mmap areas.
    let image = lines
        .iter()
        .map(|f| range(f[0]).0)
        .filter(|&a| b.rel(a, 0).starts_with("image"))
        .min()
        .unwrap_or(b.dyn_base);
    let maps = lines
        .iter()
        .map(|f| {
            let (s, e) = range(f[0]);
            format!(
                "{} {} {} {} {} {} {}",
                b.rel(s, image),
                e - s,
                f[1],
                f[2],
                f[3],
                f[4],
                f.get(5).unwrap_or(&"")
            )
        })
        .collect();
    // stat: the text after "(comm) ", fields 3.. ; layout fields 26-28 and 45-51.
    let close = stat.rfind(')').unwrap();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<usize>().unwrap();
    let mut stat_rows = vec![format!("comm {}", &stat[stat.find('(').unwrap() + 1..close])];
    for (name, n) in [
        ("startcode", 26),
        ("endcode", 27),
        ("startstack", 28),
        ("start_data", 45),
        ("end_data", 46),
        ("start_brk", 47),
        ("arg_start", 48),
        ("arg_end", 49),
        ("env_start", 50),
        ("env_end", 51),
    ] {
        stat_rows.push(format!("{name} {}", b.rel(field(n), image)));
    }
    stat_rows.push(format!("vsize {}", field(23)));
    let wanted = ["VmSize:", "VmData:", "VmStk:", "VmExe:", "VmLib:", "RssAnon:", "RssFile:"];
    let status = status
        .lines()
        .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    View { maps, stat: stat_rows, status }
}

/// The real kernel's view of `path` at its first instruction, or the errno its execve gave.
fn real(path: &CStr, argv: &[CString], envp: &[CString]) -> Result<View, i32> {
    let mut av: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    av.push(core::ptr::null());
    let mut ev: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    ev.push(core::ptr::null());
    // SAFETY: the child makes raw system calls only (everything is prepared above) and
    // either stops at its first instruction or exits with execve's errno.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: raw system calls in the child; nothing allocates.
        unsafe {
            let rl = libc::rlimit { rlim_cur: 8 << 20, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_STACK, &rl);
            if libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) == -1 {
                libc::_exit(NO_PERSONALITY);
            }
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(NO_PTRACE);
            }
            libc::execve(path.as_ptr(), av.as_ptr(), ev.as_ptr());
            libc::_exit(*libc::__errno_location());
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        assert!(
            code != NO_PERSONALITY && code != NO_PTRACE,
            "this host does not let a test turn address randomisation off or stop a child at its \
             first instruction (personality or ptrace refused, exit {code}): the real kernel's \
             layout cannot be observed"
        );
        return Err(code);
    }
    assert!(libc::WIFSTOPPED(status), "child neither stopped nor exited: {status:#x}");
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
    let (maps, stat, st) = (read("maps"), read("stat"), read("status"));
    // SAFETY: ending and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    let b = Bases { task_size: REAL_TASK_SIZE, mmap_base: REAL_MMAP_BASE, dyn_base: REAL_DYN_BASE };
    Ok(view(&maps, &stat, &st, &b))
}

fn machine() -> MachineBox {
    Machine::boot(&Config { phys_bytes: 256 << 20, ..Config::DEFAULT }).unwrap()
}

/// The simulation's view of `path` after its exec on `m`, or the errno.
fn sim(m: &Machine, path: &CStr, argv: &[CString], envp: &[CString]) -> Result<View, i32> {
    let av: Vec<&CStr> = argv.iter().map(|a| a.as_c_str()).collect();
    let ev: Vec<&CStr> = envp.iter().map(|a| a.as_c_str()).collect();
    // SAFETY: nothing lives on the test's machine.
    unsafe { m.execve(path, &av, &ev) }.map_err(|e| e.0)?;
    let (mut maps, mut stat, mut status) = (String::new(), String::new(), String::new());
    m.write_maps(&mut maps).unwrap();
    m.write_stat(4242, &mut stat).unwrap();
    m.write_status(&mut status).unwrap();
    let l = m.layout();
    let b = Bases {
        task_size: l.task_size,
        mmap_base: l.mmap_base,
        dyn_base: l.user_base + (l.task_size - l.user_base) / 3 * 2,
    };
    Ok(view(&maps, &stat, &status, &b))
}

fn env() -> Vec<CString> {
    vec![cs("PATH=/usr/bin:/bin"), cs("HOME=/nonexistent"), cs("LANG=C"), cs("KSIM=exec test")]
}

/// Compile `src` with `flags` into the test directory; the path of the program.
fn compile(name: &str, src: &str, flags: &[&str]) -> PathBuf {
    let dir = tmp().join("exec-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let st = std::process::Command::new("cc").args(flags).arg("-o").arg(&out).arg(&c).status().expect("cc");
    assert!(st.success(), "cc {flags:?} {name}");
    out
}

const PROGRAM: &str =
    "static char bss[3 << 20]; int data = 7; int main(int c, char **v) { return bss[c] + data; }\n";

fn compare(path: &Path, args: &[&str]) {
    let cpath = cs(path.to_str().unwrap());
    let mut argv = vec![cpath.clone()];
    argv.extend(args.iter().map(|a| cs(a)));
    let envp = env();
    let r = real(&cpath, &argv, &envp)
        .unwrap_or_else(|e| panic!("{}: the real exec failed: errno {e}", path.display()));
    let m = machine();
    let s = sim(&m, &cpath, &argv, &envp)
        .unwrap_or_else(|e| panic!("{}: the simulated exec failed: errno {e}", path.display()));
    if std::env::var_os("KSIM_EXEC_SHOW").is_some() {
        eprintln!("{}:\n{:#?}", path.display(), s);
    }
    assert!(s.maps.len() >= 5, "{}: too few VMAs to be a program: {:?}", path.display(), s.maps);
    assert_eq!(s.maps, r.maps, "{}: maps differ", path.display());
    assert_eq!(s.stat, r.stat, "{}: stat's layout fields differ", path.display());
    assert_eq!(s.status, r.status, "{}: status differs", path.display());
    m.check().unwrap();
}

#[test]
fn system_programs_are_laid_out_as_linux_lays_them_out() {
    compare(Path::new("/bin/true"), &[]);
    compare(Path::new("/usr/bin/sort"), &["-n", "/dev/null"]);
}

#[test]
fn pie_non_pie_static_and_static_pie_programs_match_linux() {
    compare(&compile("pie", PROGRAM, &["-O", "-pie", "-fpie"]), &["a"]);
    compare(&compile("nopie", PROGRAM, &["-O", "-no-pie", "-fno-pie"]), &["a", "b"]);
    compare(&compile("static", PROGRAM, &["-O", "-static"]), &[]);
    compare(&compile("static-pie", PROGRAM, &["-O", "-static-pie"]), &["x"]);
    compare(&compile("aligned", PROGRAM, &["-O", "-pie", "-fpie", "-Wl,-z,max-page-size=0x200000"]), &[]);
    compare(&compile("execstack", PROGRAM, &["-O", "-z", "execstack"]), &[]);
}

#[test]
fn the_stack_holds_the_strings_and_the_tables_where_linux_puts_them() {
    let m = machine();
    let path = cs("/bin/true");
    let argv = [cs("/bin/true"), cs("one"), cs("two")];
    let envp = env();
    let av: Vec<&CStr> = argv.iter().map(|a| a.as_c_str()).collect();
    let ev: Vec<&CStr> = envp.iter().map(|a| a.as_c_str()).collect();
    // SAFETY: nothing lives on the test's machine.
    let image = unsafe { m.execve(&path, &av, &ev) }.unwrap();
    let l = m.layout();
    // SAFETY: the stack page is the simulated process's, readable; nothing else uses it.
    let word = |a: usize| unsafe { (a as *const u64).read_volatile() } as usize;
    let string = |a: usize| {
        // SAFETY: as above, a NUL-terminated string exec wrote there.
        unsafe { CStr::from_ptr(a as *const libc::c_char) }.to_str().unwrap().to_owned()
    };
    assert_eq!(image.sp, l.start_stack);
    assert_eq!(image.sp % 16, 0);
    assert_eq!(word(image.sp), 3, "argc");
    let args: Vec<String> = (0..3).map(|i| string(word(image.sp + 8 + 8 * i))).collect();
    assert_eq!(args, ["/bin/true", "one", "two"]);
    assert_eq!(word(image.sp + 32), 0);
    assert_eq!(word(image.sp + 40), l.env_start);
    assert_eq!(string(l.env_start), "PATH=/usr/bin:/bin");
    assert_eq!(l.arg_start, word(image.sp + 8));
    assert_eq!(l.arg_end, l.env_start);
    assert_eq!(string(l.env_end), "/bin/true", "the file name, for AT_EXECFN");
    let (aux, n) = m.auxv();
    let get = |t: u64| (0..n / 2).find(|&i| aux[2 * i] == t).map(|i| aux[2 * i + 1] as usize);
    assert_eq!(get(9), Some(image.e_entry), "AT_ENTRY");
    assert_eq!(get(7), Some(image.interp_base), "AT_BASE");
    assert_eq!(get(33), Some(image.vdso), "AT_SYSINFO_EHDR");
    assert_eq!(get(31), Some(l.env_end), "AT_EXECFN");
    assert_eq!(get(6), Some(PAGE), "AT_PAGESZ");
    // SAFETY: AT_PHDR points into the program's first, readable mapping.
    let phdr0 = unsafe { (get(3).unwrap() as *const u32).read_volatile() };
    assert_eq!(phdr0, 6, "AT_PHDR points at the program headers (PT_PHDR first)");
    assert_eq!(string(get(15).unwrap()), "x86_64", "AT_PLATFORM");
    // The vector on the stack is the saved one.
    let stack_aux = image.sp + 8 * (1 + 3 + 1 + envp.len() + 1);
    for (i, &w) in aux.iter().enumerate().take(n) {
        assert_eq!(word(stack_aux + 8 * i) as u64, w, "auxv word {i}");
    }
    // The ELF header of the program is mapped where AT_PHDR says (page cache pages).
    m.check().unwrap();
}

#[test]
fn refused_execs_fail_as_on_linux_and_change_nothing() {
    let dir = tmp().join("exec-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let write_exec = |name: &str, bytes: &[u8], mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        p
    };
    let truebin = std::fs::read("/bin/true").unwrap();
    let text = write_exec("text", b"just some text\n", 0o755);
    let header_only = write_exec("header-only", &truebin[..64], 0o755);
    let cut = write_exec("cut", &truebin[..200], 0o755);
    let noexec = write_exec("noexec", &truebin, 0o644);
    let mut bad_machine = truebin.clone();
    bad_machine[18] = 3;
    let bad_machine = write_exec("i386", &bad_machine, 0o755);
    // An interpreter that is not ELF; one too short to have an ELF header at all.
    let fake_ld = write_exec(
        "fake-ld",
        "not an ELF interpreter, but long enough for a header\n".repeat(3).as_bytes(),
        0o755,
    );
    let short_ld = write_exec("short-ld", b"#!\n", 0o755);
    let with_interp = |name: &str, ld: &Path| {
        compile(name, PROGRAM, &["-O", &format!("-Wl,--dynamic-linker={}", ld.to_str().unwrap())])
    };
    let bad_interp = with_interp("bad-interp", &fake_ld);
    let short_interp = with_interp("short-interp", &short_ld);
    let gone = compile("missing-interp", PROGRAM, &["-O", "-Wl,--dynamic-linker=/nonexistent/ld.so"]);
    let huge = cs(&format!("X={}", "y".repeat(32 * PAGE)));
    let cases: Vec<(PathBuf, Vec<CString>, i32)> = vec![
        (text, env(), libc::ENOEXEC),
        (header_only, env(), libc::ENOEXEC),
        (cut, env(), libc::ENOEXEC),
        (noexec, env(), libc::EACCES),
        (bad_machine, env(), libc::ENOEXEC),
        (bad_interp, env(), libc::ELIBBAD),
        (short_interp, env(), libc::EIO),
        (gone, env(), libc::ENOENT),
        (dir.clone(), env(), libc::EACCES),
        (dir.join("nonexistent"), env(), libc::ENOENT),
        (PathBuf::from("/bin/true"), vec![huge], libc::E2BIG),
    ];
    let m = machine();
    let before = |m: &Machine| {
        let mut maps = String::new();
        m.write_maps(&mut maps).unwrap();
        (maps, m.counters().rss, m.counters().committed_as, m.layout())
    };
    let start = before(&m);
    for (path, envp, want) in cases {
        let cpath = cs(path.to_str().unwrap());
        let argv = [cpath.clone()];
        let got_real = real(&cpath, &argv, &envp).err();
        let got_sim = sim(&m, &cpath, &argv, &envp).err();
        assert_eq!(got_real, Some(want), "{}: the real kernel's errno", path.display());
        assert_eq!(got_sim, Some(want), "{}: the simulation's errno", path.display());
        assert!(before(&m) == start, "{}: a refused exec changed the process", path.display());
    }
    m.check().unwrap();
}
