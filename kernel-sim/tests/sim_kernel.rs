//! `SimKernel` as `ptalloc::Kernel`: every call lands on its machine with Linux's semantics.

use kernel_sim::{Config, Machine, SimKernel, Syscall};
use ptalloc::{Errno, Kernel};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

#[test]
fn kernel_calls_are_the_machines_system_calls() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap().leak();
    let k = SimKernel::on(m);
    assert_eq!(k.page_size(), PAGE);
    assert!(core::ptr::eq(k.machine(), m));

    // SAFETY: the machine is this test's own; nothing but this test uses its memory, and
    // every range given back below was mapped here and is not touched again.
    unsafe {
        // sbrk through brk: 0 reads, growth returns the old break, failure is ENOMEM.
        let start = k.sbrk(0).unwrap();
        assert_eq!(start, m.counters().start_brk);
        assert_eq!(k.sbrk(3 * PAGE as isize), Ok(start));
        assert_eq!(k.brk(0), start + 3 * PAGE);
        assert_eq!(k.sbrk(-(PAGE as isize)), Ok(start + 3 * PAGE));
        assert_eq!(k.sbrk(-(8 * PAGE as isize)), Err(Errno::ENOMEM), "not below start_brk");
        assert_eq!(k.sbrk(isize::MAX), Err(Errno::ENOMEM));

        // mmap adds MAP_ANONYMOUS itself, as the allocator expects.
        let p = k.mmap(0, 8 * PAGE, RW, libc::MAP_PRIVATE).unwrap();
        (p as *mut u64).write(42);
        let q = k.mremap(p, 8 * PAGE, 64 * PAGE, libc::MREMAP_MAYMOVE).unwrap();
        // The moved page keeps its contents.
        assert_eq!((q as *const u64).read(), 42);
        assert_eq!(k.mprotect(q, PAGE, libc::PROT_READ), Ok(()));
        assert_eq!(k.madvise(q + PAGE, PAGE, libc::MADV_DONTNEED), Ok(()));
        assert_eq!(k.munmap(q, 64 * PAGE), Ok(()));
        assert_eq!(k.mremap(q, PAGE, 2 * PAGE, 0), Err(Errno::EFAULT));
    }
    let c = m.counters();
    assert_eq!(c.calls(Syscall::Mmap), 1);
    assert_eq!(c.calls(Syscall::Mremap), 2);
    assert_eq!(c.failed(Syscall::Mremap), 1);
    m.check().unwrap();

    // Each thread has its own slot, stable for the thread's life.
    let here = SimKernel::thread_slot();
    assert_eq!(here, SimKernel::thread_slot());
    let there = std::thread::spawn(|| SimKernel::thread_slot() as usize).join().unwrap();
    assert_ne!(here as usize, there);
}
