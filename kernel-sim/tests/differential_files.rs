//! Differential test of file mappings against the real kernel.
//!
//! One file of 48 pages is made on each side the same way (written a page at a time, then
//! `fsync`ed, so both page caches hold it all, clean, in single pages), and mapped three
//! times at the same offsets within 2 MiB (so fault-around windows line up): A shared and
//! writable over the whole file, B private and writable over pages 8..40, C shared and
//! read-only over pages 0..16. Random reads and writes through the three, `msync`,
//! `fsync`, `MADV_DONTNEED` and `POSIX_FADV_DONTNEED` (after an `fsync`, so that nothing is
//! under write-back on Linux) are applied to the real kernel, in this process, and to the
//! simulation. After every operation each mapping's `Rss`, `Shared_Clean`,
//! `Shared_Dirty`, `Private_Clean`, `Private_Dirty` and `Anonymous` and its `mincore`
//! residency are compared, and after every full `msync` and `fsync` the two files' bytes.
//!
//! Pages dropped by `POSIX_FADV_DONTNEED` are written again in one piece (same bytes,
//! then `fsync`) on both sides before the run goes on: a fault on a page missing from the
//! cache starts read-ahead, whose windows and folio sizes on Linux depend on the device and
//! the file system, which the simulation does not model.
//! The files live in the target directory; on a tmpfs (shmem pages are always dirty and
//! never written back) the test says so and compares nothing.

use std::ffi::CString;
use std::path::PathBuf;

use kernel_sim::{Config, Machine, MachineBox};
use ptalloc_testkit::Rng;

const PAGE: usize = 4096;
const FILE_PAGES: usize = 48;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const TWO_MB: usize = 2 << 20;
const SEEDS: u64 = 6;
const OPS: usize = 250;

/// The three mappings: (file page offset, pages, prot, flags), each at its own 2 MiB.
const MAPS: [(usize, usize, i32, i32); 3] = [
    (0, FILE_PAGES, RW, libc::MAP_SHARED),
    (8, 32, RW, libc::MAP_PRIVATE),
    (0, 16, libc::PROT_READ, libc::MAP_SHARED),
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Read { map: usize, page: usize },
    Write { map: usize, page: usize, v: u8 },
    Msync { first: usize, pages: usize },
    Fsync,
    DontNeed { map: usize, first: usize, pages: usize },
    FadviseDontNeed,
}

fn gen(rng: &mut Rng) -> Op {
    let map = rng.below(3) as usize;
    let pages = MAPS[map].1;
    let page = rng.below(pages as u64) as usize;
    match rng.below(100) {
        0..=39 => Op::Read { map, page },
        40..=74 if map != 2 => Op::Write { map, page, v: rng.below(256) as u8 },
        40..=74 => Op::Read { map, page },
        75..=82 => {
            let first = rng.below(FILE_PAGES as u64) as usize;
            Op::Msync { first, pages: 1 + rng.below((FILE_PAGES - first) as u64) as usize }
        }
        83..=87 => Op::Fsync,
        88..=95 => {
            let first = rng.below(pages as u64) as usize;
            Op::DontNeed { map, first, pages: 1 + rng.below((pages - first).min(12) as u64) as usize }
        }
        _ => Op::FadviseDontNeed,
    }
}

/// What is compared of one mapping, in kB and pages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snap {
    rss: u64,
    shared_clean: u64,
    shared_dirty: u64,
    private_clean: u64,
    private_dirty: u64,
    anonymous: u64,
    resident: Vec<u8>,
}

/// One side: where its mappings are, and how to run an operation and take a snapshot.
trait Side {
    fn base(&self, map: usize) -> usize;
    fn msync(&self, addr: usize, len: usize);
    fn fsync(&self);
    fn madvise_dontneed(&self, addr: usize, len: usize);
    fn fadvise_dontneed(&self);
    fn pwrite_all(&self, bytes: &[u8]);
    fn snap(&self, map: usize) -> Snap;
    fn file_bytes(&self) -> Vec<u8>;
}

fn tmpdir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn on_tmpfs(dir: &std::path::Path) -> bool {
    let c = CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: an all-zero statfs is a valid value of the plain C struct.
    let mut sf: libc::statfs = unsafe { core::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a live statfs buffer.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut sf) }, 0);
    sf.f_type == libc::TMPFS_MAGIC
}

fn initial(seed: u64) -> Vec<u8> {
    (0..FILE_PAGES * PAGE).map(|i| (i as u64 * 31 + seed) as u8 ^ (i / PAGE) as u8).collect()
}

struct Real {
    fd: i32,
    path: PathBuf,
    bases: [usize; 3],
}

impl Real {
    fn new(seed: u64) -> Real {
        let path = tmpdir().join(format!("diff-files-real-{}-{seed}", std::process::id()));
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: plain system calls on a file of our own and on fresh mappings.
        unsafe {
            let fd =
                libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o600);
            assert!(fd >= 0);
            let bytes = initial(seed);
            for (i, chunk) in bytes.chunks(PAGE).enumerate() {
                assert_eq!(libc::pwrite(fd, chunk.as_ptr().cast(), PAGE, (i * PAGE) as i64), PAGE as isize);
            }
            assert_eq!(libc::fsync(fd), 0);
            let r = libc::mmap(
                core::ptr::null_mut(),
                4 * TWO_MB,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(r, libc::MAP_FAILED);
            let top = (r as usize).next_multiple_of(TWO_MB);
            let mut bases = [0; 3];
            for (k, (off, pages, prot, flags)) in MAPS.into_iter().enumerate() {
                let want = top + k * TWO_MB;
                let p = libc::mmap(
                    want as *mut _,
                    pages * PAGE,
                    prot,
                    flags | libc::MAP_FIXED,
                    fd,
                    (off * PAGE) as i64,
                );
                assert_eq!(p as usize, want);
                bases[k] = want;
            }
            Real { fd, path, bases }
        }
    }
}

/// The smaps fields of the real VMA starting at `addr`.
fn real_smaps(addr: usize) -> [u64; 6] {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let head = format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    assert!(lines.next().is_some(), "no VMA at {addr:#x}");
    let mut out = [0u64; 6];
    for l in lines {
        if l.starts_with("VmFlags:") {
            break;
        }
        let names =
            ["Rss:", "Shared_Clean:", "Shared_Dirty:", "Private_Clean:", "Private_Dirty:", "Anonymous:"];
        if let Some(i) = names.iter().position(|n| l.starts_with(n)) {
            out[i] = l.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    out
}

impl Side for Real {
    fn base(&self, map: usize) -> usize {
        self.bases[map]
    }
    fn msync(&self, addr: usize, len: usize) {
        // SAFETY: a range of our own mapping.
        assert_eq!(unsafe { libc::msync(addr as *mut _, len, libc::MS_SYNC) }, 0);
    }
    fn fsync(&self) {
        // SAFETY: our descriptor.
        assert_eq!(unsafe { libc::fsync(self.fd) }, 0);
    }
    fn madvise_dontneed(&self, addr: usize, len: usize) {
        // SAFETY: a range of our own mapping, touched only through raw addresses.
        assert_eq!(unsafe { libc::madvise(addr as *mut _, len, libc::MADV_DONTNEED) }, 0);
    }
    fn fadvise_dontneed(&self) {
        // SAFETY: our descriptor.
        assert_eq!(unsafe { libc::posix_fadvise(self.fd, 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
    }
    fn pwrite_all(&self, bytes: &[u8]) {
        // A page a call, so that the page cache gets single pages, not large folios.
        for (i, chunk) in bytes.chunks(PAGE).enumerate() {
            // SAFETY: our descriptor and a live buffer.
            let n = unsafe { libc::pwrite(self.fd, chunk.as_ptr().cast(), chunk.len(), (i * PAGE) as i64) };
            assert_eq!(n, chunk.len() as isize);
        }
    }
    fn snap(&self, map: usize) -> Snap {
        let [rss, shared_clean, shared_dirty, private_clean, private_dirty, anonymous] =
            real_smaps(self.bases[map]);
        let pages = MAPS[map].1;
        let mut resident = vec![0u8; pages];
        // SAFETY: our own mapping and a vector of one byte a page.
        let r = unsafe { libc::mincore(self.bases[map] as *mut _, pages * PAGE, resident.as_mut_ptr()) };
        assert_eq!(r, 0);
        resident.iter_mut().for_each(|b| *b &= 1);
        Snap { rss, shared_clean, shared_dirty, private_clean, private_dirty, anonymous, resident }
    }
    fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        // SAFETY: our own mappings and descriptor, not used again.
        unsafe {
            for (k, (_, pages, _, _)) in MAPS.into_iter().enumerate() {
                libc::munmap(self.bases[k] as *mut _, pages * PAGE);
            }
            libc::close(self.fd);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Sim {
    m: MachineBox,
    fd: i32,
    path: PathBuf,
    bases: [usize; 3],
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
        let path = tmpdir().join(format!("diff-files-sim-{}-{seed}", std::process::id()));
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let fd = m.open(&c, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600).unwrap();
        for (i, chunk) in initial(seed).chunks(PAGE).enumerate() {
            assert_eq!(m.pwrite(fd, chunk, (i * PAGE) as i64), Ok(PAGE));
        }
        m.fsync(fd).unwrap();
        // SAFETY: the machine is this test's own; MAP_FIXED replaces only the reservation.
        let bases = unsafe {
            let r = m
                .mmap(0, 4 * TWO_MB, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
                .unwrap();
            let top = r.next_multiple_of(TWO_MB);
            let mut bases = [0; 3];
            for (k, (off, pages, prot, flags)) in MAPS.into_iter().enumerate() {
                let want = top + k * TWO_MB;
                assert_eq!(
                    m.mmap(want, pages * PAGE, prot, flags | libc::MAP_FIXED, fd, (off * PAGE) as u64),
                    Ok(want)
                );
                bases[k] = want;
            }
            bases
        };
        Sim { m, fd, path, bases }
    }
}

impl Side for Sim {
    fn base(&self, map: usize) -> usize {
        self.bases[map]
    }
    fn msync(&self, addr: usize, len: usize) {
        self.m.msync(addr, len, libc::MS_SYNC).unwrap();
    }
    fn fsync(&self) {
        self.m.fsync(self.fd).unwrap();
    }
    fn madvise_dontneed(&self, addr: usize, len: usize) {
        // SAFETY: a range of the test's own mapping, touched only through raw addresses.
        unsafe { self.m.madvise(addr, len, libc::MADV_DONTNEED) }.unwrap();
    }
    fn fadvise_dontneed(&self) {
        self.m.posix_fadvise(self.fd, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
    }
    fn pwrite_all(&self, bytes: &[u8]) {
        assert_eq!(self.m.pwrite(self.fd, bytes, 0), Ok(bytes.len()));
    }
    fn snap(&self, map: usize) -> Snap {
        let v = self.m.vma_at(self.bases[map]).unwrap();
        let s = v.stats;
        let pages = MAPS[map].1;
        let mut resident = vec![0u8; pages];
        self.m.mincore(self.bases[map], pages * PAGE, &mut resident).unwrap();
        Snap {
            rss: s.resident >> 10,
            shared_clean: s.shared_clean >> 10,
            shared_dirty: s.shared_dirty >> 10,
            private_clean: s.private_clean >> 10,
            private_dirty: s.private_dirty >> 10,
            anonymous: s.anonymous >> 10,
            resident,
        }
    }
    fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Apply `op` to one side.
fn apply(side: &dyn Side, op: Op) {
    match op {
        Op::Read { map, page } => {
            // SAFETY: a page of the side's own readable mapping.
            unsafe { ((side.base(map) + page * PAGE + 17) as *const u8).read_volatile() };
        }
        Op::Write { map, page, v } => {
            // SAFETY: a page of the side's own writable mapping, reached only by raw address.
            unsafe { ((side.base(map) + page * PAGE + (v as usize % 64) * 8) as *mut u8).write_volatile(v) };
        }
        Op::Msync { first, pages } => side.msync(side.base(0) + first * PAGE, pages * PAGE),
        Op::Fsync => side.fsync(),
        Op::DontNeed { map, first, pages } => {
            side.madvise_dontneed(side.base(map) + first * PAGE, pages * PAGE)
        }
        Op::FadviseDontNeed => {
            side.fsync();
            side.fadvise_dontneed();
        }
    }
}

fn run(seed: u64) {
    let real = Real::new(seed);
    let sim = Sim::new(seed);
    let mut content = initial(seed);
    let mut rng = Rng::new(seed * 7919 + 1);
    let mut log: Vec<Op> = Vec::new();
    for step in 0..OPS {
        let op = gen(&mut rng);
        log.push(op);
        if let Op::Write { map: 0, page, v } = op {
            content[page * PAGE + (v as usize % 64) * 8] = v;
        }
        apply(&real, op);
        apply(&sim, op);
        let what = || format!("seed {seed}, step {step}, ops {:?}", &log[log.len().saturating_sub(8)..]);
        for map in 0..3 {
            assert_eq!(sim.snap(map), real.snap(map), "mapping {map} differs; {}", what());
        }
        let full_sync =
            matches!(op, Op::Fsync | Op::FadviseDontNeed | Op::Msync { first: 0, pages: FILE_PAGES });
        if full_sync {
            let (r, s) = (real.file_bytes(), sim.file_bytes());
            assert!(r == content, "the real file is not what was written; {}", what());
            assert!(s == content, "the simulated file differs from the real one; {}", what());
        }
        if let Op::FadviseDontNeed = op {
            // Back to a fully cached, clean file on both sides (see the module comment).
            for side in [&real as &dyn Side, &sim] {
                side.pwrite_all(&content);
                side.fsync();
            }
            for map in 0..3 {
                assert_eq!(
                    sim.snap(map),
                    real.snap(map),
                    "mapping {map} differs after the refill; {}",
                    what()
                );
            }
        }
    }
    sim.m.check().unwrap();
}

#[test]
fn file_mappings_match_the_real_kernel() {
    let dir = tmpdir();
    if on_tmpfs(&dir) {
        eprintln!("{} is a tmpfs: its pages are shmem, always dirty; nothing compared", dir.display());
        return;
    }
    for seed in 0..SEEDS {
        run(seed);
    }
}
