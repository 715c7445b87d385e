//! Four-level page tables (PGD, PUD, PMD, PTE; nine bits of the address each, 4 KiB
//! pages) whose tables are frames from the buddy allocator, read and written through the
//! direct map. Entries use x86-64's bits where they exist: present, writable, user,
//! accessed, dirty, no-execute; a page of a `PROT_NONE` VMA is `PROTNONE` rather than
//! present (as x86 reuses the global bit), and the shared zero page is marked `SPECIAL`.

use core::cell::Cell;
use core::ptr::NonNull;

use crate::mm::{VmFlags, VM_ACCESS_FLAGS, VM_EXEC, VM_WRITE};
use crate::page::{PAGE_SHIFT, PAGE_SIZE, PG_PGTABLE};
use crate::physmem::{DirectMap, PhysMem};
use crate::Errno;

pub const PTRS_PER_TABLE: usize = 512;
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
pub const PTE_PROTNONE: u64 = 1 << 8;
pub const PTE_SPECIAL: u64 = 1 << 9;
/// A software bit: the entry is not present and holds a swap slot in its frame bits
/// (Linux's `swp_entry_t` in a non-present PTE, of the machine's one swap area).
pub const PTE_SWP: u64 = 1 << 10;
pub const PTE_NX: u64 = 1 << 63;
const PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
const TABLE_ENTRY: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED;

/// Span of memory one entry of a table at `level` maps (level 0 is the PTE table).
pub const fn entry_span(level: u32) -> usize {
    1usize << (PAGE_SHIFT + 9 * level)
}

#[inline]
fn index(addr: usize, level: u32) -> usize {
    (addr >> (PAGE_SHIFT + 9 * level)) & (PTRS_PER_TABLE - 1)
}

#[inline]
pub fn pte_none(e: u64) -> bool {
    e == 0
}

/// Whether the entry maps a frame (readable or not).
#[inline]
pub fn pte_present(e: u64) -> bool {
    e & (PTE_PRESENT | PTE_PROTNONE) != 0
}

/// Whether the entry holds a swap slot rather than a frame (`is_swap_pte`).
#[inline]
pub fn is_swap_pte(e: u64) -> bool {
    e & (PTE_PRESENT | PTE_PROTNONE) == 0 && e & PTE_SWP != 0
}

/// The non-present entry for swap slot `slot` (`swp_entry_to_pte`).
#[inline]
pub fn swp_entry_to_pte(slot: usize) -> u64 {
    (((slot as u64) << PAGE_SHIFT) & PFN_MASK) | PTE_SWP
}

/// The swap slot a swap entry holds (`swp_offset`).
#[inline]
pub fn pte_to_swp_offset(e: u64) -> usize {
    ((e & PFN_MASK) >> PAGE_SHIFT) as usize
}

#[inline]
pub fn pte_pfn(e: u64) -> usize {
    ((e & PFN_MASK) >> PAGE_SHIFT) as usize
}

/// The entry pointed at another frame, with every other bit kept (the PTE a page
/// migration leaves: `remove_migration_pte` rebuilds it so).
#[inline]
pub fn pte_set_pfn(e: u64, pfn: usize) -> u64 {
    (e & !PFN_MASK) | (((pfn as u64) << PAGE_SHIFT) & PFN_MASK)
}

#[inline]
pub fn pte_write(e: u64) -> bool {
    e & PTE_RW != 0 && e & PTE_PRESENT != 0
}

#[inline]
pub fn pte_special(e: u64) -> bool {
    e & PTE_SPECIAL != 0
}

/// The entry mapping `pfn` with a VMA's protection (`mk_pte(page, vm_page_prot)`); write
/// permission is added separately where the fault allows it.
pub fn mk_pte(pfn: usize, flags: VmFlags) -> u64 {
    let mut e = ((pfn as u64) << PAGE_SHIFT) & PFN_MASK;
    if flags & VM_ACCESS_FLAGS == 0 {
        return e | PTE_PROTNONE;
    }
    e |= PTE_PRESENT | PTE_USER | PTE_ACCESSED;
    if flags & VM_EXEC == 0 {
        e |= PTE_NX;
    }
    e
}

/// `mk_pte` plus writable and dirty when the VMA is writable.
pub fn mk_pte_writable(pfn: usize, flags: VmFlags) -> u64 {
    let e = mk_pte(pfn, flags);
    if flags & VM_WRITE != 0 && e & PTE_PRESENT != 0 {
        e | PTE_RW | PTE_DIRTY
    } else {
        e
    }
}

/// The entry with its protection changed to `flags`, keeping frame, dirty and special
/// bits; `writable` says whether the new entry may allow writes.
pub fn pte_modify(e: u64, flags: VmFlags, writable: bool) -> u64 {
    let keep = e & (PFN_MASK | PTE_DIRTY | PTE_SPECIAL | PTE_ACCESSED);
    let mut n = (mk_pte(0, flags) & !PTE_ACCESSED) | keep;
    if writable && flags & VM_WRITE != 0 && n & PTE_PRESENT != 0 {
        n |= PTE_RW;
    }
    n
}

/// The host protection that makes the hardware behave as the entry says.
pub fn pte_host_prot(e: u64) -> i32 {
    if e & PTE_PRESENT == 0 {
        return libc::PROT_NONE;
    }
    let mut p = libc::PROT_READ;
    if e & PTE_RW != 0 {
        p |= libc::PROT_WRITE;
    }
    if e & PTE_NX == 0 {
        p |= libc::PROT_EXEC;
    }
    p
}

/// One page-table entry, in a table frame of the direct map. Like a `KPtr`, a slot is
/// valid until its table is freed, and only `free_pgtables` frees tables: its caller
/// promises the free rule (see `kptr`) for the slots of the tables it frees.
#[derive(Clone, Copy)]
pub struct PteSlot(NonNull<Cell<u64>>);

impl PteSlot {
    #[inline]
    pub fn get(self) -> u64 {
        // SAFETY: `slot_in` made the slot inside a frame of the direct map (`DirectMap::frame`
        // checks the frame exists), which stays mapped until `PhysMem::shutdown`, whose caller
        // promises no slot is used after it; the entry is aligned, and a Cell may be reached
        // through other references too. A table is freed only by `free_pgtables`, whose
        // caller promises no slot of it is used afterwards, so the frame is still a table.
        unsafe { self.0.as_ref().get() }
    }
    #[inline]
    pub fn set(self, v: u64) {
        // SAFETY: as in `get`.
        unsafe { self.0.as_ref().set(v) }
    }
}

fn slot(phys: &PhysMem, table: usize, i: usize) -> PteSlot {
    slot_in(phys.direct_map(), table, i)
}

fn slot_in(direct_map: DirectMap, table: usize, i: usize) -> PteSlot {
    let p = (direct_map.frame(table) as *mut Cell<u64>).wrapping_add(i & (PTRS_PER_TABLE - 1));
    match NonNull::new(p) {
        Some(p) => PteSlot(p),
        None => crate::util::bug("page table slot at null", table, i),
    }
}

/// Allocate a zeroed table frame.
fn alloc_table(phys: &mut PhysMem, pgtables_bytes: &mut usize) -> Result<usize, Errno> {
    let pfn = phys.alloc_pages(0, true, crate::buddy::MIGRATE_UNMOVABLE)?;
    phys.page(pfn).set(PG_PGTABLE);
    phys.vmstat.nr_page_table_pages += 1;
    *pgtables_bytes += PAGE_SIZE;
    Ok(pfn)
}

/// Free table frame `pfn`.
///
/// # Safety
/// No entry of a live table points to it any more (or will, before anything walks the
/// tables again), and no `PteSlot` into it is used afterwards.
unsafe fn free_table(phys: &mut PhysMem, pgtables_bytes: &mut usize, pfn: usize) {
    if !phys.page(pfn).has(PG_PGTABLE) {
        crate::util::bug("free_table: not a page table", pfn, 0);
    }
    phys.page(pfn).clear(PG_PGTABLE);
    phys.vmstat.nr_page_table_pages -= 1;
    *pgtables_bytes -= PAGE_SIZE;
    // SAFETY: a table (checked) that nothing points to and whose slots are not used again
    // (the caller's promise); tables are mapped nowhere but the direct map.
    unsafe { phys.free_pages(pfn, 0) };
}

/// A new, empty top-level table.
pub fn pgd_alloc(phys: &mut PhysMem, pgtables_bytes: &mut usize) -> Result<usize, Errno> {
    alloc_table(phys, pgtables_bytes)
}

/// Free an address space's tables, the top-level one included (`pgd_free` after the last
/// `free_pgtables`). They must map no page (checked).
///
/// # Safety
/// No `PteSlot` into any of them is used afterwards, and the PGD is not used again.
pub unsafe fn pgd_free(phys: &mut PhysMem, pgtables_bytes: &mut usize, pgd: usize) {
    // SAFETY: the caller's promise covers every table below the PGD.
    unsafe {
        free_pgtables(phys, pgtables_bytes, pgd, 0, 0, 0, usize::MAX, &mut crate::tlb::MmuGather::new())
    };
    // SAFETY: the caller's promise; nothing points to a PGD.
    unsafe { free_table(phys, pgtables_bytes, pgd) };
}

/// The PTE slot for `addr`, if every level above it exists.
pub fn pte_lookup(phys: &PhysMem, pgd: usize, addr: usize) -> Option<PteSlot> {
    let mut table = pgd;
    for level in (1..=3).rev() {
        let e = slot(phys, table, index(addr, level)).get();
        if e & PTE_PRESENT == 0 {
            return None;
        }
        table = pte_pfn(e);
    }
    Some(slot(phys, table, index(addr, 0)))
}

/// The PTE slot for `addr`, allocating any missing table on the way (`pte_alloc`).
pub fn pte_alloc(
    phys: &mut PhysMem,
    pgtables_bytes: &mut usize,
    pgd: usize,
    addr: usize,
) -> Result<PteSlot, Errno> {
    let mut table = pgd;
    for level in (1..=3).rev() {
        let s = slot(phys, table, index(addr, level));
        let e = s.get();
        table = if e & PTE_PRESENT == 0 {
            let t = alloc_table(phys, pgtables_bytes)?;
            s.set(((t as u64) << PAGE_SHIFT) | TABLE_ENTRY);
            t
        } else {
            pte_pfn(e)
        };
    }
    Ok(slot(phys, table, index(addr, 0)))
}

/// Call `f(addr, slot)` for every non-empty PTE in `[start, end)`, in address order,
/// skipping whole tables that are absent. Taking the `DirectMap` rather than the
/// `PhysMem` leaves the callback free to allocate and free frames (it must not free page
/// tables).
pub fn for_each_pte(
    direct_map: DirectMap,
    pgd: usize,
    start: usize,
    end: usize,
    f: &mut dyn FnMut(usize, PteSlot),
) {
    walk(direct_map, pgd, 3, 0, start, end, f);
}

fn walk(
    dm: DirectMap,
    table: usize,
    level: u32,
    base: usize,
    start: usize,
    end: usize,
    f: &mut dyn FnMut(usize, PteSlot),
) {
    let span = entry_span(level);
    let first = if start > base { (start - base) / span } else { 0 };
    for i in first..PTRS_PER_TABLE {
        let a = base + i * span;
        if a >= end {
            break;
        }
        let s = slot_in(dm, table, i);
        let e = s.get();
        if level == 0 {
            if !pte_none(e) {
                f(a, s);
            }
        } else if e & PTE_PRESENT != 0 {
            walk(dm, pte_pfn(e), level - 1, a, start.max(a), end, f);
        }
    }
}

/// Free the tables that map only `[floor, ceiling)` — space no VMA uses any more — among
/// those that map some of `[start, end)` (Linux's `free_pgtables`). `ceiling == 0` means
/// the top of the address space. A table freed must map no page (checked).
///
/// # Safety
/// The free rule (see `kptr`) for the slots of the tables freed: no `PteSlot` into a
/// table that maps only `[floor, ceiling)` is used afterwards.
#[allow(clippy::too_many_arguments)]
pub unsafe fn free_pgtables(
    phys: &mut PhysMem,
    pgtables_bytes: &mut usize,
    pgd: usize,
    floor: usize,
    ceiling: usize,
    start: usize,
    end: usize,
    tlb: &mut crate::tlb::MmuGather,
) {
    let ceiling = if ceiling == 0 { usize::MAX } else { ceiling };
    // SAFETY: the caller's promise, for the tables below the PGD that map only
    // [floor, ceiling).
    unsafe { free_level(phys, pgtables_bytes, pgd, 3, 0, floor, ceiling, start, end, tlb) };
}

/// `free_pgtables` below `table`, a table at `level` mapping from `base`.
///
/// # Safety
/// As for `free_pgtables`.
#[allow(clippy::too_many_arguments)]
unsafe fn free_level(
    phys: &mut PhysMem,
    pgtables_bytes: &mut usize,
    table: usize,
    level: u32,
    base: usize,
    floor: usize,
    ceiling: usize,
    start: usize,
    end: usize,
    tlb: &mut crate::tlb::MmuGather,
) {
    let span = entry_span(level);
    let first = if start > base { (start - base) / span } else { 0 };
    for i in first..PTRS_PER_TABLE {
        let a = base + i * span;
        if a >= end {
            break;
        }
        let s = slot(phys, table, i);
        let e = s.get();
        if e & PTE_PRESENT == 0 {
            continue;
        }
        let child = pte_pfn(e);
        if a >= floor && a.checked_add(span).is_some_and(|top| top <= ceiling) {
            // SAFETY: `child` maps only [floor, ceiling) (the caller's promise covers its
            // slots), and the entry pointing at it is cleared right after.
            unsafe { free_subtree(phys, pgtables_bytes, child, level - 1, a, tlb) };
            s.set(0);
        } else if level > 1 {
            // SAFETY: as for this call.
            unsafe {
                free_level(phys, pgtables_bytes, child, level - 1, a, floor, ceiling, start.max(a), end, tlb)
            };
        }
    }
}

/// Free `table`, a table at `level` mapping from `base`, and every table below it; each
/// table freed adds the start of what it mapped to `tlb` (`pte_free_tlb`, `pmd_free_tlb`).
///
/// # Safety
/// As for `free_table`, for `table` and every table below it.
unsafe fn free_subtree(
    phys: &mut PhysMem,
    pgtables_bytes: &mut usize,
    table: usize,
    level: u32,
    base: usize,
    tlb: &mut crate::tlb::MmuGather,
) {
    let span = entry_span(level);
    for i in 0..PTRS_PER_TABLE {
        let e = slot(phys, table, i).get();
        if level == 0 {
            if !pte_none(e) {
                crate::util::bug("free_pgtables: freeing a table that still maps a page", table, i);
            }
        } else if e & PTE_PRESENT != 0 {
            // SAFETY: a table below `table`, which goes with it (the caller's promise).
            unsafe { free_subtree(phys, pgtables_bytes, pte_pfn(e), level - 1, base + i * span, tlb) };
        }
    }
    tlb.table_freed(base, level);
    // SAFETY: the caller's promise for `table`; the tables below it are freed already.
    unsafe { free_table(phys, pgtables_bytes, table) };
}

/// Count the tables from `table` down (for the checker).
pub fn count_tables(phys: &PhysMem, table: usize, level: u32) -> usize {
    let mut n = 1;
    if level > 0 {
        for i in 0..PTRS_PER_TABLE {
            let e = slot(phys, table, i).get();
            if e & PTE_PRESENT != 0 {
                n += count_tables(phys, pte_pfn(e), level - 1);
            }
        }
    }
    n
}
