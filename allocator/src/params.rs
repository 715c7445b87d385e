//! Tunable parameters (glibc's `malloc_par mp_`), `mallopt`, and the environment people
//! already use with glibc: `GLIBC_TUNABLES=glibc.malloc.*` and the `MALLOC_*_` names.
//!
//! The values are atomics because they are read without a lock on allocation paths; they
//! change only through `mallopt`, at initialisation, and by the dynamic mmap threshold.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use crate::bins::{csize2tidx, MAX_FAST_SIZE};
use crate::chunk::{request2size, MALLOC_ALIGN_MASK, MINSIZE, SIZE_SZ};
use crate::tcache::{MAX_TCACHE_COUNT, MAX_TCACHE_SIZE, TCACHE_FILL_COUNT, TCACHE_MAX_BINS};

pub const M_MXFAST: i32 = 1;
pub const M_TRIM_THRESHOLD: i32 = -1;
pub const M_TOP_PAD: i32 = -2;
pub const M_MMAP_THRESHOLD: i32 = -3;
pub const M_MMAP_MAX: i32 = -4;
pub const M_CHECK_ACTION: i32 = -5;
pub const M_PERTURB: i32 = -6;
pub const M_ARENA_TEST: i32 = -7;
pub const M_ARENA_MAX: i32 = -8;

pub(crate) const DEFAULT_MMAP_THRESHOLD_MIN: usize = 128 * 1024;
/// The dynamic threshold never rises above this (32 MiB on 64-bit).
pub(crate) const DEFAULT_MMAP_THRESHOLD_MAX: usize = 4 * 1024 * 1024 * SIZE_SZ;
pub(crate) const DEFAULT_TRIM_THRESHOLD: usize = 128 * 1024;
pub(crate) const DEFAULT_TOP_PAD: usize = 128 * 1024;
pub(crate) const DEFAULT_MMAP_MAX: isize = 65536;
/// Requests up to this size go to fastbins by default.
pub(crate) const DEFAULT_MXFAST: usize = 64 * SIZE_SZ / 4;
/// Arenas per core for 64-bit (`NARENAS_FROM_NCORES`).
pub(crate) const ARENAS_PER_CORE: usize = 8;

/// glibc's `set_max_fast`: the largest chunk size that goes to a fastbin.
pub(crate) const fn max_fast_for(request: usize) -> usize {
    if request <= MALLOC_ALIGN_MASK - SIZE_SZ {
        MINSIZE / 2
    } else {
        (request + SIZE_SZ) & !MALLOC_ALIGN_MASK
    }
}

pub(crate) struct Params {
    pub(crate) trim_threshold: AtomicUsize,
    pub(crate) top_pad: AtomicUsize,
    pub(crate) mmap_threshold: AtomicUsize,
    pub(crate) arena_test: AtomicUsize,
    pub(crate) arena_max: AtomicUsize,
    /// Mmapped chunks in use, the most at once, and the limit on them (a C `int`).
    pub(crate) n_mmaps: AtomicIsize,
    pub(crate) max_n_mmaps: AtomicIsize,
    pub(crate) n_mmaps_max: AtomicIsize,
    /// Set once the user chose any of the thresholds: the dynamic threshold stops moving.
    pub(crate) no_dyn_threshold: AtomicBool,
    pub(crate) mmapped_mem: AtomicUsize,
    pub(crate) max_mmapped_mem: AtomicUsize,
    pub(crate) tcache_bins: AtomicUsize,
    pub(crate) tcache_max_bytes: AtomicUsize,
    pub(crate) tcache_count: AtomicUsize,
    /// The program chose `tcache_count`: every bin holds exactly that many (else small
    /// chunks' bins hold more, see `tcache::TCACHE_BIN_BYTES`).
    pub(crate) tcache_count_set: AtomicBool,
    pub(crate) tcache_unsorted_limit: AtomicUsize,
    /// `global_max_fast`: chunk sizes up to this go to fastbins.
    pub(crate) max_fast: AtomicUsize,
    /// `M_PERTURB`: fill freed memory with this byte and fresh allocations with its complement.
    pub(crate) perturb_byte: AtomicI32,
}

impl Params {
    pub(crate) const fn new() -> Params {
        Params {
            trim_threshold: AtomicUsize::new(DEFAULT_TRIM_THRESHOLD),
            top_pad: AtomicUsize::new(DEFAULT_TOP_PAD),
            mmap_threshold: AtomicUsize::new(DEFAULT_MMAP_THRESHOLD_MIN),
            arena_test: AtomicUsize::new(ARENAS_PER_CORE),
            arena_max: AtomicUsize::new(0),
            n_mmaps: AtomicIsize::new(0),
            max_n_mmaps: AtomicIsize::new(0),
            n_mmaps_max: AtomicIsize::new(DEFAULT_MMAP_MAX),
            no_dyn_threshold: AtomicBool::new(false),
            mmapped_mem: AtomicUsize::new(0),
            max_mmapped_mem: AtomicUsize::new(0),
            tcache_bins: AtomicUsize::new(TCACHE_MAX_BINS),
            tcache_max_bytes: AtomicUsize::new(MAX_TCACHE_SIZE),
            tcache_count: AtomicUsize::new(TCACHE_FILL_COUNT),
            tcache_count_set: AtomicBool::new(false),
            tcache_unsorted_limit: AtomicUsize::new(0),
            max_fast: AtomicUsize::new(max_fast_for(DEFAULT_MXFAST)),
            perturb_byte: AtomicI32::new(0),
        }
    }

    #[inline(always)]
    pub(crate) fn max_fast(&self) -> usize {
        self.max_fast.load(Relaxed)
    }

    /// The fill byte, if perturbing is on: any non-zero `M_PERTURB` turns it on (glibc tests
    /// the whole int), and the fill is its low byte (even when that is 0).
    #[inline(always)]
    pub(crate) fn perturb(&self) -> Option<u8> {
        match self.perturb_byte.load(Relaxed) {
            0 => None,
            v => Some(v as u8),
        }
    }

    pub(crate) fn set_trim_threshold(&self, value: usize) -> bool {
        self.trim_threshold.store(value, Relaxed);
        self.no_dyn_threshold.store(true, Relaxed);
        true
    }

    pub(crate) fn set_top_pad(&self, value: usize) -> bool {
        self.top_pad.store(value, Relaxed);
        self.no_dyn_threshold.store(true, Relaxed);
        true
    }

    pub(crate) fn set_mmap_threshold(&self, value: usize) -> bool {
        self.mmap_threshold.store(value, Relaxed);
        self.no_dyn_threshold.store(true, Relaxed);
        true
    }

    pub(crate) fn set_mmaps_max(&self, value: i32) -> bool {
        self.n_mmaps_max.store(value as isize, Relaxed);
        self.no_dyn_threshold.store(true, Relaxed);
        true
    }

    pub(crate) fn set_perturb_byte(&self, value: i32) -> bool {
        self.perturb_byte.store(value, Relaxed);
        true
    }

    pub(crate) fn set_arena_test(&self, value: usize) -> bool {
        self.arena_test.store(value, Relaxed);
        true
    }

    pub(crate) fn set_arena_max(&self, value: usize) -> bool {
        self.arena_max.store(value, Relaxed);
        true
    }

    pub(crate) fn set_tcache_max(&self, value: usize) -> bool {
        if value > MAX_TCACHE_SIZE {
            return false;
        }
        self.tcache_max_bytes.store(value, Relaxed);
        self.tcache_bins.store(csize2tidx(request2size(value)) + 1, Relaxed);
        true
    }

    pub(crate) fn set_tcache_count(&self, value: usize) -> bool {
        if value > MAX_TCACHE_COUNT {
            return false;
        }
        self.tcache_count.store(value, Relaxed);
        self.tcache_count_set.store(true, Relaxed);
        true
    }

    pub(crate) fn set_tcache_unsorted_limit(&self, value: usize) -> bool {
        self.tcache_unsorted_limit.store(value, Relaxed);
        true
    }

    pub(crate) fn set_mxfast(&self, value: usize) -> bool {
        if value > MAX_FAST_SIZE {
            return false;
        }
        self.max_fast.store(max_fast_for(value), Relaxed);
        true
    }

    /// `mallopt(param, value)` once the caller has consolidated the main arena's fastbins
    /// (required before `max_fast` changes). Returns 1 on success, 0 on a rejected value.
    /// Negative values reach the size-typed setters as huge sizes, as in C.
    pub(crate) fn mallopt(&self, param: i32, value: i32) -> i32 {
        let as_size = value as isize as usize;
        let ok = match param {
            M_MXFAST => self.set_mxfast(as_size),
            M_TRIM_THRESHOLD => self.set_trim_threshold(as_size),
            M_TOP_PAD => self.set_top_pad(as_size),
            M_MMAP_THRESHOLD => self.set_mmap_threshold(as_size),
            M_MMAP_MAX => self.set_mmaps_max(value),
            M_CHECK_ACTION => true,
            M_PERTURB => self.set_perturb_byte(value),
            M_ARENA_TEST => value <= 0 || self.set_arena_test(as_size),
            M_ARENA_MAX => value <= 0 || self.set_arena_max(as_size),
            _ => true,
        };
        ok as i32
    }

    /// Apply the environment's settings, as glibc's tunables do at start-up.
    pub(crate) fn apply(&self, t: &Tunables) {
        // glibc's order of callbacks, which matters for mxfast vs. tcache only in theory.
        if let Some(v) = t.get(Tunable::TopPad) {
            self.set_top_pad(v as usize);
        }
        if let Some(v) = t.get(Tunable::Perturb) {
            self.set_perturb_byte(v as i32);
        }
        if let Some(v) = t.get(Tunable::MmapThreshold) {
            self.set_mmap_threshold(v as usize);
        }
        if let Some(v) = t.get(Tunable::TrimThreshold) {
            self.set_trim_threshold(v as usize);
        }
        if let Some(v) = t.get(Tunable::MmapMax) {
            self.set_mmaps_max(v as i32);
        }
        if let Some(v) = t.get(Tunable::ArenaMax) {
            self.set_arena_max(v as usize);
        }
        if let Some(v) = t.get(Tunable::ArenaTest) {
            self.set_arena_test(v as usize);
        }
        if let Some(v) = t.get(Tunable::TcacheMax) {
            self.set_tcache_max(v as usize);
        }
        if let Some(v) = t.get(Tunable::TcacheCount) {
            self.set_tcache_count(v as usize);
        }
        if let Some(v) = t.get(Tunable::TcacheUnsortedLimit) {
            self.set_tcache_unsorted_limit(v as usize);
        }
        if let Some(v) = t.get(Tunable::Mxfast) {
            self.set_mxfast(v as usize);
        }
    }
}

/// The malloc tunables glibc 2.36 knows, with their `GLIBC_TUNABLES` names, environment
/// aliases and bounds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tunable {
    Check,
    TopPad,
    Perturb,
    MmapThreshold,
    TrimThreshold,
    MmapMax,
    ArenaMax,
    ArenaTest,
    TcacheMax,
    TcacheCount,
    TcacheUnsortedLimit,
    Mxfast,
    Hugetlb,
}

#[derive(Clone, Copy)]
enum Kind {
    Size { min: u64 },
    Int32 { min: i64, max: i64 },
}

struct TunableInfo {
    tunable: Tunable,
    name: &'static [u8],
    alias: Option<&'static [u8]>,
    kind: Kind,
}

const SIZE: Kind = Kind::Size { min: 0 };

const TUNABLES: [TunableInfo; 13] = [
    TunableInfo {
        tunable: Tunable::Check,
        name: b"glibc.malloc.check",
        alias: Some(b"MALLOC_CHECK_"),
        kind: Kind::Int32 { min: 0, max: 3 },
    },
    TunableInfo {
        tunable: Tunable::TopPad,
        name: b"glibc.malloc.top_pad",
        alias: Some(b"MALLOC_TOP_PAD_"),
        kind: SIZE,
    },
    TunableInfo {
        tunable: Tunable::Perturb,
        name: b"glibc.malloc.perturb",
        alias: Some(b"MALLOC_PERTURB_"),
        kind: Kind::Int32 { min: 0, max: 0xff },
    },
    TunableInfo {
        tunable: Tunable::MmapThreshold,
        name: b"glibc.malloc.mmap_threshold",
        alias: Some(b"MALLOC_MMAP_THRESHOLD_"),
        kind: SIZE,
    },
    TunableInfo {
        tunable: Tunable::TrimThreshold,
        name: b"glibc.malloc.trim_threshold",
        alias: Some(b"MALLOC_TRIM_THRESHOLD_"),
        kind: SIZE,
    },
    TunableInfo {
        tunable: Tunable::MmapMax,
        name: b"glibc.malloc.mmap_max",
        alias: Some(b"MALLOC_MMAP_MAX_"),
        kind: Kind::Int32 { min: 0, max: i32::MAX as i64 },
    },
    TunableInfo {
        tunable: Tunable::ArenaMax,
        name: b"glibc.malloc.arena_max",
        alias: Some(b"MALLOC_ARENA_MAX"),
        kind: Kind::Size { min: 1 },
    },
    TunableInfo {
        tunable: Tunable::ArenaTest,
        name: b"glibc.malloc.arena_test",
        alias: Some(b"MALLOC_ARENA_TEST"),
        kind: Kind::Size { min: 1 },
    },
    TunableInfo { tunable: Tunable::TcacheMax, name: b"glibc.malloc.tcache_max", alias: None, kind: SIZE },
    TunableInfo {
        tunable: Tunable::TcacheCount,
        name: b"glibc.malloc.tcache_count",
        alias: None,
        kind: SIZE,
    },
    TunableInfo {
        tunable: Tunable::TcacheUnsortedLimit,
        name: b"glibc.malloc.tcache_unsorted_limit",
        alias: None,
        kind: SIZE,
    },
    TunableInfo { tunable: Tunable::Mxfast, name: b"glibc.malloc.mxfast", alias: None, kind: SIZE },
    TunableInfo { tunable: Tunable::Hugetlb, name: b"glibc.malloc.hugetlb", alias: None, kind: SIZE },
];

/// Values found in the environment, before they are applied.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Tunables {
    values: [Option<u64>; 13],
}

impl Tunables {
    pub(crate) fn get(&self, t: Tunable) -> Option<u64> {
        self.values[t as usize]
    }

    /// Record `text` for the tunable if it parses within bounds; otherwise leave it unset,
    /// as glibc ignores out-of-range values.
    fn set(&mut self, index: usize, text: &[u8]) {
        let value = strtoul(text);
        let ok = match TUNABLES[index].kind {
            Kind::Size { min } => value >= min,
            Kind::Int32 { min, max } => {
                let signed = value as i64;
                signed >= min && signed <= max
            }
        };
        if ok {
            self.values[index] = Some(value);
        }
    }

    /// Read the settings from an environment lookup. Aliases (`MALLOC_TOP_PAD_=...`) are
    /// read first; `GLIBC_TUNABLES` overrides them, as in glibc.
    pub(crate) fn from_env<'a>(getenv: impl Fn(&[u8]) -> Option<&'a [u8]>) -> Tunables {
        let mut t = Tunables::default();
        for (i, info) in TUNABLES.iter().enumerate() {
            if let Some(alias) = info.alias {
                if let Some(value) = getenv(alias) {
                    t.set(i, value);
                }
            }
        }
        if let Some(spec) = getenv(b"GLIBC_TUNABLES") {
            t.parse_glibc_tunables(spec);
        }
        t
    }

    /// Parse `name=value:name=value...`; unknown names and entries without `=` are skipped.
    pub(crate) fn parse_glibc_tunables(&mut self, spec: &[u8]) {
        for entry in spec.split(|&b| b == b':') {
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, value) = (&entry[..eq], &entry[eq + 1..]);
            if let Some(i) = TUNABLES.iter().position(|info| info.name == name) {
                debug_assert_eq!(TUNABLES[i].tunable as usize, i);
                self.set(i, value);
            }
        }
    }
}

/// glibc's `_dl_strtoul`: optional blanks and sign, then decimal, `0x` hex or `0` octal,
/// stopping at the first character that is not a digit; saturates on overflow.
pub(crate) fn strtoul(text: &[u8]) -> u64 {
    let mut i = 0;
    while i < text.len() && (text[i] == b' ' || text[i] == b'\t') {
        i += 1;
    }
    let mut negative = false;
    if i < text.len() && (text[i] == b'-' || text[i] == b'+') {
        negative = text[i] == b'-';
        i += 1;
    }
    if i >= text.len() || !text[i].is_ascii_digit() {
        return 0;
    }
    let mut base = 10u64;
    if text[i] == b'0' {
        if i + 1 < text.len() && (text[i + 1] == b'x' || text[i + 1] == b'X') {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let mut result: u64 = 0;
    while i < text.len() {
        let digit = match text[i] {
            c @ b'0'..=b'9' if u64::from(c - b'0') < base => u64::from(c - b'0'),
            c @ b'a'..=b'f' if base == 16 => u64::from(c - b'a' + 10),
            c @ b'A'..=b'F' if base == 16 => u64::from(c - b'A' + 10),
            _ => break,
        };
        if result >= (u64::MAX - digit) / base {
            return u64::MAX;
        }
        result = result * base + digit;
        i += 1;
    }
    if negative {
        result.wrapping_neg()
    } else {
        result
    }
}

/// The settings of the process environment. Secure-execution (setuid) processes ignore
/// them, as glibc's malloc tunables are `SXID_IGNORE`.
pub(crate) fn tunables_from_process_env() -> Tunables {
    if crate::prim::secure_mode() {
        return Tunables::default();
    }
    // SAFETY: the values are parsed into numbers before from_env returns; programs that change
    // their environment while another thread allocates break glibc's getenv too.
    Tunables::from_env(|name| unsafe { crate::prim::getenv(name) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_follows_glibc() {
        assert_eq!(strtoul(b"4096"), 4096);
        assert_eq!(strtoul(b"0x1000"), 4096);
        assert_eq!(strtoul(b"010"), 8);
        assert_eq!(strtoul(b"  12abc"), 12);
        assert_eq!(strtoul(b"abc"), 0);
        assert_eq!(strtoul(b"-1"), u64::MAX);
        assert_eq!(strtoul(b"+7"), 7);
        assert_eq!(strtoul(b"99999999999999999999999"), u64::MAX);
        assert_eq!(strtoul(b""), 0);
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&[u8]) -> Option<&'a [u8]> + 'a {
        move |name| pairs.iter().find(|(k, _)| k.as_bytes() == name).map(|(_, v)| v.as_bytes())
    }

    #[test]
    fn glibc_tunables_string_is_parsed() {
        let t = Tunables::from_env(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=65536:glibc.malloc.tcache_count=0:bogus:glibc.other=1:glibc.malloc.mxfast=0x20",
        )]));
        assert_eq!(t.get(Tunable::MmapThreshold), Some(65536));
        assert_eq!(t.get(Tunable::TcacheCount), Some(0));
        assert_eq!(t.get(Tunable::Mxfast), Some(32));
        assert_eq!(t.get(Tunable::TopPad), None);
    }

    #[test]
    fn tunables_override_aliases_and_bounds_are_enforced() {
        let t = Tunables::from_env(env(&[
            ("MALLOC_TOP_PAD_", "1"),
            ("MALLOC_ARENA_MAX", "0"),
            ("MALLOC_PERTURB_", "300"),
            ("MALLOC_MMAP_MAX_", "-1"),
            ("MALLOC_TRIM_THRESHOLD_", "777"),
            ("GLIBC_TUNABLES", "glibc.malloc.top_pad=2"),
        ]));
        assert_eq!(t.get(Tunable::TopPad), Some(2));
        assert_eq!(t.get(Tunable::ArenaMax), None, "arena_max has minval 1");
        assert_eq!(t.get(Tunable::Perturb), None, "perturb has maxval 0xff");
        assert_eq!(t.get(Tunable::MmapMax), None, "mmap_max has minval 0");
        assert_eq!(t.get(Tunable::TrimThreshold), Some(777));
    }

    #[test]
    fn mallopt_semantics() {
        let p = Params::new();
        assert_eq!(p.mallopt(M_MXFAST, 64), 1);
        assert_eq!(p.max_fast(), 64);
        assert_eq!(p.mallopt(M_MXFAST, 161), 0);
        assert_eq!(p.mallopt(M_MXFAST, -1), 0);
        assert_eq!(p.mallopt(M_MXFAST, 0), 1);
        assert_eq!(p.max_fast(), 16, "mxfast 0 leaves no chunk size small enough");
        assert!(!p.no_dyn_threshold.load(Relaxed));
        assert_eq!(p.mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
        assert!(p.no_dyn_threshold.load(Relaxed));
        assert_eq!(p.mmap_threshold.load(Relaxed), 1 << 20);
        assert_eq!(p.mallopt(M_ARENA_MAX, 0), 1);
        assert_eq!(p.arena_max.load(Relaxed), 0);
        assert_eq!(p.mallopt(M_ARENA_MAX, 3), 1);
        assert_eq!(p.arena_max.load(Relaxed), 3);
        assert_eq!(p.mallopt(12345, 1), 1, "unknown parameters are accepted and ignored");
    }

    #[test]
    fn tcache_limits() {
        let p = Params::new();
        assert!(p.set_tcache_max(0));
        assert_eq!(p.tcache_bins.load(Relaxed), 1);
        assert!(p.set_tcache_max(1032));
        assert_eq!(p.tcache_bins.load(Relaxed), 64);
        assert!(!p.set_tcache_max(1033));
        assert!(p.set_tcache_count(65535));
        assert!(!p.set_tcache_count(65536));
    }
}
