//! Overcommit modes make allocation failure deterministic.

use kernel_sim::{Config, Errno, Machine, MachineBox, MREMAP_MAYMOVE};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const MB: usize = 1 << 20;

fn machine(mode: u32, ratio: usize) -> MachineBox {
    Machine::boot(&Config {
        phys_bytes: 64 * MB,
        overcommit_memory: mode,
        overcommit_ratio: ratio,
        ..Config::DEFAULT
    })
    .unwrap()
}

#[test]
fn mode_2_refuses_beyond_the_commit_limit() {
    let m = machine(2, 50);
    let c = m.counters();
    assert_eq!(c.commit_limit, c.totalram_pages / 2, "swap (none) + 50% of RAM");
    let mut meminfo = String::new();
    m.write_meminfo(&mut meminfo).unwrap();
    assert!(meminfo.contains(&format!("CommitLimit:    {:>8} kB", c.commit_limit * 4)), "{meminfo}");
    // Fill up to the limit with 1 MiB writable private mappings.
    let mut n = 0;
    // SAFETY: without MAP_FIXED nothing is replaced.
    while unsafe { m.mmap(0, MB, RW, ANON, -1, 0) }.is_ok() {
        n += 1;
    }
    let c = m.counters();
    assert!(c.committed_as as usize <= c.commit_limit);
    assert!((n * MB / PAGE) as isize <= c.committed_as);
    assert!(
        c.committed_as as usize + MB / PAGE > c.commit_limit - c.commit_limit / 10,
        "stopped near the limit"
    );
    // Uncharged mappings still work: read-only, and shared with MAP_NORESERVE... but not
    // private MAP_NORESERVE, which mode 2 ignores.
    // SAFETY: the machine is this test's own, and nothing ever touches its memory.
    unsafe {
        let ro = m.mmap(0, 16 * MB, libc::PROT_READ, ANON, -1, 0).unwrap();
        assert_eq!(m.mmap(0, MB, RW, ANON | libc::MAP_NORESERVE, -1, 0), Err(Errno::ENOMEM));
        // Making the read-only one writable charges it now, and fails.
        assert_eq!(m.mprotect(ro, 2 * MB, RW), Err(Errno::ENOMEM));
        // brk and mremap growth are charged too.
        let b = m.current_break();
        assert_eq!(m.brk(b + 4 * MB), b, "brk fails, returning the old break");
        let one = m.mmap(0, PAGE, libc::PROT_READ, ANON, -1, 0).unwrap();
        m.munmap(one, PAGE).unwrap();
    }
    assert_eq!(m.counters().failed(kernel_sim::Syscall::Brk), 1);
    m.check().unwrap();
}

#[test]
fn mode_2_gives_the_charge_back_on_unmap() {
    let m = machine(2, 50);
    let before = m.counters().committed_as;
    // SAFETY: the machine is this test's own, and nothing ever touches its memory.
    unsafe {
        let p = m.mmap(0, 4 * MB, RW, ANON, -1, 0).unwrap();
        assert_eq!(m.counters().committed_as, before + (4 * MB / PAGE) as isize);
        let q = m.mremap(p, 4 * MB, 6 * MB, MREMAP_MAYMOVE, 0).unwrap();
        assert_eq!(
            m.counters().committed_as,
            before + (6 * MB / PAGE) as isize,
            "mremap charges only the growth"
        );
        m.mprotect(q, 6 * MB, libc::PROT_READ).unwrap();
        assert_eq!(
            m.counters().committed_as,
            before,
            "a never-faulted mapping made read-only gives its charge back"
        );
        m.munmap(q, 6 * MB).unwrap();
        assert_eq!(m.counters().committed_as, before);
    }
    // SAFETY: as above.
    unsafe {
        let s = m.mmap(0, 2 * MB, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0).unwrap();
        assert_eq!(m.counters().committed_as, before + (2 * MB / PAGE) as isize, "shmem is charged whole");
        m.munmap(s, MB).unwrap();
        assert_eq!(
            m.counters().committed_as,
            before + (2 * MB / PAGE) as isize,
            "until its last mapping goes"
        );
        m.munmap(s + MB, MB).unwrap();
    }
    assert_eq!(m.counters().committed_as, before);
    m.check().unwrap();
}

#[test]
fn mode_1_never_refuses_and_mode_0_refuses_only_the_absurd() {
    // SAFETY: without MAP_FIXED nothing is replaced.
    let mmap = |m: &Machine, len: usize| unsafe { m.mmap(0, len, RW, ANON, -1, 0) };
    let m = machine(1, 50);
    assert!(mmap(&m, 1 << 30).is_ok(), "mode 1 overcommits anything");
    let m = machine(0, 50);
    assert_eq!(mmap(&m, 128 * MB), Err(Errno::ENOMEM), "more than RAM at once");
    for _ in 0..4 {
        assert!(mmap(&m, 48 * MB).is_ok(), "each fits, together they overcommit");
    }
    m.set_overcommit(2, 10);
    assert_eq!(mmap(&m, MB), Err(Errno::ENOMEM), "switching to mode 2 at run time");
}
