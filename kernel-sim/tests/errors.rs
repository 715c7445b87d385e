//! Bad arguments: every system call answers with the errno Linux gives and leaves the
//! address space exactly as it was (VMAs, their pages, and the counters).

use kernel_sim::{Config, Counters, Errno, Machine, MachineBox, Rlimits, VmaInfo};
use kernel_sim::{MAP_FIXED_NOREPLACE, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const FIXED: i32 = ANON | libc::MAP_FIXED;

struct World {
    m: MachineBox,
    /// A private RW mapping of 16 pages, a hole of 16 pages, a shared one of 4, a read-only
    /// one of 4, a locked one of 2, in a row from here.
    base: usize,
}

impl World {
    fn private(&self) -> usize {
        self.base
    }
    fn hole(&self) -> usize {
        self.base + 16 * PAGE
    }
    fn shared(&self) -> usize {
        self.base + 32 * PAGE
    }
    fn locked(&self) -> usize {
        self.base + 40 * PAGE
    }
}

fn world() -> World {
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap();
    let base = m.user_base() + (4 << 30);
    // SAFETY: a fresh machine of this test's own: the MAP_FIXED mappings replace nothing.
    unsafe {
        m.mmap(base, 16 * PAGE, RW, FIXED, -1, 0).unwrap();
        m.mmap(
            base + 32 * PAGE,
            4 * PAGE,
            RW,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
        m.mmap(base + 36 * PAGE, 4 * PAGE, libc::PROT_READ, FIXED, -1, 0).unwrap();
        m.mmap(base + 40 * PAGE, 2 * PAGE, RW, FIXED | libc::MAP_LOCKED, -1, 0).unwrap();
    }
    for i in 0..16 {
        // SAFETY: a page of the private RW mapping.
        unsafe { ((base + i * PAGE) as *mut u64).write(i as u64) };
    }
    // SAFETY: a page of the shared RW mapping.
    unsafe { ((base + 32 * PAGE) as *mut u64).write(9) };
    World { m, base }
}

/// Everything a failed call must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    vmas: Vec<VmaInfo>,
    counters: Counters,
}

fn snapshot(m: &Machine) -> Snapshot {
    let mut vmas = Vec::new();
    m.for_each_vma(|v| vmas.push(*v));
    let mut counters = m.counters();
    // The calls themselves are counted, of course.
    counters.syscalls = Default::default();
    counters.syscalls_failed = Default::default();
    Snapshot { vmas, counters }
}

fn expect(w: &World, what: &str, want: Errno, call: impl FnOnce(&Machine) -> Result<(), Errno>) {
    let before = snapshot(&w.m);
    let got = call(&w.m);
    assert_eq!(got, Err(want), "{what}");
    let after = snapshot(&w.m);
    assert_eq!(before, after, "{what}: the failed call changed the address space");
    w.m.check().unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn unchanged_ok(w: &World, what: &str, call: impl FnOnce(&Machine) -> Result<(), Errno>) {
    let before = snapshot(&w.m);
    assert_eq!(call(&w.m), Ok(()), "{what}");
    assert_eq!(before, snapshot(&w.m), "{what}: a call with nothing to do changed the address space");
}

#[test]
fn mmap_bad_arguments() {
    let w = world();
    // SAFETY: the machine is this test's own, and its memory is only touched through the
    // raw addresses the world made; every call here fails or maps without MAP_FIXED.
    unsafe {
        let top = w.m.task_size();
        let mm = |addr: usize, len: usize, prot: i32, flags: i32| {
            move |m: &Machine| m.mmap(addr, len, prot, flags, -1, 0).map(|_| ())
        };
        expect(&w, "zero length", Errno::EINVAL, mm(0, 0, RW, ANON));
        expect(&w, "length that rounds past the top", Errno::ENOMEM, mm(0, usize::MAX - 5, RW, ANON));
        expect(&w, "unaligned offset", Errno::EINVAL, |m| m.mmap(0, PAGE, RW, ANON, -1, 1).map(|_| ()));
        expect(&w, "no MAP_ANONYMOUS and no file", Errno::EBADF, |m| {
            m.mmap(0, PAGE, RW, libc::MAP_PRIVATE, -1, 0).map(|_| ())
        });
        expect(&w, "neither shared nor private", Errno::EINVAL, mm(0, PAGE, RW, libc::MAP_ANONYMOUS));
        expect(
            &w,
            "MAP_SHARED_VALIDATE for anonymous memory",
            Errno::EINVAL,
            mm(0, PAGE, RW, 0x03 | libc::MAP_ANONYMOUS),
        );
        expect(&w, "unaligned MAP_FIXED address", Errno::EINVAL, mm(w.hole() + 1, PAGE, RW, FIXED));
        expect(&w, "MAP_FIXED past the top", Errno::ENOMEM, mm(top - PAGE, 2 * PAGE, RW, FIXED));
        expect(&w, "MAP_FIXED below mmap_min_addr", Errno::EPERM, mm(w.m.user_base(), PAGE, RW, FIXED));
        expect(
            &w,
            "MAP_FIXED_NOREPLACE over a mapping",
            Errno::EEXIST,
            mm(w.hole() - PAGE, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE),
        );
        expect(
            &w,
            "shared stack",
            Errno::EINVAL,
            mm(0, PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN),
        );
        expect(
            &w,
            "MAP_LOCKED beyond RLIMIT_MEMLOCK",
            Errno::EAGAIN,
            mm(0, 16 << 20, RW, ANON | libc::MAP_LOCKED),
        );
        expect(
            &w,
            "MAP_HUGETLB without huge pages",
            Errno::ENOMEM,
            mm(0, 2 << 20, RW, ANON | libc::MAP_HUGETLB),
        );
        expect(&w, "more than RAM under the heuristic", Errno::ENOMEM, mm(0, 1 << 30, RW, ANON));
        // Not an error: the hint is only a hint, and a read-only mapping is not charged.
        assert!(w.m.mmap(w.private(), PAGE, RW, ANON, -1, 0).unwrap() != w.private());
        assert!(w.m.mmap(0, 1 << 30, libc::PROT_READ, ANON, -1, 0).is_ok());
    }
}

#[test]
fn munmap_bad_arguments() {
    let w = world();
    // SAFETY: the machine is this test's own, and its memory is only touched through the
    // raw addresses the world made; every call here fails or has nothing to do.
    unsafe {
        let top = w.m.task_size();
        expect(&w, "unaligned", Errno::EINVAL, |m| m.munmap(w.private() + 8, PAGE));
        expect(&w, "zero length", Errno::EINVAL, |m| m.munmap(w.private(), 0));
        expect(&w, "beyond the top", Errno::EINVAL, |m| m.munmap(top + PAGE, PAGE));
        expect(&w, "length past the top", Errno::EINVAL, |m| m.munmap(w.private(), top));
        unchanged_ok(&w, "nothing mapped there", |m| m.munmap(w.hole(), 16 * PAGE));
    }
}

#[test]
fn mprotect_bad_arguments() {
    let w = world();
    // SAFETY: the machine is this test's own, and its memory is only touched through the
    // raw addresses the world made; every call here fails or has nothing to do.
    unsafe {
        expect(&w, "unaligned", Errno::EINVAL, |m| m.mprotect(w.private() + 1, PAGE, RW));
        expect(&w, "unknown protection bit", Errno::EINVAL, |m| m.mprotect(w.private(), PAGE, 0x10));
        expect(&w, "grows down and up", Errno::EINVAL, |m| m.mprotect(w.private(), PAGE, 0x0300_0000));
        expect(&w, "grows up", Errno::EINVAL, |m| m.mprotect(w.private(), PAGE, 0x0200_0000 | RW));
        expect(&w, "grows down on a non-stack", Errno::EINVAL, |m| {
            m.mprotect(w.private(), PAGE, 0x0100_0000 | RW)
        });
        expect(&w, "unmapped", Errno::ENOMEM, |m| m.mprotect(w.hole(), PAGE, libc::PROT_READ));
        expect(&w, "starting in a hole", Errno::ENOMEM, |m| {
            m.mprotect(w.hole() + 15 * PAGE, 2 * PAGE, libc::PROT_READ)
        });
        expect(&w, "wrapping around", Errno::ENOMEM, |m| m.mprotect(w.private(), usize::MAX - 2 * PAGE, RW));
        unchanged_ok(&w, "zero length", |m| m.mprotect(w.hole(), 0, RW));
        unchanged_ok(&w, "the protection it already has", |m| m.mprotect(w.private(), 16 * PAGE, RW));
    }
}

#[test]
fn madvise_bad_arguments() {
    let w = world();
    // SAFETY: the machine is this test's own, and its memory is only touched through the
    // raw addresses the world made; every call here fails or has nothing to do.
    unsafe {
        expect(&w, "unknown advice", Errno::EINVAL, |m| m.madvise(w.private(), PAGE, 77));
        expect(&w, "unaligned", Errno::EINVAL, |m| m.madvise(w.private() + 1, PAGE, libc::MADV_DONTNEED));
        expect(&w, "length rounds to zero", Errno::EINVAL, |m| {
            m.madvise(w.private(), usize::MAX, libc::MADV_DONTNEED)
        });
        expect(&w, "unmapped", Errno::ENOMEM, |m| m.madvise(w.hole(), 4 * PAGE, libc::MADV_DONTNEED));
        expect(&w, "DONTNEED on locked memory", Errno::EINVAL, |m| {
            m.madvise(w.locked(), PAGE, libc::MADV_DONTNEED)
        });
        expect(&w, "WIPEONFORK on shared memory", Errno::EINVAL, |m| {
            m.madvise(w.shared(), PAGE, libc::MADV_WIPEONFORK)
        });
        expect(&w, "REMOVE on private memory", Errno::EINVAL, |m| {
            m.madvise(w.private(), PAGE, libc::MADV_REMOVE)
        });
        expect(&w, "FREE on shared memory", Errno::EINVAL, |m| m.madvise(w.shared(), PAGE, libc::MADV_FREE));
        unchanged_ok(&w, "zero length", |m| m.madvise(w.hole(), 0, libc::MADV_DONTNEED));
    }
}

#[test]
fn mremap_bad_arguments() {
    let w = world();
    // SAFETY: the machine is this test's own, and its memory is only touched through the
    // raw addresses the world made; every call here fails or has nothing to do.
    unsafe {
        let r = |addr: usize, old: usize, new: usize, flags: i32, new_addr: usize| {
            move |m: &Machine| m.mremap(addr, old, new, flags, new_addr).map(|_| ())
        };
        expect(&w, "unknown flag", Errno::EINVAL, r(w.private(), PAGE, PAGE, 8, 0));
        expect(
            &w,
            "FIXED without MAYMOVE",
            Errno::EINVAL,
            r(w.private(), PAGE, PAGE, MREMAP_FIXED, w.hole()),
        );
        expect(
            &w,
            "DONTUNMAP resizing",
            Errno::EINVAL,
            r(w.private(), PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, w.hole()),
        );
        expect(&w, "unaligned", Errno::EINVAL, r(w.private() + 1, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0));
        expect(&w, "zero new length", Errno::EINVAL, r(w.private(), PAGE, 0, MREMAP_MAYMOVE, 0));
        expect(&w, "unmapped", Errno::EFAULT, r(w.hole(), PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0));
        expect(
            &w,
            "across the end of the VMA",
            Errno::EFAULT,
            r(w.private(), 17 * PAGE, 20 * PAGE, MREMAP_MAYMOVE, 0),
        );
        expect(
            &w,
            "growing in place into a neighbour",
            Errno::ENOMEM,
            r(w.shared(), 4 * PAGE, 5 * PAGE, 0, 0),
        );
        expect(
            &w,
            "destination overlaps the source",
            Errno::EINVAL,
            r(w.private(), 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, w.private() + 2 * PAGE),
        );
        expect(
            &w,
            "unaligned destination",
            Errno::EINVAL,
            r(w.private(), PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, w.hole() + 8),
        );
        expect(&w, "duplicating private memory", Errno::EINVAL, r(w.private(), 0, PAGE, MREMAP_MAYMOVE, 0));
        expect(
            &w,
            "growing locked memory past RLIMIT_MEMLOCK",
            Errno::EAGAIN,
            r(w.locked(), 2 * PAGE, 16 << 20, MREMAP_MAYMOVE, 0),
        );
    }
}

#[test]
fn brk_failures_return_the_old_break() {
    let w = world();
    let start = w.m.current_break();
    let check = |what: &str, addr: usize| {
        let before = snapshot(&w.m);
        // SAFETY: each call fails, leaving the break where it was.
        assert_eq!(unsafe { w.m.brk(addr) }, start, "{what}");
        assert_eq!(before, snapshot(&w.m), "{what}: changed the address space");
    };
    check("below start_brk", start - PAGE);
    // SAFETY: the machine is this test's own, and nothing ever touches the heap or the
    // mapping above it.
    unsafe {
        // A mapping two pages above the break: growth must keep a page clear of it.
        w.m.mmap(start + 2 * PAGE, PAGE, RW, FIXED, -1, 0).unwrap();
        check("into the page below another mapping", start + PAGE + 1);
        assert_eq!(w.m.brk(start + PAGE), start + PAGE, "a page short of it is fine");
        w.m.brk(start);
        // RLIMIT_DATA bounds data_vm: every private writable mapping, the heap included.
        w.m.munmap(start + 2 * PAGE, PAGE).unwrap();
        let data_vm = w.m.counters().data_vm;
        w.m.set_rlimits(Rlimits { data: ((data_vm + 16) * PAGE) as u64, ..w.m.rlimits() });
        assert_eq!(w.m.brk(start + 16 * PAGE), start + 16 * PAGE);
        w.m.brk(start);
    }
    check("beyond RLIMIT_DATA", start + 17 * PAGE);
}

#[test]
fn mincore_bad_arguments() {
    let w = world();
    let mut vec = [0u8; 16];
    expect(&w, "unaligned", Errno::EINVAL, |m| m.mincore(w.private() + 1, PAGE, &mut vec));
    expect(&w, "unmapped", Errno::ENOMEM, |m| m.mincore(w.hole(), PAGE, &mut vec));
    expect(&w, "vector too short", Errno::EFAULT, |m| m.mincore(w.private(), 16 * PAGE, &mut vec[..8]));
}

#[test]
fn map_count_and_address_space_limits() {
    let w = world();
    let m = &w.m;
    let n = m.counters().map_count;
    // SAFETY: the machine is this test's own, and nothing touches the mappings made or
    // unmapped here; the world's are only touched through its raw addresses.
    unsafe {
        // mmap refuses only once map_count exceeds the limit; splitting refuses at the limit.
        m.set_max_map_count(n + 1);
        let a = m.mmap(w.hole(), PAGE, libc::PROT_READ, FIXED, -1, 0).unwrap();
        let b = m.mmap(w.hole() + 2 * PAGE, PAGE, libc::PROT_READ, FIXED, -1, 0).unwrap();
        assert_eq!(m.counters().map_count, n + 2);
        expect(&w, "mmap beyond vm.max_map_count", Errno::ENOMEM, |m| {
            m.mmap(w.hole() + 4 * PAGE, PAGE, libc::PROT_READ, FIXED, -1, 0).map(|_| ())
        });
        expect(&w, "munmap that would split a VMA in three", Errno::ENOMEM, |m| {
            m.munmap(w.private() + PAGE, PAGE)
        });
        expect(&w, "mprotect that would split", Errno::ENOMEM, |m| {
            m.mprotect(w.private(), PAGE, libc::PROT_READ)
        });
        // Unmapping whole VMAs, or merging, is always allowed.
        m.munmap(a, PAGE).unwrap();
        m.munmap(b, PAGE).unwrap();
        m.set_max_map_count(65530);
        // RLIMIT_AS bounds total_vm.
        let total = m.counters().total_vm;
        m.set_rlimits(Rlimits { address_space: ((total + 8) * PAGE) as u64, ..m.rlimits() });
        assert!(m.mmap(0, 8 * PAGE, libc::PROT_READ, ANON, -1, 0).is_ok());
        expect(&w, "mmap beyond RLIMIT_AS", Errno::ENOMEM, |m| {
            m.mmap(0, PAGE, libc::PROT_READ, ANON, -1, 0).map(|_| ())
        });
    }
}
