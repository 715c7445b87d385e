//! Introspection: `mallinfo2`/`mallinfo`, `malloc_stats` and `malloc_info` in glibc's
//! formats, and ptalloc's own counters of what it asked the kernel for.
//!
//! Figures are gathered under each arena's lock into stack memory and written out after
//! the lock is dropped, so output (which may allocate, for a `FILE *`) never happens with
//! an arena held.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arena::ArenaState;
use crate::bins::{NBINS, NFASTBINS};
use crate::chunk::MALLOC_ALIGNMENT;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;

/// glibc's `struct mallinfo2` (all fields `size_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo2 {
    /// Bytes obtained from the kernel for arenas (brk heap and heaps).
    pub arena: usize,
    /// Free chunks, top included.
    pub ordblks: usize,
    /// Free chunks in fastbins.
    pub smblks: usize,
    /// Chunks allocated with their own mmap.
    pub hblks: usize,
    /// Bytes in those mmapped chunks.
    pub hblkhd: usize,
    /// Always 0 (as in glibc).
    pub usmblks: usize,
    /// Bytes in fastbin chunks.
    pub fsmblks: usize,
    /// Bytes in use in arenas (chunks in thread caches count as in use).
    pub uordblks: usize,
    /// Free bytes in arenas, top included.
    pub fordblks: usize,
    /// The main arena's top: what `malloc_trim` could release at most.
    pub keepcost: usize,
}

/// glibc's legacy `struct mallinfo` (fields `int`, truncated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo {
    pub arena: i32,
    pub ordblks: i32,
    pub smblks: i32,
    pub hblks: i32,
    pub hblkhd: i32,
    pub usmblks: i32,
    pub fsmblks: i32,
    pub uordblks: i32,
    pub fordblks: i32,
    pub keepcost: i32,
}

impl From<MallInfo2> for MallInfo {
    fn from(m: MallInfo2) -> MallInfo {
        MallInfo {
            arena: m.arena as i32,
            ordblks: m.ordblks as i32,
            smblks: m.smblks as i32,
            hblks: m.hblks as i32,
            hblkhd: m.hblkhd as i32,
            usmblks: m.usmblks as i32,
            fsmblks: m.fsmblks as i32,
            uordblks: m.uordblks as i32,
            fordblks: m.fordblks as i32,
            keepcost: m.keepcost as i32,
        }
    }
}

/// Counters of the allocator's calls into its kernel.
pub(crate) struct SysStats {
    pub(crate) brk_calls: AtomicU64,
    pub(crate) brk_grown: AtomicU64,
    pub(crate) brk_shrunk: AtomicU64,
    pub(crate) mmap_calls: AtomicU64,
    pub(crate) mmap_bytes: AtomicU64,
    pub(crate) munmap_calls: AtomicU64,
    pub(crate) munmap_bytes: AtomicU64,
    pub(crate) mremap_calls: AtomicU64,
    pub(crate) mremap_grown: AtomicU64,
    pub(crate) mremap_shrunk: AtomicU64,
    pub(crate) mprotect_calls: AtomicU64,
    pub(crate) madvise_calls: AtomicU64,
    pub(crate) madvise_bytes: AtomicU64,
    pub(crate) failed_calls: AtomicU64,
    pub(crate) arenas_created: AtomicU64,
    pub(crate) heaps_created: AtomicU64,
    /// Threads that used the allocator (each got its cache set up).
    pub(crate) threads_seen: AtomicU64,
}

impl SysStats {
    pub(crate) const fn new() -> SysStats {
        SysStats {
            brk_calls: AtomicU64::new(0),
            brk_grown: AtomicU64::new(0),
            brk_shrunk: AtomicU64::new(0),
            mmap_calls: AtomicU64::new(0),
            mmap_bytes: AtomicU64::new(0),
            munmap_calls: AtomicU64::new(0),
            munmap_bytes: AtomicU64::new(0),
            mremap_calls: AtomicU64::new(0),
            mremap_grown: AtomicU64::new(0),
            mremap_shrunk: AtomicU64::new(0),
            mprotect_calls: AtomicU64::new(0),
            madvise_calls: AtomicU64::new(0),
            madvise_bytes: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            arenas_created: AtomicU64::new(0),
            heaps_created: AtomicU64::new(0),
            threads_seen: AtomicU64::new(0),
        }
    }
}

/// A snapshot of what an allocator instance holds and what it asked its kernel for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls that moved the program break, and bytes added and removed by them.
    pub brk_calls: u64,
    pub brk_grown: u64,
    pub brk_shrunk: u64,
    /// `mmap` calls and bytes mapped (chunks, heaps, and brk fallbacks).
    pub mmap_calls: u64,
    pub mmap_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    /// `mremap` calls, and the bytes by which they grew and shrank mappings.
    pub mremap_calls: u64,
    pub mremap_grown: u64,
    pub mremap_shrunk: u64,
    pub mprotect_calls: u64,
    /// `madvise(MADV_DONTNEED)` calls and the bytes they released.
    pub madvise_calls: u64,
    pub madvise_bytes: u64,
    /// Kernel calls that failed (and were handled).
    pub failed_calls: u64,
    /// Arenas in existence (the main one included) and heaps mapped for them.
    pub arenas: usize,
    pub heaps_created: u64,
    /// The current mmap threshold (it moves with glibc's dynamic rule).
    pub mmap_threshold: usize,
    /// Bytes held by the program or in thread caches (chunk sizes, mmapped chunks included),
    /// now and at the peak (the peak within 64 KiB per arena).
    pub in_use: usize,
    pub peak_in_use: usize,
    /// Threads that have used the allocator.
    pub threads_seen: u64,
    /// The same figures as `mallinfo2`.
    pub info: MallInfo2,
}

/// Per-size statistics of one bin for `malloc_info`.
#[derive(Clone, Copy, Default)]
struct SizeClass {
    from: usize,
    to: usize,
    total: usize,
    count: usize,
}

const NSIZES: usize = NFASTBINS + NBINS - 1;

/// What `malloc_info` reports of one arena.
struct ArenaInfo {
    sizes: [SizeClass; NSIZES],
    nblocks: usize,
    nfastblocks: usize,
    avail: usize,
    fastavail: usize,
    system_mem: usize,
    max_system_mem: usize,
    heap_size: usize,
    heap_mprotect_size: usize,
    heap_count: usize,
    is_main: bool,
}

impl<K: Kernel> Malloc<K> {
    /// Add arena `av`'s figures (held) to `m` (glibc's `int_mallinfo`).
    fn int_mallinfo(&self, av: &ArenaState, m: &mut MallInfo2) {
        let mut nblocks = 1;
        let mut nfastblocks = 0;
        let mut fastavail = 0;
        // SAFETY: the held arena's top, fastbins and bins, walked through their links.
        let mut avail = unsafe {
            let mut avail = av.top().size();
            for i in 0..NFASTBINS {
                let mut next = av.fastbin(i);
                while let Some(p) = next {
                    nfastblocks += 1;
                    fastavail += p.size();
                    next = p.fd_revealed();
                }
            }
            for i in 1..NBINS {
                let b = av.bin_at(i);
                let mut p = b.bk();
                while p != b {
                    nblocks += 1;
                    avail += p.size();
                    p = p.bk();
                }
            }
            avail
        };
        avail += fastavail;
        m.smblks += nfastblocks;
        m.ordblks += nblocks;
        m.fordblks += avail;
        m.uordblks += av.system_mem.get() - avail;
        m.arena += av.system_mem.get();
        m.fsmblks += fastavail;
        if av.is_main() {
            m.hblks = self.mp.n_mmaps.load(Relaxed) as usize;
            m.hblkhd = self.mp.mmapped_mem.load(Relaxed);
            m.usmblks = 0;
            // SAFETY: the held arena's top.
            m.keepcost = unsafe { av.top().size() };
        }
    }

    /// `mallinfo2(3)`: totals over all arenas.
    pub fn mallinfo2(&'static self) -> MallInfo2 {
        self.ensure_ready();
        let mut m = MallInfo2::default();
        self.arenas().for_each(|av| self.int_mallinfo(&self.lock_and_drain(av), &mut m));
        m
    }

    /// `mallinfo(3)`: `mallinfo2` truncated to `int`s.
    pub fn mallinfo(&'static self) -> MallInfo {
        self.mallinfo2().into()
    }

    /// ptalloc's statistics: kernel calls, arenas, and the `mallinfo2` figures.
    pub fn stats(&'static self) -> Stats {
        let info = self.mallinfo2();
        let s = &self.stats;
        let mut arenas = 0;
        let mut in_use = self.mp.mmapped_mem.load(Relaxed);
        self.arenas().for_each(|av| {
            arenas += 1;
            in_use += self.lock_and_drain(av).in_use.get();
        });
        Stats {
            brk_calls: s.brk_calls.load(Relaxed),
            brk_grown: s.brk_grown.load(Relaxed),
            brk_shrunk: s.brk_shrunk.load(Relaxed),
            mmap_calls: s.mmap_calls.load(Relaxed),
            mmap_bytes: s.mmap_bytes.load(Relaxed),
            munmap_calls: s.munmap_calls.load(Relaxed),
            munmap_bytes: s.munmap_bytes.load(Relaxed),
            mremap_calls: s.mremap_calls.load(Relaxed),
            mremap_grown: s.mremap_grown.load(Relaxed),
            mremap_shrunk: s.mremap_shrunk.load(Relaxed),
            mprotect_calls: s.mprotect_calls.load(Relaxed),
            madvise_calls: s.madvise_calls.load(Relaxed),
            madvise_bytes: s.madvise_bytes.load(Relaxed),
            failed_calls: s.failed_calls.load(Relaxed),
            arenas,
            heaps_created: s.heaps_created.load(Relaxed),
            mmap_threshold: self.mp.mmap_threshold.load(Relaxed),
            in_use,
            peak_in_use: self.peak_in_use().max(in_use),
            threads_seen: s.threads_seen.load(Relaxed),
            info,
        }
    }

    /// `malloc_stats(3)`: per-arena and total figures on standard error, in glibc's format.
    pub fn malloc_stats(&'static self) {
        self.ensure_ready();
        let mut out = FdWriter::new(2);
        self.write_malloc_stats(&mut out);
        out.flush();
    }

    /// The text of `malloc_stats` into any writer.
    pub fn write_malloc_stats<W: Write>(&'static self, out: &mut W) {
        self.ensure_ready();
        // glibc keeps these totals in `unsigned int`.
        let mut in_use_b = self.mp.mmapped_mem.load(Relaxed) as u32;
        let mut system_b = in_use_b;
        let mut i = 0;
        self.arenas().for_each(|av| {
            let mut mi = MallInfo2::default();
            self.int_mallinfo(&self.lock_and_drain(av), &mut mi);
            let _ = write!(
                out,
                "Arena {}:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n",
                i, mi.arena as u32, mi.uordblks as u32
            );
            system_b = system_b.wrapping_add(mi.arena as u32);
            in_use_b = in_use_b.wrapping_add(mi.uordblks as u32);
            i += 1;
        });
        let _ = write!(
            out,
            "Total (incl. mmap):\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\nmax mmap regions = {:>10}\nmax mmap bytes   = {:>10}\n",
            system_b,
            in_use_b,
            self.mp.max_n_mmaps.load(Relaxed) as u32,
            self.mp.max_mmapped_mem.load(Relaxed)
        );
    }

    fn arena_info(&self, av: &ArenaState) -> ArenaInfo {
        let mut info = ArenaInfo {
            sizes: [SizeClass::default(); NSIZES],
            nblocks: 1,
            nfastblocks: 0,
            // SAFETY: the held arena's top.
            avail: unsafe { av.top().size() },
            fastavail: 0,
            system_mem: av.system_mem.get(),
            max_system_mem: av.max_system_mem.get(),
            heap_size: 0,
            heap_mprotect_size: 0,
            heap_count: 0,
            is_main: av.is_main(),
        };
        for i in 0..NFASTBINS {
            let Some(first) = av.fastbin(i) else {
                continue;
            };
            // SAFETY: the held arena's fastbin chunks, walked through their links.
            let thissize = unsafe { first.size() };
            let mut n = 0;
            let mut next = Some(first);
            while let Some(p) = next {
                if !crate::chunk::aligned_ok(p.addr()) {
                    malloc_printerr("__malloc_info(): unaligned fastbin chunk detected");
                }
                n += 1;
                // SAFETY: as above.
                next = unsafe { p.fd_revealed() };
            }
            info.fastavail += n * thissize;
            info.nfastblocks += n;
            info.sizes[i] = SizeClass {
                from: thissize - (MALLOC_ALIGNMENT - 1),
                to: thissize,
                total: n * thissize,
                count: n,
            };
        }
        for i in 1..NBINS {
            let b = av.bin_at(i);
            let s = &mut info.sizes[NFASTBINS - 1 + i];
            s.from = usize::MAX;
            // SAFETY: a bin of the held arena, walked through its links.
            unsafe {
                let mut r = b.fd();
                while r != b {
                    let size = r.head();
                    s.count += 1;
                    s.total += size;
                    s.from = s.from.min(size);
                    s.to = s.to.max(size);
                    r = r.fd();
                }
            }
            if s.count == 0 {
                s.from = 0;
            }
            info.nblocks += s.count;
            info.avail += s.total;
        }
        {
            let mut heap = av.top_heap();
            while let Some(h) = heap {
                info.heap_size += h.size();
                info.heap_mprotect_size += h.mprotect_size();
                info.heap_count += 1;
                heap = h.prev();
            }
        }
        info
    }

    /// `malloc_info(3)`: glibc's XML description of every arena. `options` must be 0
    /// (else `EINVAL`, as in glibc).
    pub fn malloc_info<W: Write>(&'static self, options: i32, out: &mut W) -> Result<(), i32> {
        if options != 0 {
            return Err(libc::EINVAL);
        }
        self.ensure_ready();
        let (mut t_nblocks, mut t_nfast, mut t_avail, mut t_fastavail) = (0, 0, 0, 0);
        let (mut t_system, mut t_max_system, mut t_aspace, mut t_aspace_mprotect) = (0, 0, 0, 0);
        let _ = out.write_str("<malloc version=\"1\">\n");
        let mut n = 0;
        self.arenas().for_each(|av| {
            let info = self.arena_info(&self.lock_and_drain(av));
            let _ = write!(out, "<heap nr=\"{}\">\n<sizes>\n", n);
            n += 1;
            t_nfast += info.nfastblocks;
            t_fastavail += info.fastavail;
            t_nblocks += info.nblocks;
            t_avail += info.avail;
            for (i, s) in info.sizes.iter().enumerate() {
                if s.count != 0 && i != NFASTBINS {
                    let _ = writeln!(
                        out,
                        "  <size from=\"{}\" to=\"{}\" total=\"{}\" count=\"{}\"/>",
                        s.from, s.to, s.total, s.count
                    );
                }
            }
            let u = &info.sizes[NFASTBINS];
            if u.count != 0 {
                let _ = writeln!(
                    out,
                    "  <unsorted from=\"{}\" to=\"{}\" total=\"{}\" count=\"{}\"/>",
                    u.from, u.to, u.total, u.count
                );
            }
            t_system += info.system_mem;
            t_max_system += info.max_system_mem;
            let _ = write!(
                out,
                "</sizes>\n<total type=\"fast\" count=\"{}\" size=\"{}\"/>\n<total type=\"rest\" count=\"{}\" size=\"{}\"/>\n<system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n",
                info.nfastblocks, info.fastavail, info.nblocks, info.avail, info.system_mem, info.max_system_mem
            );
            if info.is_main {
                let _ = write!(
                    out,
                    "<aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n",
                    info.system_mem, info.system_mem
                );
                t_aspace += info.system_mem;
                t_aspace_mprotect += info.system_mem;
            } else {
                let _ = write!(
                    out,
                    "<aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n<aspace type=\"subheaps\" size=\"{}\"/>\n",
                    info.heap_size, info.heap_mprotect_size, info.heap_count
                );
                t_aspace += info.heap_size;
                t_aspace_mprotect += info.heap_mprotect_size;
            }
            let _ = out.write_str("</heap>\n");
        });
        let _ = write!(
            out,
            "<total type=\"fast\" count=\"{}\" size=\"{}\"/>\n<total type=\"rest\" count=\"{}\" size=\"{}\"/>\n<total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n<system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n<aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n</malloc>\n",
            t_nfast,
            t_fastavail,
            t_nblocks,
            t_avail,
            self.mp.n_mmaps.load(Relaxed) as i32,
            self.mp.mmapped_mem.load(Relaxed),
            t_system,
            t_max_system,
            t_aspace,
            t_aspace_mprotect
        );
        Ok(())
    }
}

/// A `fmt::Write` to a file descriptor through a stack buffer: formatted output with no
/// heap allocation, for use inside the allocator.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 512],
    len: usize,
}

impl FdWriter {
    pub const fn new(fd: i32) -> FdWriter {
        FdWriter { fd, buf: [0; 512], len: 0 }
    }

    pub fn flush(&mut self) {
        crate::prim::write_fd(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}
