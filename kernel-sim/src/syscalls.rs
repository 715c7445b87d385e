//! The system-call interface of a [`Machine`]: each call takes the machine lock, runs the
//! simulated kernel's implementation and counts itself. Also here, under the same lock:
//! `fault_in` (a fault without an access, as `get_user_pages` takes it; not counted), the
//! counters, the sysctls and rlimits a test may change, the invariant checkers, and copies
//! of the VMA list for views.

use crate::buddy::BuddyReport;
use crate::check::CheckError;
use crate::machine::Machine;
use crate::mm::{Rlimits, VmaPtr};
use crate::stats::{Counters, Syscall};
use crate::Errno;

impl Machine {
    /// The counters of the machine and of the calling process (or the one `as_process`
    /// names).
    pub fn counters(&self) -> Counters {
        self.lock_view().counters()
    }

    /// The program break, as `brk(0)` reports it (not counted as a system call).
    pub fn current_break(&self) -> usize {
        self.lock().mm.brk
    }

    /// `brk(2)`: the new break, or the old one on failure. `brk(0)` only reports the break
    /// (and counts as a call); [`Machine::current_break`] reads it without `unsafe`.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]) for what lies between `addr` and the current break
    /// when `addr` is below it.
    pub unsafe fn brk(&self, addr: usize) -> usize {
        let mut st = self.lock();
        // SAFETY: the caller's promise is the range rule the call needs, and the free rule
        // holds: no KPtr or PteSlot is held here, and none ever leaves the crate.
        let r = unsafe { crate::mmap::sys_brk(&mut st, addr) };
        st.count(Syscall::Brk, addr == 0 || r == addr);
        r
    }

    /// `mmap(2)`: anonymous memory, or with a descriptor from [`Machine::open`], a file.
    ///
    /// # Safety
    /// With `MAP_FIXED`, the range rule (see [`Machine`]) for the range replaced. A file
    /// mapping's contents follow the file, as with any `mmap` of a file (`memmap2` says the
    /// same): writes through other mappings or descriptors show in a shared mapping (and in a
    /// private one where it has no copy yet), and truncation takes the pages beyond the new
    /// end away (`SIGBUS` on the next touch). The caller keeps no reference into a file
    /// mapping that such changes would break.
    pub unsafe fn mmap(
        &self,
        addr: usize,
        len: usize,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: u64,
    ) -> Result<usize, Errno> {
        let mut st = self.lock();
        // SAFETY: as in `brk`.
        let r = unsafe { crate::mmap::sys_mmap(&mut st, addr, len, prot, flags, fd, offset) };
        st.count(Syscall::Mmap, r.is_ok());
        r
    }

    /// `munmap(2)`.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]).
    pub unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `brk`.
        let r = unsafe { crate::mmap::sys_munmap(&mut st, addr, len) };
        st.count(Syscall::Munmap, r.is_ok());
        r
    }

    /// `mremap(2)`, `new_addr` used with `MREMAP_FIXED`.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]) for the old mapping (its contents may move, or with
    /// `MREMAP_DONTUNMAP` leave it) and, with `MREMAP_FIXED`, for the range at `new_addr`
    /// that the move replaces.
    pub unsafe fn mremap(
        &self,
        addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
        new_addr: usize,
    ) -> Result<usize, Errno> {
        let mut st = self.lock();
        // SAFETY: as in `brk`.
        let r = unsafe { crate::mremap::sys_mremap(&mut st, addr, old_len, new_len, flags, new_addr) };
        st.count(Syscall::Mremap, r.is_ok());
        r
    }

    /// `mprotect(2)`.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]), unless the protection only grows.
    pub unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `brk`.
        let r = unsafe { crate::mprotect::sys_mprotect(&mut st, addr, len, prot) };
        st.count(Syscall::Mprotect, r.is_ok());
        r
    }

    /// `madvise(2)`.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]) for advice that discards contents (`MADV_DONTNEED`,
    /// `MADV_FREE`, `MADV_REMOVE`, ...).
    pub unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `brk`.
        let r = unsafe { crate::madvise::sys_madvise(&mut st, addr, len, advice) };
        st.count(Syscall::Madvise, r.is_ok());
        r
    }

    /// `mincore(2)`: one byte per page of `[addr, addr + len)` into `vec`, bit 0 set when
    /// the page is resident.
    pub fn mincore(&self, addr: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::mincore::sys_mincore(&mut st, addr, len, vec);
        st.count(Syscall::Mincore, r.is_ok());
        r
    }

    /// `open(2)` of a host file: a simulated descriptor (from 3 up) whose pages the machine
    /// caches. The host checks the path, the flags and the permissions.
    pub fn open(&self, path: &core::ffi::CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_open(&mut st, path, flags, mode);
        st.count(Syscall::Open, r.is_ok());
        r
    }

    /// `close(2)`. The last reference to a file (descriptors and mappings) writes its dirty
    /// pages back and drops its cache.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_close(&mut st, fd);
        st.count(Syscall::Close, r.is_ok());
        r
    }

    /// `pread(2)` through the page cache.
    pub fn pread(&self, fd: i32, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_pread(&mut st, fd, buf, offset);
        st.count(Syscall::Pread, r.is_ok());
        r
    }

    /// `pwrite(2)` into the page cache (written back later).
    pub fn pwrite(&self, fd: i32, buf: &[u8], offset: i64) -> Result<usize, Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_pwrite(&mut st, fd, buf, offset);
        st.count(Syscall::Pwrite, r.is_ok());
        r
    }

    /// `ftruncate(2)`.
    pub fn ftruncate(&self, fd: i32, length: i64) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_ftruncate(&mut st, fd, length);
        st.count(Syscall::Ftruncate, r.is_ok());
        r
    }

    /// `fsync(2)` (and `fdatasync(2)`, which is the same here).
    pub fn fsync(&self, fd: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_fsync(&mut st, fd);
        st.count(Syscall::Fsync, r.is_ok());
        r
    }

    /// `posix_fadvise(2)`.
    pub fn posix_fadvise(&self, fd: i32, offset: i64, len: i64, advice: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::file::sys_fadvise(&mut st, fd, offset, len, advice);
        st.count(Syscall::Fadvise, r.is_ok());
        r
    }

    /// `execve(2)` of an ELF program of the host: the old image goes and the program is
    /// laid out as Linux lays it out with randomisation off, stopped at its entry point
    /// (nothing runs it). Refusals (`ENOENT`, `EACCES`, `E2BIG`, `ENOEXEC`, `EIO`, `ELIBBAD`,
    /// `EINVAL`) change nothing; an error after the old image went (`ENOMEM`) leaves the
    /// process without one, where Linux would kill it.
    ///
    /// # Safety
    /// The range rule (see [`Machine`]) for the whole user range: nothing of the old image
    /// may be used afterwards (so not while an allocator on this machine holds memory).
    pub unsafe fn execve(
        &self,
        path: &core::ffi::CStr,
        argv: &[&core::ffi::CStr],
        envp: &[&core::ffi::CStr],
    ) -> Result<crate::ExecImage, Errno> {
        let mut st = self.lock();
        // SAFETY: the caller's promise, and no KPtr is held across the call.
        let r = unsafe { crate::exec::sys_execve(&mut st, path, argv, envp) };
        st.count(Syscall::Execve, r.is_ok());
        r
    }

    /// `msync(2)`.
    pub fn msync(&self, addr: usize, len: usize, flags: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        let r = crate::msync::sys_msync(&mut st, addr, len, flags);
        st.count(Syscall::Msync, r.is_ok());
        r
    }

    /// The flusher's pass, as `sync(2)`: every dirty page of every file written back.
    /// `EIO` if the host refused a write (the pages stay dirty).
    pub fn sync(&self) -> Result<(), Errno> {
        crate::page_writeback::sync_all(&mut self.lock())
    }

    /// `mlock2(2)` (`mlock(2)` with `flags` 0; `MLOCK_ONFAULT` is 1): lock the pages of the
    /// range in memory, faulting them in unless on-fault. `EPERM` with a zero
    /// `RLIMIT_MEMLOCK` (and no `CAP_IPC_LOCK`), `ENOMEM` beyond it or for a hole (the VMAs
    /// before the hole are locked), `EINVAL` for unknown flags.
    pub fn mlock2(&self, addr: usize, len: usize, flags: u32) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: a system call's walk; no VMA pointer outlives it.
        let r = unsafe { crate::mlock::sys_mlock(&mut st, addr, len, flags) };
        st.count(Syscall::Mlock, r.is_ok());
        r
    }

    /// `mlock(2)`.
    pub fn mlock(&self, addr: usize, len: usize) -> Result<(), Errno> {
        self.mlock2(addr, len, 0)
    }

    /// `munlock(2)`: the pages of the range become reclaimable again (those no other locked
    /// mapping holds). `ENOMEM` for a hole.
    pub fn munlock(&self, addr: usize, len: usize) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `mlock2`.
        let r = unsafe { crate::mlock::sys_munlock(&mut st, addr, len) };
        st.count(Syscall::Munlock, r.is_ok());
        r
    }

    /// `mlockall(2)` with `MCL_CURRENT` (1), `MCL_FUTURE` (2), `MCL_ONFAULT` (4).
    pub fn mlockall(&self, flags: i32) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `mlock2`.
        let r = unsafe { crate::mlock::sys_mlockall(&mut st, flags, false) };
        st.count(Syscall::Mlockall, r.is_ok());
        r
    }

    /// `munlockall(2)`.
    pub fn munlockall(&self) -> Result<(), Errno> {
        let mut st = self.lock();
        // SAFETY: as in `mlock2`.
        let r = unsafe { crate::mlock::sys_mlockall(&mut st, 0, true) };
        st.count(Syscall::Munlockall, r.is_ok());
        r
    }

    /// The OOM killer, after a fault of the calling process found no frame: kill the
    /// process `oom_badness` picks. Returns true if that was another process (its memory
    /// is back, the fault may retry); false if it is the calling one, which must die.
    pub fn out_of_memory(&self) -> bool {
        let mut st = self.lock();
        let me = st.me;
        // Another fault's OOM kill (or a free) may have made room since this one failed:
        // retry before killing again, as Linux retries the allocation under oom_lock.
        if crate::vmscan::zone_ok(&st, crate::buddy::WMARK_MIN, 4) {
            return true;
        }
        match crate::oom_kill::select_bad_process(&st) {
            Some(v) if v != me => {
                crate::kstack::on_kernel_stack(&mut st, &mut |st| {
                    usize::from(crate::oom_kill::oom_kill_other(st, v))
                }) != 0
            }
            _ => false,
        }
    }

    /// `/proc/PID/oom_score` of the process (the calling one, or `as_process`'s).
    pub fn oom_score(&self) -> usize {
        let st = self.lock_view();
        crate::oom_kill::oom_score(&st, &st.mm)
    }

    /// `vmalloc(size)` in the simulated kernel: the kernel address of `size` bytes (rounded
    /// up to pages) of zeroed memory, contiguous in the vmalloc range, over frames taken
    /// one by one. `ENOMEM` for 0 bytes, more than memory, no frames, or more than
    /// `MAX_API_OBJECTS` objects handed out by these calls at once.
    pub fn vmalloc(&self, size: usize, caller: &'static str) -> Result<u64, Errno> {
        let mut st = self.lock();
        let st = &mut *st;
        let slot = st.api_objects.iter().position(|o| o.1 == 0).ok_or(Errno::ENOMEM)?;
        let va = crate::vmalloc::vmalloc(&mut st.vmalloc, &mut st.phys, &mut st.slab, size, caller)?;
        st.api_objects[slot] =
            (va, size.div_ceil(crate::page::PAGE_SIZE) as u64 * crate::page::PAGE_SIZE as u64);
        Ok(va)
    }

    /// `vfree(addr)` of what `Machine::vmalloc` returned; `EINVAL` otherwise (nothing
    /// changes).
    pub fn vfree(&self, addr: u64) -> Result<(), Errno> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(slot) = st.api_objects.iter().position(|o| o.1 != 0 && o.0 == addr) else {
            return Err(Errno::EINVAL);
        };
        if crate::vmalloc::area_pages(&st.vmalloc, addr).is_none() {
            return Err(Errno::EINVAL);
        }
        st.api_objects[slot] = (0, 0);
        // SAFETY: an area this API handed out, whose memory only these calls reach; the
        // caller gives it up.
        unsafe { crate::vmalloc::vfree(&mut st.vmalloc, &mut st.phys, &mut st.slab, addr) };
        Ok(())
    }

    /// The frame behind a kernel address of the vmalloc range (`vmalloc_to_pfn`).
    pub fn vmalloc_to_pfn(&self, addr: u64) -> Option<usize> {
        let st = self.lock();
        crate::vmalloc::vmalloc_to_pfn(&st.vmalloc, &st.phys, addr)
    }

    /// `kmalloc(size)`: the kernel (direct-map) address of a zeroed object from the
    /// `kmalloc-*` caches, or of whole pages beyond 8 KiB. `ENOMEM` as for `vmalloc`.
    pub fn kmalloc(&self, size: usize) -> Result<u64, Errno> {
        let mut st = self.lock();
        let st = &mut *st;
        if size == 0 {
            return Ok(crate::slab::ZERO_SIZE_PTR as u64);
        }
        let slot = st.api_objects.iter().position(|o| o.1 == 0).ok_or(Errno::ENOMEM)?;
        let host = match st.slab.kmalloc(&mut st.phys, size) {
            // Whole pages of an order above 0 and no block that size free: compact, then
            // try once more (`__alloc_pages_direct_compact`).
            Err(Errno::ENOMEM) if size > crate::slab::KMALLOC_MAX_CACHE_SIZE => {
                let order = crate::page::get_order(size);
                if order == 0 || !crate::compaction::try_to_compact_pages(st, order) {
                    return Err(Errno::ENOMEM);
                }
                st.slab.kmalloc(&mut st.phys, size)?
            }
            r => r?,
        };
        let k = self.kernel_layout().host_to_kaddr(&st.phys, host).unwrap_or(0);
        st.api_objects[slot] = (k, size as u64);
        Ok(k)
    }

    /// `kfree` of what `Machine::kmalloc` returned; `EINVAL` for anything else (an object
    /// already freed, an address inside one, the simulated kernel's own objects), with
    /// nothing changed.
    pub fn kfree(&self, kaddr: u64) -> Result<(), Errno> {
        if kaddr == 0 || kaddr == crate::slab::ZERO_SIZE_PTR as u64 {
            return Ok(());
        }
        let mut st = self.lock();
        let st = &mut *st;
        let l = self.kernel_layout();
        let Some(slot) = st.api_objects.iter().position(|o| o.1 != 0 && o.0 == kaddr) else {
            return Err(Errno::EINVAL);
        };
        let Some(pfn) = l.virt_to_pfn(kaddr).filter(|&p| (p as usize) < st.phys.nr_frames()) else {
            return Err(Errno::EINVAL);
        };
        let host = st.phys.frame(pfn as usize) as usize + (kaddr % crate::page::PAGE_SIZE as u64) as usize;
        st.api_objects[slot] = (0, 0);
        // SAFETY: a kmalloc object this API handed out and has not freed (the registry holds
        // exactly those, by their start; a vmalloc area's is outside the direct map, refused
        // above), which only these calls reach; the caller gives it up.
        unsafe { st.slab.kfree(&mut st.phys, host) };
        Ok(())
    }

    /// Copy `buf` into kernel memory the API handed out (`kmalloc`, `vmalloc`), at `kaddr`,
    /// page by page through the kernel's page table; `EFAULT` if the range is not inside
    /// one such object, nothing written.
    pub fn kernel_write(&self, kaddr: u64, buf: &[u8]) -> Result<(), Errno> {
        let st = self.lock();
        let end = kaddr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
        if !st.api_objects.iter().any(|o| o.1 != 0 && kaddr >= o.0 && end <= o.0 + o.1) {
            return Err(Errno::EFAULT);
        }
        for_each_kernel_chunk(&st, &self.kernel_layout(), kaddr, buf.len(), &mut |done, p, n| {
            // SAFETY: `n` bytes of a frame the kernel maps there, inside an object the API
            // handed out (checked), which nothing of the simulation's own uses; not user
            // memory (the slice is host memory); the lock is held.
            unsafe { core::ptr::copy_nonoverlapping(buf[done..].as_ptr(), p, n) }
        })
    }

    /// Copy kernel memory at `kaddr` (the direct map, or a mapped part of the vmalloc range)
    /// into `buf`; `EFAULT` where nothing is mapped.
    pub fn kernel_read(&self, kaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let st = self.lock();
        for_each_kernel_chunk(&st, &self.kernel_layout(), kaddr, buf.len(), &mut |done, p, n| {
            // SAFETY: `n` bytes of a frame of the direct map, read; the lock is held.
            unsafe { core::ptr::copy_nonoverlapping(p, buf[done..].as_mut_ptr(), n) }
        })
    }

    /// `/proc/vmallocinfo`.
    pub fn write_vmallocinfo(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        // In batches copied out under the lock, written without it (writing may allocate).
        let mut from = 0;
        loop {
            let mut lines = [crate::vmalloc::VmallocLine { addr: 0, size: 0, pages: 0, caller: "" }; 64];
            let n = crate::vmalloc::snapshot(&self.lock().vmalloc, from, &mut lines);
            for l in &lines[..n] {
                crate::vmalloc::write_line(l, w)?;
            }
            if n < lines.len() {
                return Ok(());
            }
            from = lines[n - 1].addr + 1;
        }
    }

    /// `swapon(2)`: take the host file at `path`, prepared by [`crate::mkswap`] (or Linux's
    /// `mkswap`), as the machine's swap area. `EBUSY` if it has one, `EINVAL` if the file
    /// has no swap signature, is not a regular file or is too small, the host's error if it
    /// cannot be opened; nothing changes on failure.
    pub fn swapon(&self, path: &core::ffi::CStr) -> Result<(), Errno> {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Errno(ptalloc::errno()));
        }
        let mut st = self.lock();
        let r = crate::swapfile::swapon(&mut st, fd, path.to_bytes());
        st.count(Syscall::Swapon, r.is_ok());
        match r {
            Ok(()) => st.sys.total_swap_pages = st.phys.swap.total_pages(),
            // SAFETY: closing the descriptor just opened, which nothing else has.
            Err(_) => unsafe {
                libc::close(fd);
            },
        }
        r
    }

    /// `cma_alloc(count)`: `count` contiguous frames of the CMA area, the pages of processes
    /// and of the page cache that borrowed them moved out first. Returns the first frame;
    /// `EINVAL` without a CMA area or for 0 frames, `ENOMEM` when the area cannot supply
    /// them (nothing is held then).
    pub fn cma_alloc(&self, count: usize) -> Result<usize, Errno> {
        crate::cma::cma_alloc(&mut self.lock(), count)
    }

    /// `cma_release`: give back frames `cma_alloc` returned, exactly as returned; `EINVAL`
    /// for anything else, with nothing changed.
    pub fn cma_release(&self, pfn: usize, count: usize) -> Result<(), Errno> {
        crate::cma::cma_release(&mut self.lock(), pfn, count)
    }

    /// The CMA area: its first frame and its frames (0 for none).
    pub fn cma_area(&self) -> (usize, usize) {
        let st = self.lock_view();
        (st.phys.cma_base, st.phys.cma_count)
    }

    /// `echo 1 > /proc/sys/vm/compact_memory`: compact every zone whole, moving movable pages
    /// to the top of each so the free frames below merge into large blocks.
    pub fn compact_memory(&self) {
        crate::compaction::compact_nodes(&mut self.lock());
    }

    /// `vm.swappiness` (0 to 200, else `EINVAL`).
    pub fn set_swappiness(&self, swappiness: usize) -> Result<(), Errno> {
        if swappiness > 200 {
            return Err(Errno::EINVAL);
        }
        self.lock().phys.swap.swappiness = swappiness;
        Ok(())
    }

    /// `/proc/PID/pagemap`'s entry for the page at `addr`, in Linux's format: bit 63 present
    /// (bits 0-54 the frame), bit 62 swapped (bits 0-4 the swap type, 0, and 5-54 the
    /// slot), bit 61 a page-cache or shared page, bit 56 mapped by this PTE alone; 0 for a
    /// page with no entry.
    pub fn pagemap(&self, addr: usize) -> u64 {
        let st = self.lock_view();
        let Some(slot) = crate::page_table::pte_lookup(&st.phys, st.mm.pgd, addr) else { return 0 };
        let e = slot.get();
        if crate::page_table::is_swap_pte(e) {
            return (1 << 62) | ((crate::page_table::pte_to_swp_offset(e) as u64) << 5);
        }
        if !crate::page_table::pte_present(e) {
            return 0;
        }
        let pfn = crate::page_table::pte_pfn(e);
        let mut v = (1u64 << 63) | pfn as u64;
        if !crate::page_table::pte_special(e) {
            let p = st.phys.page(pfn);
            if !p.has(crate::page::PG_ANON) {
                v |= 1 << 61;
            }
            if p.mapcount.get() == 1 {
                v |= 1 << 56;
            }
        }
        v
    }

    /// `/proc/kpageflags` for frame `pfn`, with Linux's bit numbers: REFERENCED 2, DIRTY 4,
    /// LRU 5, ACTIVE 6, SLAB 7, BUDDY 10, MMAP 11, ANON 12, SWAPCACHE 13, SWAPBACKED 14,
    /// UNEVICTABLE 18, NOPAGE 20, ZERO_PAGE 24, PGTABLE 26, MLOCKED 33, RESERVED 32.
    pub fn kpageflags(&self, pfn: usize) -> u64 {
        use crate::page::*;
        let st = self.lock();
        if pfn >= st.phys.nr_frames() {
            return 1 << 20;
        }
        if pfn == st.phys.zero_pfn {
            return 1 << 24;
        }
        let p = st.phys.page(pfn);
        let mut v = 0u64;
        for (flag, bit) in [
            (PG_REFERENCED, 2),
            (PG_DIRTY, 4),
            (PG_LRU, 5),
            (PG_ACTIVE, 6),
            (PG_SLAB, 7),
            (PG_BUDDY, 10),
            (PG_ANON, 12),
            (PG_SWAPCACHE, 13),
            (PG_SWAPBACKED, 14),
            (PG_MLOCKED, 18),
            (PG_PGTABLE, 26),
            (PG_RESERVED, 32),
            (PG_MLOCKED, 33),
        ] {
            if p.has(flag) {
                v |= 1 << bit;
            }
        }
        if p.mapcount.get() != 0 {
            v |= 1 << 11;
        }
        v
    }

    /// What CPU `cpu`'s TLB counted (`None` beyond the machine's CPUs).
    pub fn tlb_stats(&self, cpu: usize) -> Option<crate::cpu_tlbstate::TlbStats> {
        let st = self.lock_view();
        (cpu < st.phys.cpus.nr_cpus()).then(|| st.phys.cpus.stats(cpu))
    }

    /// The CPU the calling thread runs on (each thread gets one on its first use of the
    /// machine, round-robin, and keeps it).
    pub fn this_cpu(&self) -> usize {
        self.lock_view().phys.cpus.this_cpu
    }

    /// Pages on the LRU lists: inactive and active anonymous, inactive and active file.
    pub fn lru_sizes(&self) -> [usize; 4] {
        self.lock_view().phys.lru_sizes()
    }

    /// Run kswapd now if an allocation woke it (it otherwise runs when the machine lock is
    /// let go), then direct reclaim of up to 32 pages; returns the pages direct reclaim
    /// freed. For tests and demonstrations of reclaim.
    pub fn reclaim(&self) -> usize {
        crate::kstack::on_kernel_stack(&mut self.lock(), &mut crate::vmscan::try_to_free_pages)
    }

    /// Fault in the page at `addr` as an access would, without touching it (as
    /// `get_user_pages` does). The fault is not counted as the process's.
    pub fn fault_in(&self, addr: usize, write: bool) -> Result<(), crate::fault::FaultError> {
        let mut st = self.lock();
        crate::fault::fault_in(&mut st, addr, write)
    }

    /// `vm.overcommit_memory`.
    pub fn set_overcommit(&self, mode: u32, ratio: usize) {
        let mut st = self.lock();
        st.sys.overcommit_memory = mode;
        st.sys.overcommit_ratio = ratio;
    }

    /// `vm.max_map_count`.
    pub fn set_max_map_count(&self, n: usize) {
        self.lock().sys.max_map_count = n;
    }

    pub fn set_rlimits(&self, r: Rlimits) {
        self.lock().mm.rlimits = r;
    }

    pub fn rlimits(&self) -> Rlimits {
        self.lock().mm.rlimits
    }

    /// Check every structure: buddy free lists and frame conservation, slab caches, the
    /// files' page caches and dirty counts, the CPUs' TLBs against the page tables, the VMA
    /// tree, page tables against VMAs, and the RSS and VM counters.
    pub fn check(&self) -> Result<(), CheckError> {
        let st = self.lock_view();
        st.phys.check_buddy()?;
        st.slab.check(&st.phys)?;
        crate::check::check_files(&st.sb, &st.phys)?;
        st.phys.check_lru()?;
        let mut swap_entries = 0;
        for (i, t) in st.tasks.iter().enumerate() {
            if t.pid == 0 || t.zombie {
                continue;
            }
            let mm = if i == st.current { &st.mm } else { &t.mm };
            crate::check::check_tlb(mm, &st.phys)?;
            crate::page_table::for_each_pte(st.phys.direct_map(), mm.pgd, 0, usize::MAX, &mut |_, slot| {
                swap_entries += usize::from(crate::page_table::is_swap_pte(slot.get()));
            });
        }
        st.phys.swap.check(&st.phys, swap_entries)?;
        check_running_mm(&st)
    }

    /// `check_mm` alone: the VMA tree, counters, page tables and commit charge.
    pub fn check_mm(&self) -> Result<(), CheckError> {
        check_running_mm(&self.lock_view())
    }

    /// `check_buddy` alone.
    pub fn check_buddy(&self) -> Result<BuddyReport, CheckError> {
        self.lock().phys.check_buddy()
    }

    /// Visit the VMAs in address order. They are copied out in small batches under the
    /// lock and `f` runs without it, so `f` may allocate (even from an allocator on this
    /// machine); like `/proc/PID/maps`, a concurrent change may be seen half-way.
    pub fn for_each_vma(&self, mut f: impl FnMut(&crate::proc::VmaInfo)) {
        let mut from = 0;
        loop {
            let mut batch = [crate::proc::VmaInfo::EMPTY; 32];
            let mut n = 0;
            {
                let st = self.lock_view();
                let mut cur: Option<VmaPtr> = st.mm.find_vma(from);
                while let Some(v) = cur {
                    if n == batch.len() {
                        break;
                    }
                    batch[n] = crate::proc::VmaInfo::of(&st, v);
                    n += 1;
                    cur = v.next();
                }
            }
            for info in &batch[..n] {
                f(info);
            }
            if n < batch.len() {
                return;
            }
            from = batch[n - 1].end;
        }
    }

    /// The VMA containing `addr`, if any.
    pub fn vma_at(&self, addr: usize) -> Option<crate::proc::VmaInfo> {
        let st = self.lock_view();
        st.mm.vma_lookup(addr).map(|v| crate::proc::VmaInfo::of(&st, v))
    }
}

/// The pieces of `[kaddr, kaddr + len)` page by page: `f(offset, host pointer, length)`;
/// `EFAULT` (before any piece) if a page of it is not mapped.
fn for_each_kernel_chunk(
    st: &crate::machine::State,
    l: &crate::kernel_layout::KernelLayout,
    kaddr: u64,
    len: usize,
    f: &mut dyn FnMut(usize, *mut u8, usize),
) -> Result<(), Errno> {
    let page = crate::page::PAGE_SIZE;
    let end = kaddr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
    let mut a = kaddr & !(page as u64 - 1);
    while a < end {
        kernel_pfn(st, l, a).ok_or(Errno::EFAULT)?;
        a += page as u64;
    }
    let mut done = 0;
    while done < len {
        let a = kaddr + done as u64;
        let pfn = kernel_pfn(st, l, a).ok_or(Errno::EFAULT)?;
        let off = (a % page as u64) as usize;
        let n = (page - off).min(len - done);
        f(done, st.phys.frame(pfn).wrapping_add(off), n);
        done += n;
    }
    Ok(())
}

/// The frame behind kernel address `a`: the direct map by arithmetic, the vmalloc range by
/// the kernel's page table.
fn kernel_pfn(st: &crate::machine::State, l: &crate::kernel_layout::KernelLayout, a: u64) -> Option<usize> {
    if a >= l.vmalloc_start && a < l.vmalloc_end {
        return crate::vmalloc::vmalloc_to_pfn(&st.vmalloc, &st.phys, a);
    }
    let region = l.region_of(a)?;
    if region.start != l.page_offset {
        return None;
    }
    let pfn = l.virt_to_pfn(a)? as usize;
    (pfn < st.phys.nr_frames()).then_some(pfn)
}

/// `check_mm` of the running process, with the others' address spaces.
fn check_running_mm(st: &crate::machine::State) -> Result<(), CheckError> {
    let mut others: [&crate::mm::Mm; crate::machine::MAX_TASKS] = [&st.mm; crate::machine::MAX_TASKS];
    let mut n = 0;
    for (i, t) in st.tasks.iter().enumerate() {
        if i != st.current && t.pid != 0 && !t.zombie {
            others[n] = &t.mm;
            n += 1;
        }
    }
    crate::check::check_mm(&st.mm, &st.phys, &st.sys, st.host.base(), &others[..n])
}
