//! The simulated MMU: keeping the host's view of the user range equal to the page tables.
//!
//! The user address space is a range of host memory reserved with `PROT_NONE`. A page the
//! page tables map is a `MAP_SHARED | MAP_FIXED` mapping of its frame's page of the memfd,
//! with the protection of its PTE; every other page of the range is the reservation again,
//! so any access to it faults. The host calls here are the simulation's hardware: if one
//! fails the host and the page tables no longer agree, so the machine stops (abort) rather
//! than run on wrongly.

use crate::page::{PAGE_SHIFT, PAGE_SIZE};
use crate::util::StackWriter;
use crate::Errno;

/// The reserved host range and the memfd of physical memory. Only [`Host::reserve`] makes
/// one (the fields are private), of a fresh reservation of its own, so the range the host
/// calls below check against is always a real reservation that holds nothing of the host
/// program's; they stay inside it, whatever range they are given.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    base: usize,
    size: usize,
    memfd: i32,
    /// False for the view of a process other than the calling one: host calls do nothing
    /// (that process's own host address space is out of reach).
    live: bool,
}

#[cold]
#[inline(never)]
fn host_failure(what: &str, addr: usize, len: usize) -> ! {
    use core::fmt::Write;
    let e = ptalloc::errno();
    let mut w = StackWriter::<256>::new();
    let _ = writeln!(w, "kernel-sim: host {what}({addr:#x}, {len:#x}) failed with errno {e}: the simulated MMU is out of step with the page tables");
    if e == libc::ENOMEM {
        let _ = writeln!(
            w,
            "kernel-sim: the host ran out of mappings: each resident page whose frame does not follow its neighbour's is one host VMA (see vm.max_map_count)"
        );
    }
    w.emit();
    // SAFETY: abort() does not return.
    unsafe { libc::abort() }
}

impl Host {
    /// Reserve a user range of `size` bytes of `PROT_NONE`, aligned to 1 GiB, whose pages
    /// will map frames of `memfd`.
    pub fn reserve(size: usize, memfd: i32) -> Result<Host, Errno> {
        let align = 1usize << 30;
        let Some(span) = size.checked_add(align) else {
            return Err(Errno::ENOMEM);
        };
        // SAFETY: a fresh anonymous reservation; nothing is replaced.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno(ptalloc::errno()));
        }
        let raw = p as usize;
        let base = (raw + align - 1) & !(align - 1);
        // SAFETY: trimming the unaligned ends of our own reservation.
        unsafe {
            if base > raw {
                libc::munmap(raw as *mut libc::c_void, base - raw);
            }
            let tail = raw + span - (base + size);
            if tail > 0 {
                libc::munmap((base + size) as *mut libc::c_void, tail);
            }
        }
        Ok(Host { base, size, memfd, live: true })
    }

    /// A host with an empty range, for tests of layers that never map a page: `unmap` does
    /// nothing, and `map_frames` or `protect` of any page stops the test.
    #[cfg(test)]
    pub const fn empty() -> Host {
        Host { base: 0, size: 0, memfd: -1, live: true }
    }

    /// Give the reservation back to the host.
    ///
    /// # Safety
    /// Nothing uses the range afterwards: no simulated access, no host call on this `Host`
    /// or a copy of it (the machine is gone).
    pub unsafe fn release(self) {
        // SAFETY: our own reservation; the caller promises nothing uses it any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }

    /// The same range, with host calls that do nothing: for changing the page tables of a
    /// process other than the calling one.
    pub fn detached(self) -> Host {
        Host { live: false, ..self }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The first address of the range.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The size of the range in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    pub fn end(&self) -> usize {
        self.base + self.size
    }

    /// Stop the machine unless `[addr, addr + len)` lies in the reservation: a host call
    /// outside it would replace or change memory that is not the simulation's.
    fn check_range(&self, what: &str, addr: usize, len: usize) {
        if addr < self.base || len > self.size || addr - self.base > self.size - len {
            crate::util::bug(what, addr, len);
        }
    }

    /// Map frames `pfn..pfn + npages` at `addr` with `prot`.
    ///
    /// # Safety
    /// The host is being made to say what the page tables say: the PTEs of the `npages`
    /// pages from `addr` now map frames `pfn..pfn + npages`, in order, and `prot` allows no
    /// more than they do (`pte_host_prot`). Any other frame would show the process bytes
    /// that are not its (a kernel object, another page) under memory it may be using.
    pub unsafe fn map_frames(&self, addr: usize, pfn: usize, npages: usize, prot: i32) {
        if !self.live {
            return;
        }
        let len = npages * PAGE_SIZE;
        self.check_range("map_frames outside the user range", addr, len);
        // SAFETY: [addr, addr + len) lies in our reservation (checked), which holds nothing
        // of the host program's; MAP_FIXED replaces only that range, and the caller promises
        // the frames are the ones the page tables map there.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE,
                self.memfd,
                (pfn << PAGE_SHIFT) as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            host_failure("mmap", addr, len);
        }
    }

    /// Return `[addr, addr + len)` to the reservation: nothing mapped, every access faults.
    ///
    /// Safe whatever the page tables say: a host view narrower than theirs only costs a
    /// fault, after which the fault path maps the page again from its PTE (a spurious fault).
    pub fn unmap(&self, addr: usize, len: usize) {
        if !self.live {
            return;
        }
        // Never touch host memory outside the reservation, whatever range a caller names.
        let start = addr.max(self.base);
        let end = addr.saturating_add(len).min(self.end());
        if start >= end {
            return;
        }
        let (addr, len) = (start, end - start);
        // SAFETY: [addr, addr + len) lies in our reservation (clamped above), which holds
        // nothing of the host program's; MAP_FIXED replaces only that range.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            host_failure("mmap(PROT_NONE)", addr, len);
        }
    }

    /// Change the protection of mapped pages `[addr, addr + len)`.
    ///
    /// # Safety
    /// `prot` allows no more than the PTEs of the range now do (`pte_host_prot`): more would
    /// let the process write frames it may only read (the shared zero page, a page-cache
    /// page a private mapping has not copied yet).
    pub unsafe fn protect(&self, addr: usize, len: usize, prot: i32) {
        if !self.live {
            return;
        }
        self.check_range("protect outside the user range", addr, len);
        // SAFETY: the range lies in our reservation (checked), whose pages only simulated
        // user accesses use, and the caller promises `prot` is what their PTEs allow.
        if unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) } != 0 {
            host_failure("mprotect", addr, len);
        }
    }
}

/// Collects per-page host updates into runs, so that neighbouring pages with neighbouring
/// frames and equal protection cost one host call.
pub struct Batch {
    host: Host,
    remap: bool,
    start: usize,
    pfn: usize,
    n: usize,
    prot: i32,
}

impl Batch {
    /// A batch of `map_frames` calls.
    pub fn mapping(host: Host) -> Batch {
        Batch { host, remap: true, start: 0, pfn: 0, n: 0, prot: 0 }
    }

    /// A batch of `protect` calls (frames are already mapped).
    pub fn protecting(host: Host) -> Batch {
        Batch { host, remap: false, start: 0, pfn: 0, n: 0, prot: 0 }
    }

    /// Add the page at `addr`: frame `pfn` (ignored by a protecting batch) with `prot`.
    ///
    /// # Safety
    /// The page's PTE now maps `pfn` and allows `prot` (`pte_host_prot` of the entry), and
    /// stays so until the batch is flushed: the conditions of `Host::map_frames` (a mapping
    /// batch) or `Host::protect` (a protecting batch) for that page.
    pub unsafe fn push(&mut self, addr: usize, pfn: usize, prot: i32) {
        let contiguous = self.n > 0
            && addr == self.start + self.n * PAGE_SIZE
            && prot == self.prot
            && (!self.remap || pfn == self.pfn + self.n);
        if !contiguous {
            self.flush();
            self.start = addr;
            self.pfn = pfn;
            self.prot = prot;
        }
        self.n += 1;
    }

    pub fn flush(&mut self) {
        if self.n == 0 {
            return;
        }
        if self.remap {
            // SAFETY: each page of the run was pushed with the frame and protection its PTE
            // holds (`push`'s condition), and the run's frames follow each other.
            unsafe { self.host.map_frames(self.start, self.pfn, self.n, self.prot) };
        } else {
            // SAFETY: each page of the run was pushed with the protection its PTE allows.
            unsafe { self.host.protect(self.start, self.n * PAGE_SIZE, self.prot) };
        }
        self.n = 0;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}
