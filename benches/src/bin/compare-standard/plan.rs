//! What `compare-standard` will run: the allocators (glibc, ptalloc, and Debian's that are
//! installed), and the rows whose programs were built.

use std::path::PathBuf;

use crate::options::Options;
use crate::programs::Program;
use ptalloc_benches::allocators;

/// An allocator: the library preloaded into every program (None: glibc's malloc).
pub struct Config {
    pub name: String,
    pub preload: Option<PathBuf>,
}

pub struct Row {
    pub program: &'static Program,
    /// The built program.
    pub exe: PathBuf,
}

pub struct Plan {
    /// The first is glibc, the base of every ratio.
    pub configs: Vec<Config>,
    pub rows: Vec<Row>,
    /// One line for each allocator or program left out, and why.
    pub notes: Vec<String>,
}

/// `built`: each built target and its program; `notes`: what the build left out.
pub fn plan(o: &Options, built: &[(String, PathBuf)], mut notes: Vec<String>) -> Plan {
    let mut configs = vec![
        Config { name: "glibc".into(), preload: None },
        Config { name: "ptalloc".into(), preload: Some(o.lib.clone()) },
    ];
    for (name, lib) in &o.with {
        configs.push(Config { name: name.clone(), preload: Some(lib.clone()) });
    }
    for (name, lib) in allocators::packaged().into_iter().filter(|_| o.packaged) {
        match lib {
            Some(lib) => configs.push(Config { name: name.into(), preload: Some(lib) }),
            None => notes.push(format!("{name}: library not installed, skipped")),
        }
    }
    let rows = o
        .programs
        .iter()
        .filter_map(|p| {
            let (_, exe) = built.iter().find(|(t, _)| t == p.target)?;
            Some(Row { program: p, exe: exe.clone() })
        })
        .collect();
    Plan { configs, rows, notes }
}
