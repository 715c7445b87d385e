//! Demand paging: faults, RSS and frames, as a program touching memory sees them.

use kernel_sim::{Config, Machine, MachineBox, MREMAP_FIXED, MREMAP_MAYMOVE};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

fn machine() -> MachineBox {
    Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap()
}

/// Write `v` at `addr` of a test's machine, faulting the page in as a program would.
///
/// # Safety
/// `addr` is 8-byte aligned and lies in a mapping of the test's own machine that allows
/// writes (or that the fault will make so: a stack growing down to it), which no one else
/// uses.
unsafe fn write(addr: usize, v: u64) {
    // SAFETY: the caller's promise.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

/// Read the word at `addr` of a test's machine.
///
/// # Safety
/// As for `write`, with a mapping that allows reads.
unsafe fn read(addr: usize) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { (addr as *const u64).read_volatile() }
}

#[test]
fn touching_n_pages_costs_n_faults_and_n_pages_of_rss() {
    let m = machine();
    let n = 64;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, n * PAGE, RW, ANON, -1, 0) }.unwrap();
    let c0 = m.counters();
    for i in 0..n {
        // SAFETY: in the RW mapping just made.
        unsafe { write(p + i * PAGE + 8 * i, i as u64) };
    }
    let c1 = m.counters();
    assert_eq!(c1.faults - c0.faults, n as u64, "one fault per page");
    assert_eq!(c1.rss_anon - c0.rss_anon, n);
    assert_eq!(c1.nr_anon_pages - c0.nr_anon_pages, n);
    // Touching them again costs nothing.
    for i in 0..n {
        // SAFETY: as above.
        unsafe {
            assert_eq!(read(p + i * PAGE + 8 * i), i as u64);
            write(p + i * PAGE, 7);
        }
    }
    assert_eq!(m.counters().faults, c1.faults);
    m.check().unwrap();

    // MADV_DONTNEED gives half of them back; they read as zero and fault again.
    // SAFETY: the machine is this test's own, and the mapping is only touched through the
    // raw addresses this test made, which expect the contents gone.
    unsafe { m.madvise(p, n / 2 * PAGE, libc::MADV_DONTNEED) }.unwrap();
    let c2 = m.counters();
    assert_eq!(c2.rss_anon, c1.rss_anon - n / 2);
    assert_eq!(c2.free_pages, c1.free_pages + n / 2, "frames go back to the buddy allocator");
    assert!(c2.hiwater_rss >= c1.rss);
    for i in 0..n / 2 {
        // SAFETY: still in the RW mapping.
        assert_eq!(unsafe { read(p + i * PAGE + 8 * i) }, 0, "dropped page reads as zero");
    }
    let c3 = m.counters();
    assert_eq!(c3.faults - c2.faults, (n / 2) as u64, "each dropped page faults again");
    assert_eq!(c3.rss_anon, c2.rss_anon, "reads map the zero page, not RSS");
    for i in 0..n / 2 {
        // SAFETY: as above.
        unsafe { write(p + i * PAGE, 1) };
    }
    let c4 = m.counters();
    assert_eq!(c4.faults - c3.faults, (n / 2) as u64, "a write to the zero page copies");
    assert_eq!(c4.rss_anon, c1.rss_anon);
    m.check().unwrap();

    // munmap gives everything back: the pages, and the PTE table that mapped only them
    // (tables that also cover space of other VMAs, here the stack's, stay, as in Linux).
    // SAFETY: the machine is this test's own, and the mapping is not touched again.
    unsafe { m.munmap(p, n * PAGE) }.unwrap();
    let c5 = m.counters();
    assert_eq!(c5.rss_anon, c0.rss_anon);
    assert!(c5.pgtables_bytes < c4.pgtables_bytes, "the PTE table was freed");
    let kept_tables = (c5.pgtables_bytes - c0.pgtables_bytes) / PAGE;
    // The anon_vma's slab page stays cached in its (now empty) slab.
    let kept_slabs = c5.nr_slab - c0.nr_slab;
    assert_eq!(c5.free_pages + kept_tables + kept_slabs, c0.free_pages, "every other frame is back");
    m.check().unwrap();
}

#[test]
fn reads_map_the_zero_page() {
    let m = machine();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 16 * PAGE, RW, ANON, -1, 0) }.unwrap();
    let c0 = m.counters();
    for i in 0..16 {
        // SAFETY: in the mapping just made.
        assert_eq!(unsafe { read(p + i * PAGE) }, 0);
    }
    let c1 = m.counters();
    assert_eq!(c1.faults - c0.faults, 16);
    assert_eq!(c1.rss, c0.rss);
    assert_eq!(c1.free_pages, c0.free_pages - (c1.pgtables_bytes - c0.pgtables_bytes) / PAGE);
    let mut vec = [0u8; 16];
    m.mincore(p, 16 * PAGE, &mut vec).unwrap();
    assert!(vec.iter().all(|&v| v == 1), "zero-page PTEs are resident for mincore");
    let info = m.vma_at(p).unwrap();
    assert_eq!(info.zero_pages, 16);
    assert_eq!(info.anon_vma, 0, "read faults give a VMA no anon_vma");
    m.check().unwrap();
}

#[test]
fn mprotect_changes_present_pages_and_keeps_them() {
    let m = machine();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 8 * PAGE, RW, ANON, -1, 0) }.unwrap();
    for i in 0..8 {
        // SAFETY: in the RW mapping just made.
        unsafe { write(p + i * PAGE, 100 + i as u64) };
    }
    // SAFETY: the machine is this test's own, and the mapping is only touched through the
    // raw addresses this test made, never while it is PROT_NONE.
    unsafe {
        m.mprotect(p, 8 * PAGE, libc::PROT_NONE).unwrap();
        m.mprotect(p, 8 * PAGE, libc::PROT_READ).unwrap();
    }
    let c = m.counters();
    for i in 0..8 {
        // SAFETY: the mapping is readable again.
        assert_eq!(unsafe { read(p + i * PAGE) }, 100 + i as u64, "contents survive PROT_NONE");
    }
    // SAFETY: the protection only grows.
    unsafe { m.mprotect(p, 8 * PAGE, RW) }.unwrap();
    for i in 0..8 {
        // SAFETY: the mapping is writable again.
        unsafe { write(p + i * PAGE, i as u64) };
    }
    assert_eq!(m.counters().faults, c.faults, "present anonymous pages become writable without a fault");
    m.check().unwrap();
}

#[test]
fn mremap_moves_frames_without_copying() {
    let m = machine();
    // SAFETY: the machine is this test's own, and the MAP_FIXED mapping replaces a page no
    // one has touched.
    let (p, blocker) = unsafe {
        let p = m.mmap(0, 16 * PAGE, RW, ANON, -1, 0).unwrap();
        // Something right after it, so growing must move.
        (p, m.mmap(p + 16 * PAGE, PAGE, libc::PROT_READ, ANON | libc::MAP_FIXED, -1, 0).unwrap())
    };
    for i in 0..16 {
        // SAFETY: in the RW mapping just made.
        unsafe { write(p + i * PAGE, 0xabc0 + i as u64) };
    }
    let c0 = m.counters();
    // SAFETY: the machine is this test's own, and the mapping is only touched through the
    // raw addresses this test made, at its new place after the move.
    let q = unsafe { m.mremap(p, 16 * PAGE, 64 * PAGE, MREMAP_MAYMOVE, 0) }.unwrap();
    assert_ne!(q, p);
    let c1 = m.counters();
    let tables = (c1.pgtables_bytes - c0.pgtables_bytes) / PAGE;
    let slabs = c1.nr_slab.saturating_sub(c0.nr_slab);
    assert_eq!(c1.pgalloc - c0.pgalloc, (tables + slabs) as u64, "no page was copied");
    assert_eq!(c1.rss_anon, c0.rss_anon);
    for i in 0..16 {
        // SAFETY: the moved mapping.
        assert_eq!(unsafe { read(q + i * PAGE) }, 0xabc0 + i as u64);
    }
    assert_eq!(m.counters().faults, c1.faults, "moved pages are mapped at the new place");
    assert!(m.vma_at(p).is_none());
    // Move it back over the blocker's neighbourhood with MREMAP_FIXED.
    // SAFETY: as for the first move; the range at the destination holds nothing anyone uses.
    let r = unsafe { m.mremap(q, 64 * PAGE, 64 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, blocker + 16 * PAGE) }
        .unwrap();
    assert_eq!(r, blocker + 16 * PAGE);
    // SAFETY: the mapping at its last place.
    assert_eq!(unsafe { read(r + 3 * PAGE) }, 0xabc3);
    m.check().unwrap();
}

#[test]
fn shared_anonymous_memory_keeps_its_pages_in_the_inode() {
    let m = machine();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 8 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) }.unwrap();
    for i in 0..8 {
        // SAFETY: in the RW mapping just made.
        unsafe { write(p + i * PAGE, 7 + i as u64) };
    }
    assert_eq!(m.counters().rss_shmem, 8);
    assert_eq!(m.counters().nr_shmem, 8);
    // SAFETY: the machine is this test's own, and the mapping is only touched through the
    // raw addresses this test made (shared memory keeps its contents anyway).
    unsafe { m.madvise(p, 8 * PAGE, libc::MADV_DONTNEED) }.unwrap();
    assert_eq!(m.counters().rss_shmem, 0);
    let mut vec = [0u8; 8];
    m.mincore(p, 8 * PAGE, &mut vec).unwrap();
    assert!(vec.iter().all(|&v| v == 1), "shmem pages stay in the page cache");
    for i in 0..8 {
        // SAFETY: still in the mapping.
        assert_eq!(unsafe { read(p + i * PAGE) }, 7 + i as u64, "shared memory keeps its contents");
    }
    // SAFETY: the machine is this test's own, and the mapping is not touched again.
    unsafe { m.munmap(p, 8 * PAGE) }.unwrap();
    assert_eq!(m.counters().nr_shmem, 0, "the last unmap frees the inode's pages");
    m.check().unwrap();
}

#[test]
fn populate_and_locked_mappings_fault_in_ahead() {
    let m = machine();
    let c0 = m.counters();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 32 * PAGE, RW, ANON | libc::MAP_POPULATE, -1, 0) }.unwrap();
    let c1 = m.counters();
    assert_eq!(c1.rss_anon - c0.rss_anon, 32);
    assert_eq!(c1.faults, c0.faults, "population is not the process's faulting");
    assert_eq!(c1.pgfault - c0.pgfault, 32);
    // SAFETY: in the RW mapping just made.
    unsafe { write(p, 1) };
    assert_eq!(m.counters().faults, c0.faults);
    // SAFETY: the machine is this test's own, and the locked mapping is never touched (and
    // the advice is refused).
    unsafe {
        let l = m.mmap(0, 4 * PAGE, RW, ANON | libc::MAP_LOCKED, -1, 0).unwrap();
        assert_eq!(m.counters().locked_vm, 4);
        assert_eq!(m.madvise(l, PAGE, libc::MADV_DONTNEED), Err(kernel_sim::Errno::EINVAL));
    }
    m.check().unwrap();
}

#[test]
fn the_stack_grows_down_on_a_fault_below_it() {
    let m = machine();
    let mut stack = None;
    m.for_each_vma(|v| {
        if v.name == "[stack]" {
            stack = Some(*v);
        }
    });
    let stack = stack.unwrap();
    let c0 = m.counters();
    // SAFETY: just below the stack, whose growth the fault makes writable.
    unsafe { write(stack.start - 3 * PAGE, 5) };
    let grown = m.vma_at(stack.start - 3 * PAGE).unwrap();
    assert_eq!(grown.start, stack.start - 3 * PAGE);
    assert_eq!(grown.end, stack.end);
    assert_eq!(m.counters().stack_vm, c0.stack_vm + 3);
    m.check().unwrap();
}

#[test]
fn brk_heap_faults_and_shrinks() {
    let m = machine();
    let start = m.current_break();
    // SAFETY: raising the break takes nothing away.
    assert_eq!(unsafe { m.brk(start + 10 * PAGE + 5) }, start + 10 * PAGE + 5);
    for i in 0..11 {
        // SAFETY: in the heap just grown.
        unsafe { write(start + i * PAGE, i as u64) };
    }
    assert_eq!(m.counters().rss_anon, 11);
    let heap = m.vma_at(start).unwrap();
    assert_eq!(heap.name, "[heap]");
    assert_eq!((heap.start, heap.end), (start, start + 11 * PAGE));
    // SAFETY: the machine is this test's own, and the heap above the new break is not
    // touched again.
    assert_eq!(unsafe { m.brk(start + PAGE) }, start + PAGE);
    assert_eq!(m.counters().rss_anon, 1, "shrinking the break unmaps and frees");
    // SAFETY: the heap's first page is still there.
    assert_eq!(unsafe { read(start) }, 0);
    m.check().unwrap();
}

#[test]
fn faults_from_many_threads_are_each_taken_once() {
    let m = machine().leak();
    let threads = 8;
    let per = 256;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, threads * per * PAGE, RW, ANON, -1, 0) }.unwrap();
    let c0 = m.counters();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per {
                    // Interleave the threads' pages so neighbouring faults race.
                    let page = i * threads + t;
                    // SAFETY: in the RW mapping above; each page is one thread's.
                    unsafe { write(p + page * PAGE, page as u64) };
                }
            });
        }
    });
    let c1 = m.counters();
    assert_eq!(c1.faults - c0.faults, (threads * per) as u64);
    assert_eq!(c1.rss_anon - c0.rss_anon, threads * per);
    for page in 0..threads * per {
        // SAFETY: as above, the threads are done.
        assert_eq!(unsafe { read(p + page * PAGE) }, page as u64);
    }
    m.check().unwrap();
}
