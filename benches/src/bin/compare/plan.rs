//! What `compare` will run: the allocators it can find (and notes on those it cannot), and
//! the rows of its tables (the workloads, or the one command given after `--`).

use std::path::PathBuf;

use crate::options::Options;
use ptalloc_benches::allocators;
use ptalloc_benches::workloads::WORKLOADS;

/// An allocator, as a way of running a program.
pub struct Config {
    pub name: String,
    /// The program to run, and LD_PRELOAD for it (None: unset).
    pub program: PathBuf,
    pub preload: Option<PathBuf>,
}

/// One row of the tables: the arguments that every configuration's program gets.
pub struct Row {
    pub label: String,
    pub args: Vec<String>,
}

pub struct Plan {
    /// The allocators found; the first is glibc, the base of every ratio.
    pub configs: Vec<Config>,
    pub rows: Vec<Row>,
    /// One line for each allocator left out, and why.
    pub notes: Vec<String>,
}

/// The workload programs and libptalloc.so are looked for next to this program (they are
/// all built into the same target directory); the other libraries where Debian puts them.
pub fn plan(o: &Options) -> Plan {
    let bin_dir = allocators::bin_dir();
    let mut notes: Vec<String> = Vec::new();

    // The allocators: as global allocators (workloads only), and under LD_PRELOAD.
    let mut configs: Vec<Config> = Vec::new();
    if o.command.is_empty() {
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
        configs.push(Config { name: "glibc".into(), program: PathBuf::from(&o.command[0]), preload: None });
    }
    let program =
        if o.command.is_empty() { bin_dir.join("workload-system") } else { PathBuf::from(&o.command[0]) };
    let ours = allocators::ptalloc_lib();
    allocators::warn_if_checked("compare", [ours.as_path()]);
    let preloads = std::iter::once(("ptalloc (LD_PRELOAD)", ours.exists().then_some(ours)))
        .chain(allocators::packaged());
    for (name, lib) in preloads {
        match lib {
            Some(lib) => {
                configs.push(Config { name: name.into(), program: program.clone(), preload: Some(lib) })
            }
            None => notes.push(format!("{name}: library not installed, skipped")),
        }
    }

    let rows = if o.command.is_empty() {
        WORKLOADS
            .into_iter()
            .filter(|w| o.only.as_ref().is_none_or(|only| only.contains(w)))
            .map(|w| Row {
                label: w.name().to_string(),
                args: vec![
                    w.name().to_string(),
                    "--threads".into(),
                    o.threads.to_string(),
                    "--scale".into(),
                    o.scale.to_string(),
                ],
            })
            .collect()
    } else {
        vec![Row { label: o.command.join(" "), args: o.command[1..].to_vec() }]
    };
    Plan { configs, rows, notes }
}
