//! `cargo run --release -p kernel-sim --example exec -- PROGRAM [ARGS...]`
//!
//! Lays PROGRAM (a path, or a name looked up in `PATH`) out on a simulated machine as Linux's
//! `execve` does with randomisation off, and prints the simulated `/proc/PID/maps` at its
//! entry point on stdout (nothing else), then the layout fields on stderr. Compare with the
//! real kernel's: `setarch -R` runs a program with randomisation off, and a debugger
//! stopped at its first instruction shows its maps.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use kernel_sim::{Config, Machine};

fn find(program: &OsString) -> PathBuf {
    let p = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return p.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(p)).find(|c| c.is_file()).unwrap_or_else(|| p.to_path_buf())
}

fn cstring(s: impl Into<Vec<u8>>) -> CString {
    CString::new(s).unwrap_or_else(|_| {
        eprintln!("exec: an argument or environment string contains a NUL byte");
        std::process::exit(2)
    })
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(program) = args.first() else {
        eprintln!("usage: exec PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let path = find(program);
    let cpath = cstring(path.as_os_str().as_bytes());
    let argv: Vec<CString> = args.iter().map(|a| cstring(a.clone().into_vec())).collect();
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(kv)
        })
        .collect();
    let argv_refs: Vec<&std::ffi::CStr> = argv.iter().map(|c| c.as_c_str()).collect();
    let envp_refs: Vec<&std::ffi::CStr> = envp.iter().map(|c| c.as_c_str()).collect();
    let m = Machine::boot(&Config::DEFAULT).unwrap_or_else(|e| {
        eprintln!("exec: cannot boot a machine: {}", std::io::Error::from_raw_os_error(e.0));
        std::process::exit(1)
    });
    // SAFETY: nothing lives on this machine yet: its boot image is not used.
    let image = match unsafe { m.execve(&cpath, &argv_refs, &envp_refs) } {
        Ok(i) => i,
        Err(e) => {
            eprintln!("exec: {}: {}", path.display(), std::io::Error::from_raw_os_error(e.0));
            std::process::exit(1);
        }
    };
    let mut maps = String::new();
    m.write_maps(&mut maps).expect("formatting into a String");
    print!("{maps}");
    let l = m.layout();
    eprintln!(
        "user range starts at {:#x} (address 0 of the program's space), TASK_SIZE {:#x}",
        l.user_base, l.task_size
    );
    for (name, v) in [
        ("start_code", l.start_code),
        ("end_code", l.end_code),
        ("start_data", l.start_data),
        ("end_data", l.end_data),
        ("start_brk", l.start_brk),
        ("brk", l.brk),
        ("start_stack", l.start_stack),
        ("arg_start", l.arg_start),
        ("arg_end", l.arg_end),
        ("env_start", l.env_start),
        ("env_end", l.env_end),
        ("mmap_base", l.mmap_base),
        ("entry", image.entry),
        ("AT_ENTRY", image.e_entry),
        ("AT_BASE", image.interp_base),
        ("AT_SYSINFO_EHDR", image.vdso),
    ] {
        eprintln!("{name:<16}{v:#x}");
    }
}
