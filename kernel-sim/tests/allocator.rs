//! ptalloc running on the simulated kernel: the allocator's model-based random test and heap
//! checker, single-threaded and with 8 threads sharing one model, and the kernel's view of
//! what the allocator does (an mmap per large block, RSS, faults).

use std::sync::{Arc, Mutex};

use kernel_sim::{SimKernel, Syscall};
use ptalloc::Malloc;
use ptalloc_testkit::model::{Mix, Model};

// SAFETY: the only Malloc<SimKernel> in this test binary.
static SIM_MALLOC: Malloc<SimKernel> = unsafe { Malloc::new(SimKernel::new()) };

/// The tests share the allocator and the default machine, and look at its counters.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn machine() -> &'static kernel_sim::Machine {
    SIM_MALLOC.kernel().machine()
}

#[test]
fn model_single_threaded() {
    let _g = serial();
    let model = Model::new(&SIM_MALLOC, 2000);
    let mix = Mix { max_size: 4 << 20, ..Mix::default() };
    let ops = std::env::var("KSIM_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 30_000 } else { 300_000 });
    let stats = model.run_random(&mix, 0x5eed, ops, 1000).unwrap();
    println!("{stats:?}");
    model.drain(&mut Default::default()).unwrap();
    SIM_MALLOC.check_heap().unwrap();
    SIM_MALLOC.malloc_trim(0);
    let c = machine().counters();
    println!("{c:#?}");
    assert!(c.calls(Syscall::Mmap) > 0 && c.calls(Syscall::Brk) > 0);
    assert!(c.faults > 0 && c.hiwater_rss > c.rss);
    machine().check().unwrap();
}

#[test]
fn model_eight_threads_share_blocks() {
    let _g = serial();
    let model = Arc::new(Model::new(&SIM_MALLOC, 4000));
    let mix = Mix { slots: 4000, max_size: 4 << 20, ..Mix::default() };
    let ops = std::env::var("KSIM_MODEL_THREAD_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 5_000 } else { 40_000 });
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let model = model.clone();
            std::thread::spawn(move || model.run_random(&mix, 1000 + t, ops, 2000))
        })
        .collect();
    for t in threads {
        let stats = t.join().unwrap().unwrap();
        assert!(stats.frees > 0);
    }
    model.drain(&mut Default::default()).unwrap();
    SIM_MALLOC.check_heap().unwrap();
    let c = machine().counters();
    assert!(c.calls(Syscall::Mprotect) > 0, "non-main arenas grow their heaps with mprotect");
    machine().check().unwrap();
}

#[test]
fn a_large_block_is_an_mmap_and_freeing_it_unmaps() {
    let _g = serial();
    let m = machine();
    SIM_MALLOC.mallopt(ptalloc::M_MMAP_THRESHOLD, 128 << 10);
    // Larger than a whole non-main heap (64 MiB), so no arena's top could serve it, whatever
    // earlier tests left there: only its own mmap can.
    let size = 72 << 20;
    // Warm up: the thread's cache and the allocator's own set-up come from the heap.
    // SAFETY: freeing what we just allocated.
    unsafe { SIM_MALLOC.free(SIM_MALLOC.malloc(16)) };
    let c0 = m.counters();
    let p = SIM_MALLOC.malloc(size);
    assert!(!p.is_null());
    let c1 = m.counters();
    assert_eq!(c1.calls(Syscall::Mmap), c0.calls(Syscall::Mmap) + 1);
    let info = m.vma_at(p as usize).unwrap();
    assert!(info.end - info.start >= size);
    // Nothing of it is resident but the page the chunk header was written to; touching the
    // rest costs one fault per page. (Counted on the block's own VMA: the allocator may
    // trim its heaps at the same time.)
    assert_eq!(info.stats.resident, 4096);
    // SAFETY: a live block of `size` bytes.
    unsafe {
        for i in (0..size).step_by(4096) {
            p.add(i).write_volatile(1);
        }
    }
    let c2 = m.counters();
    assert_eq!(m.vma_at(p as usize).unwrap().stats.resident as usize, size);
    assert!(c2.faults - c1.faults >= (size / 4096 - 1) as u64);
    // SAFETY: freeing the block we allocated.
    unsafe { SIM_MALLOC.free(p) };
    let c3 = m.counters();
    assert_eq!(c3.calls(Syscall::Munmap), c2.calls(Syscall::Munmap) + 1);
    assert!(m.vma_at(p as usize).is_none());
    assert!(c3.rss_anon + size / 4096 <= c2.rss_anon);
    m.check().unwrap();
}
