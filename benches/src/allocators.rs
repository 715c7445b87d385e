//! Where the runners find the allocators they preload: libptalloc.so next to the runner (cargo
//! builds both into the same target directory), and Debian's packaged allocators where Debian
//! installs them.

use std::path::{Path, PathBuf};

/// Debian's allocator libraries: the name the tables give each, then the file names its
/// library may have (the first that exists is used).
const PACKAGED: [(&str, &[&str]); 3] = [
    ("jemalloc (libjemalloc2)", &["libjemalloc.so.2"]),
    ("mimalloc (libmimalloc2.0)", &["libmimalloc.so.2.0", "libmimalloc.so.2"]),
    ("tcmalloc (libtcmalloc-minimal4)", &["libtcmalloc_minimal.so.4"]),
];

/// The directory of the running program: the target directory's `release/` when it is one of
/// this crate's runners.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)).unwrap_or_default()
}

/// libptalloc.so as cargo builds it next to the runner (it may not be built).
pub fn ptalloc_lib() -> PathBuf {
    bin_dir().join("libptalloc.so")
}

/// Debian's allocators in a fixed order, each with its library, or None if not installed.
pub fn packaged() -> Vec<(&'static str, Option<PathBuf>)> {
    PACKAGED.iter().map(|(name, files)| (*name, find_lib(files))).collect()
}

fn find_lib(names: &[&str]) -> Option<PathBuf> {
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"] {
        for n in names {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}
