//! Where the runners find the allocators they preload: libptalloc.so next to the runner (cargo
//! builds both into the same target directory), and Debian's packaged allocators where Debian
//! installs them.

use std::path::{Path, PathBuf};

use ptalloc::CHUNK_CHECK_MARK;

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

/// Whether the library at `path` was built with the chunk checks: cargo builds it so for an
/// `--all-targets` build (feature `debug-checks`, which the tests turn on), into
/// the same file `cargo build --release` writes, and larson spent 12% of its samples in
/// those checks. None when the file cannot be read.
pub fn has_chunk_checks(path: &Path) -> Option<bool> {
    let bytes = std::fs::read(path).ok()?;
    let mark = CHUNK_CHECK_MARK.as_bytes();
    Some(bytes.windows(mark.len()).any(|w| w == mark))
}

/// A warning for each of `libs` built with the chunk checks, on stderr: its times are not
/// those of the library a user preloads.
pub fn warn_if_checked<'a>(runner: &str, libs: impl IntoIterator<Item = &'a Path>) {
    for lib in libs {
        if has_chunk_checks(lib) == Some(true) {
            eprintln!(
                "{runner}: warning: {} has the chunk checks of a test build compiled in; \
                 rebuild it with cargo build --release --workspace before measuring",
                lib.display()
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_checks_are_found_by_their_message() {
        let dir = std::env::temp_dir().join(format!("ptalloc-checks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let checked = dir.join("checked.so");
        let plain = dir.join("plain.so");
        let mut bytes = b"\x7fELF....".to_vec();
        bytes.extend_from_slice(CHUNK_CHECK_MARK.as_bytes());
        std::fs::write(&checked, &bytes).unwrap();
        std::fs::write(&plain, b"\x7fELF....chunk check: other").unwrap();
        assert_eq!(has_chunk_checks(&checked), Some(true));
        assert_eq!(has_chunk_checks(&plain), Some(false));
        assert_eq!(has_chunk_checks(&dir.join("missing.so")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
