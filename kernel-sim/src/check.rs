//! The invariant checkers' common error type, and `check_mm`: the address space's
//! invariants, verified from scratch. Tests call the checkers after operations so that a
//! broken invariant fails at the step that broke it.
//!
//! Every checker — `check_buddy` (buddy free lists, frame conservation), `Slab::check`,
//! `VmaTree::check` and `check_mm` — reports the first broken invariant as a [`CheckError`].
//!
//! `check_mm` verifies:
//! - the VMA tree is ordered, balanced, its gaps right, and agrees with the list and with
//!   `map_count`;
//! - every VMA is page aligned and lies in the user range, it is shared exactly when it
//!   maps a shmem inode, and `anon_vma` and inode reference counts equal the number of VMAs
//!   that point at them;
//! - `total_vm`, `exec_vm`, `stack_vm` and `data_vm` equal sums over the VMAs, and
//!   `locked_vm` is at least the size of the locked ones (`MREMAP_DONTUNMAP` leaves it high);
//! - every present PTE lies inside a VMA, maps a frame of the right kind, and allows no
//!   more than the VMA does (a page in the swap cache is never writable); every swap entry
//!   names a slot in use; the RSS and swap-entry counters equal what the tables hold;
//! - the page-table pages counted equal the tables reachable from the PGD;
//! - `Committed_AS` equals the charged VMAs plus the charged shmem inodes.
//!
//! `check_tlb` verifies that every translation a CPU would use for an mm (one in an ASID
//! that has caught up with the mm's flushes) maps the frame its present PTE maps, and is
//! writable only where the PTE is, or where Linux leaves a writable entry without a flush:
//! an old, clean PTE of a lazily freed page (the simulation takes its write permission so
//! that it sees the next write; Linux keeps it and relies on the dirty bit).

use crate::mm::*;
use crate::overcommit::VmSysctl;
use crate::page::{PAGE_SHIFT, PAGE_SIZE, PG_ANON, PG_BUDDY, PG_FILE, PG_SWAPBACKED};
use crate::page_table::{
    count_tables, for_each_pte, pte_pfn, pte_present, pte_special, PTE_NX, PTE_PRESENT, PTE_RW,
};
use crate::physmem::PhysMem;

/// A broken invariant found by a checker: what, and two numbers that locate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    pub what: &'static str,
    pub a: usize,
    pub b: usize,
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({:#x}, {:#x})", self.what, self.a, self.b)
    }
}

impl std::error::Error for CheckError {}

pub(crate) fn fail<T>(what: &'static str, a: usize, b: usize) -> Result<T, CheckError> {
    Err(CheckError { what, a, b })
}

/// The CPUs' TLBs against the page tables of `mm` (see the top of the file).
pub(crate) fn check_tlb(mm: &Mm, phys: &PhysMem) -> Result<(), CheckError> {
    use crate::page_table::{PTE_ACCESSED, PTE_DIRTY};
    let mut bad: Option<CheckError> = None;
    phys.cpus.for_each_current_entry(&mm.context, &mut |_cpu, addr, pfn, writable| {
        if bad.is_some() {
            return;
        }
        let e = crate::page_table::pte_lookup(phys, mm.pgd, addr).map_or(0, |s| s.get());
        if e & PTE_PRESENT == 0 || pte_pfn(e) != pfn {
            bad = Some(CheckError {
                what: "TLB entry for a PTE that maps another frame or none",
                a: addr,
                b: pfn,
            });
        } else if writable
            && e & PTE_RW == 0
            && !(e & (PTE_ACCESSED | PTE_DIRTY) == 0 && phys.page(pfn).has(crate::page::PG_LAZYFREE))
        {
            bad = Some(CheckError { what: "writable TLB entry for a read-only PTE", a: addr, b: pfn });
        }
    });
    bad.map_or(Ok(()), Err)
}

/// Check `mm` against the frames, page tables and commit charge of `phys` and `sys`.
/// `user_base` is the start of the user range.
/// `mm`'s invariants. `others` are the other processes' address spaces on the machine,
/// whose VMAs share inodes and anon_vmas with `mm`'s and whose charges are in
/// `Committed_AS` too.
pub(crate) fn check_mm(
    mm: &Mm,
    phys: &PhysMem,
    sys: &VmSysctl,
    user_base: usize,
    others: &[&Mm],
) -> Result<(), CheckError> {
    let n = mm.vmas.check()?;
    let (mut total, mut exec, mut stack, mut data, mut locked, mut accounted) = (0, 0, 0, 0, 0, 0);
    let mut shmem_charged = 0;
    for v in mm.iter() {
        if v.start() < mm.mmap_min_addr.min(user_base + PAGE_SIZE) || v.end() > mm.task_size {
            return fail("VMA outside the user range", v.start(), v.end());
        }
        if v.start() % PAGE_SIZE != 0 || v.end() % PAGE_SIZE != 0 {
            return fail("VMA not page aligned", v.start(), v.end());
        }
        let f = v.flags();
        let pages = v.pages();
        total += pages;
        if is_exec_mapping(f) {
            exec += pages;
        } else if is_stack_mapping(f) {
            stack += pages;
        } else if is_data_mapping(f) {
            data += pages;
        }
        if f & VM_LOCKED != 0 {
            locked += pages;
        }
        if f & VM_ACCOUNT != 0 {
            accounted += pages;
        }
        if f & VM_SHARED != 0 && v.file().is_none() || v.is_shmem() && f & VM_SHARED == 0 {
            return fail("shared VMA without an inode, or a private one of shmem", v.start(), f as usize);
        }
        let all = || core::iter::once(mm).chain(others.iter().copied()).flat_map(|m| m.iter());
        if let Some(a) = v.anon() {
            let refs = all().filter(|w| w.anon() == Some(a)).count();
            if refs != a.refcount.get() {
                return fail("anon_vma reference count wrong", a.refcount.get(), refs);
            }
        }
        if let Some(file) = v.file() {
            let refs = all().filter(|w| w.file() == Some(file)).count() + file.nr_open.get();
            if refs != file.refcount.get() {
                return fail("inode reference count wrong", file.refcount.get(), refs);
            }
            // Count each inode's charge once: at its first VMA of all.
            if all().find(|w| w.file() == Some(file)) == Some(v) {
                shmem_charged += file.charged.get();
            }
        }
    }
    if n != mm.map_count() {
        return fail("map_count wrong", n, mm.map_count());
    }
    if (total, exec, stack, data) != (mm.total_vm, mm.exec_vm, mm.stack_vm, mm.data_vm) {
        return fail("total_vm/exec_vm/stack_vm/data_vm differ from the VMAs", total, mm.total_vm);
    }
    // Linux keeps counting the pages an MREMAP_DONTUNMAP move leaves behind unlocked, so
    // locked_vm may exceed what the VMAs hold, never fall short.
    if mm.locked_vm < locked {
        return fail("locked_vm below the locked VMAs", mm.locked_vm, locked);
    }
    // The other processes' charges: their VM_ACCOUNT pages, and the shmem inodes whose first
    // VMA of all is theirs.
    let all_vmas = || core::iter::once(mm).chain(others.iter().copied()).flat_map(|m| m.iter());
    for v in others.iter().flat_map(|o| o.iter()) {
        if v.flags() & VM_ACCOUNT != 0 {
            accounted += v.pages();
        }
        if let Some(file) = v.file() {
            if all_vmas().find(|w| w.file() == Some(file)) == Some(v) {
                shmem_charged += file.charged.get();
            }
        }
    }
    if (accounted + shmem_charged + sys.committed_leaked) as isize != sys.committed_as {
        return fail(
            "Committed_AS differs from the charged mappings",
            accounted + shmem_charged,
            sys.committed_as as usize,
        );
    }
    let mut rss = [0usize; NR_MM_COUNTERS];
    let mut bad: Option<CheckError> = None;
    let mut cursor = mm.vmas.first();
    for_each_pte(phys.direct_map(), mm.pgd, 0, usize::MAX, &mut |addr, slot| {
        if bad.is_some() {
            return;
        }
        let e = slot.get();
        while cursor.is_some_and(|v| v.end() <= addr) {
            cursor = cursor.and_then(|v| v.next());
        }
        let Some(v) = cursor.filter(|v| v.start() <= addr) else {
            bad = Some(CheckError { what: "PTE outside every VMA", a: addr, b: e as usize });
            return;
        };
        if crate::page_table::is_swap_pte(e) {
            let slot = crate::page_table::pte_to_swp_offset(e);
            if slot == 0 || slot >= phys.swap.max || phys.swap.swap_count(slot) == 0 {
                bad = Some(CheckError { what: "swap entry names no slot in use", a: addr, b: slot });
            }
            rss[MM_SWAPENTS] += 1;
            return;
        }
        if !pte_present(e) {
            bad = Some(CheckError { what: "PTE neither none nor present", a: addr, b: e as usize });
            return;
        }
        let f = v.flags();
        let allowed_present = f & VM_ACCESS_FLAGS != 0;
        if (e & PTE_PRESENT != 0) != allowed_present
            || (e & PTE_RW != 0 && f & VM_WRITE == 0)
            || (e & PTE_NX == 0 && e & PTE_PRESENT != 0 && f & VM_EXEC == 0)
        {
            bad = Some(CheckError { what: "PTE allows more than its VMA", a: addr, b: f as usize });
            return;
        }
        if pte_special(e) {
            if pte_pfn(e) != phys.zero_pfn || e & PTE_RW != 0 {
                bad = Some(CheckError {
                    what: "special PTE is not the read-only zero page",
                    a: addr,
                    b: e as usize,
                });
            }
            return;
        }
        let page = phys.page(pte_pfn(e));
        // Every mapping holds a reference; a page-cache or swap-cache page has the cache's
        // besides.
        let cache_ref = u32::from(!page.has(PG_ANON) || page.has(crate::page::PG_SWAPCACHE));
        if page.has(crate::page::PG_SWAPCACHE | crate::page::PG_LAZYFREE) && e & PTE_RW != 0 {
            bad = Some(CheckError {
                what: "writable PTE of a swap-cache or lazily freed page",
                a: addr,
                b: pte_pfn(e),
            });
            return;
        }
        if page.has(PG_BUDDY) || page.mapcount.get() == 0 {
            bad = Some(CheckError { what: "PTE maps a free or unmapped frame", a: addr, b: pte_pfn(e) });
        } else if page.refcount.get() != page.mapcount.get() + cache_ref {
            bad = Some(CheckError {
                what: "page reference count differs from its mappings",
                a: pte_pfn(e),
                b: page.refcount.get() as usize,
            });
        } else if page.has(PG_ANON) {
            if v.file().is_some() && f & VM_SHARED != 0 {
                bad = Some(CheckError { what: "anonymous page in a shared mapping", a: addr, b: 0 });
            }
            if v.anon().is_none() {
                bad = Some(CheckError { what: "anonymous page in a VMA without anon_vma", a: addr, b: 0 });
            }
            rss[MM_ANONPAGES] += 1;
        } else if page.has(PG_SWAPBACKED) {
            rss[MM_SHMEMPAGES] += 1;
        } else if page.has(PG_FILE) {
            if e & PTE_RW != 0 && !page.has(crate::page::PG_DIRTY) {
                bad = Some(CheckError { what: "writable PTE of a clean file page", a: addr, b: pte_pfn(e) });
            }
            rss[MM_FILEPAGES] += 1;
        } else {
            bad = Some(CheckError { what: "PTE maps a frame of no known kind", a: addr, b: pte_pfn(e) });
        }
    });
    if let Some(b) = bad {
        return Err(b);
    }
    if rss != mm.rss {
        return fail("RSS counters differ from the page tables", rss[MM_ANONPAGES], mm.rss[MM_ANONPAGES]);
    }
    let tables = count_tables(phys, mm.pgd, 3);
    if tables << PAGE_SHIFT != mm.pgtables_bytes {
        return fail(
            "pgtables_bytes differs from the tables reachable",
            tables << PAGE_SHIFT,
            mm.pgtables_bytes,
        );
    }
    Ok(())
}

/// The host files' page caches: each inode's dirty count against its dirty pages, the
/// machine's against the sum, and every cached page pointing back at its inode and index.
pub(crate) fn check_files(sb: &crate::shmem::SuperBlock, phys: &PhysMem) -> Result<(), CheckError> {
    let mut dirty_total = 0;
    let mut cur = sb.inodes;
    while let Some(inode) = cur {
        cur = inode.next.get();
        let (mut pages, mut dirty) = (0, 0);
        let mut from = 0;
        while let Some((index, pfn)) = crate::shmem::next_page(phys, &inode, from, usize::MAX) {
            from = index + 1;
            let p = phys.page(pfn);
            if p.mapping.get() != inode.addr() || p.index.get() != index as u64 || !p.has(PG_FILE) {
                return fail("page-cache page not of its inode and index", pfn, index);
            }
            pages += 1;
            dirty += usize::from(p.has(crate::page::PG_DIRTY));
        }
        if pages != inode.nr_pages.get() || dirty != inode.nr_dirty.get() {
            return fail("inode page or dirty count wrong", pages, dirty);
        }
        if inode.refcount.get() == 0 || inode.nr_open.get() > inode.refcount.get() {
            return fail("host inode reference count wrong", inode.refcount.get(), inode.nr_open.get());
        }
        dirty_total += dirty;
    }
    if dirty_total != phys.vmstat.nr_dirty {
        return fail("nr_dirty differs from the dirty pages", dirty_total, phys.vmstat.nr_dirty);
    }
    Ok(())
}
