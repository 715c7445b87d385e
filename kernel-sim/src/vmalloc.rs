//! vmalloc (Linux's `mm/vmalloc.c`): virtually contiguous kernel memory over frames taken
//! one at a time from the buddy allocator, mapped into the vmalloc range of the kernel's
//! own page table (`init_mm.pgd`) with a guard page after each area.
//!
//! Each area (`vm_struct`) and its array of frames are `kmalloc`ed; the areas form a list in
//! address order, searched first-fit from `VMALLOC_START` (Linux keeps free and busy areas
//! in trees; the order of the addresses it hands out is the same for one caller at a time).
//! The kernel page table is a four-level table like a process's, of the x86-64 4-level
//! layout (`kernel_layout`): its entries are present, writable, not executable and not
//! user-accessible. The simulation reaches vmalloc memory as the kernel reaches it through
//! the TLB, by the page table: `vmalloc_to_pfn`, or the area's frame array.
//! `/proc/vmallocinfo` lists the areas. The swap area's slot counts live here, as Linux's
//! `swap_map` does.

use core::fmt::{self, Write};

use crate::kernel_layout::{Arch, KernelLayout};
use crate::page::PAGE_SIZE;
use crate::page_table::{
    pte_alloc, pte_lookup, pte_pfn, PTE_ACCESSED, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_RW,
};
use crate::physmem::PhysMem;
use crate::slab::Slab;
use crate::Errno;

/// One area (`vm_struct`), a `kmalloc` object.
#[repr(C)]
struct VmStruct {
    addr: u64,
    /// Bytes, the guard page included (as `/proc/vmallocinfo` shows `size`).
    size: u64,
    nr_pages: usize,
    /// The `kmalloc`ed array of `nr_pages` frame numbers.
    pages: usize,
    next: usize,
    caller: &'static str,
}

/// The kernel's page table and its vmalloc areas.
pub struct Vmalloc {
    /// `init_mm.pgd`, allocated on the first vmalloc.
    pub pgd: usize,
    pub pgtables_bytes: usize,
    head: usize,
    /// Pages vmalloc holds (`nr_vmalloc_pages`, meminfo's `VmallocUsed`).
    pub nr_pages: usize,
}

impl Vmalloc {
    pub const fn new() -> Vmalloc {
        Vmalloc { pgd: 0, pgtables_bytes: 0, head: 0, nr_pages: 0 }
    }
}

impl Default for Vmalloc {
    fn default() -> Self {
        Self::new()
    }
}

fn layout() -> KernelLayout {
    KernelLayout::new(Arch::X86_64)
}

/// The area object at `p`.
fn area(p: usize) -> &'static VmStruct {
    // SAFETY: `p` is a `kmalloc` object holding a `VmStruct` (only this module makes one and
    // links it), alive until `vfree` unlinks and frees it; the machine lock serialises all
    // access, and callers do not keep the reference past the area's life.
    unsafe { &*(p as *const VmStruct) }
}

fn page_at(a: &VmStruct, i: usize) -> usize {
    if i >= a.nr_pages {
        crate::util::bug("vmalloc: page index beyond the area", i, a.nr_pages);
    }
    // SAFETY: `pages` is the area's kmalloc'ed array of `nr_pages` u32s (checked index).
    unsafe { (a.pages as *const u32).add(i).read() as usize }
}

/// `vmalloc(size)`: `size` bytes (rounded up to pages) of zeroed, virtually contiguous
/// kernel memory over frames that need not be. Returns its kernel address. `ENOMEM` for 0
/// bytes, no frame or no room in the range; nothing is left taken on failure.
pub(crate) fn vmalloc(
    vm: &mut Vmalloc,
    phys: &mut PhysMem,
    slab: &mut Slab,
    size: usize,
    caller: &'static str,
) -> Result<u64, Errno> {
    let nr = size.div_ceil(PAGE_SIZE);
    // More than all of memory can never be had (`__vmalloc_node_range` refuses it too).
    if nr == 0 || nr > phys.totalram_pages() {
        return Err(Errno::ENOMEM);
    }
    if vm.pgd == 0 {
        vm.pgd = crate::page_table::pgd_alloc(phys, &mut vm.pgtables_bytes)?;
    }
    let l = layout();
    let span = (nr as u64 + 1) * PAGE_SIZE as u64;
    // First fit in address order, after each area's guard page.
    let (mut start, mut prev, mut cur) = (l.vmalloc_start, 0usize, vm.head);
    while cur != 0 {
        let a = area(cur);
        if a.addr >= start + span {
            break;
        }
        start = a.addr + a.size;
        prev = cur;
        cur = a.next;
    }
    if start + span > l.vmalloc_end {
        return Err(Errno::ENOMEM);
    }
    let obj = slab.kmalloc(phys, core::mem::size_of::<VmStruct>())?;
    let pages = match slab.kmalloc(phys, nr * 4) {
        Ok(p) => p,
        Err(e) => {
            // SAFETY: just allocated, reached by nothing.
            unsafe { slab.kfree(phys, obj) };
            return Err(e);
        }
    };
    let mut done = 0;
    let mut err = None;
    while done < nr {
        let pfn = match phys.alloc_pages(0, true, crate::buddy::MIGRATE_UNMOVABLE) {
            Ok(p) => p,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        let va = start + (done * PAGE_SIZE) as u64;
        match pte_alloc(phys, &mut vm.pgtables_bytes, vm.pgd, va as usize) {
            Ok(slot) => {
                slot.set(((pfn as u64) << 12) | PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY | PTE_NX)
            }
            Err(e) => {
                // SAFETY: just allocated, mapped nowhere.
                unsafe { phys.free_pages(pfn, 0) };
                err = Some(e);
                break;
            }
        }
        // SAFETY: slot `done < nr` of the kmalloc'ed array of `nr` u32s.
        unsafe { (pages as *mut u32).add(done).write(pfn as u32) };
        done += 1;
    }
    // SAFETY: a kmalloc object of at least size_of::<VmStruct>() bytes, ours alone.
    unsafe {
        (obj as *mut VmStruct).write(VmStruct {
            addr: start,
            size: span,
            nr_pages: done,
            pages,
            next: cur,
            caller,
        })
    };
    if let Some(e) = err {
        // SAFETY: the area is not linked yet; its pages are mapped only in its range.
        unsafe { release(vm, phys, slab, obj) };
        return Err(e);
    }
    if prev == 0 {
        vm.head = obj;
    } else {
        // SAFETY: `prev` is a linked area (see `area`); only its link changes.
        unsafe { (*(prev as *mut VmStruct)).next = obj };
    }
    vm.nr_pages += nr;
    Ok(start)
}

/// Unmap and free an area's pages, its frame array and the area itself (not its link).
///
/// # Safety
/// Nothing uses the area's memory or the object afterwards.
unsafe fn release(vm: &mut Vmalloc, phys: &mut PhysMem, slab: &mut Slab, obj: usize) {
    let a = area(obj);
    for i in 0..a.nr_pages {
        let va = a.addr as usize + i * PAGE_SIZE;
        if let Some(slot) = pte_lookup(phys, vm.pgd, va) {
            slot.set(0);
        }
        // SAFETY: the caller gives the memory up; its only mapping was just cleared.
        unsafe { phys.free_pages(page_at(a, i), 0) };
    }
    let pages = a.pages;
    // SAFETY: the caller's promise; the array and the object came from kmalloc.
    unsafe {
        slab.kfree(phys, pages);
        slab.kfree(phys, obj);
    }
}

/// `vfree(addr)` of what `vmalloc` returned; an address that starts no area is a bug.
///
/// # Safety
/// Nothing uses the memory afterwards.
pub(crate) unsafe fn vfree(vm: &mut Vmalloc, phys: &mut PhysMem, slab: &mut Slab, addr: u64) {
    let (mut prev, mut cur) = (0usize, vm.head);
    while cur != 0 && area(cur).addr != addr {
        prev = cur;
        cur = area(cur).next;
    }
    if cur == 0 {
        crate::util::bug("vfree of an address vmalloc did not give", addr as usize, 0);
    }
    let next = area(cur).next;
    if prev == 0 {
        vm.head = next;
    } else {
        // SAFETY: `prev` is a linked area; only its link changes.
        unsafe { (*(prev as *mut VmStruct)).next = next };
    }
    vm.nr_pages -= area(cur).nr_pages;
    // SAFETY: the caller's promise; the area is unlinked.
    unsafe { release(vm, phys, slab, cur) };
}

/// The frame behind kernel address `addr` of the vmalloc range (`vmalloc_to_pfn`), by the
/// kernel page table.
pub(crate) fn vmalloc_to_pfn(vm: &Vmalloc, phys: &PhysMem, addr: u64) -> Option<usize> {
    if vm.pgd == 0 {
        return None;
    }
    let e = pte_lookup(phys, vm.pgd, addr as usize)?.get();
    (e & PTE_PRESENT != 0).then(|| pte_pfn(e))
}

/// The frames of the area starting at `addr`, in order (`vm_struct.pages`).
pub(crate) fn area_pages(vm: &Vmalloc, addr: u64) -> Option<(*const u32, usize)> {
    let mut cur = vm.head;
    while cur != 0 {
        let a = area(cur);
        if a.addr == addr {
            return Some((a.pages as *const u32, a.nr_pages));
        }
        cur = a.next;
    }
    None
}

/// One line of `/proc/vmallocinfo`, copied out of the locked state.
#[derive(Clone, Copy)]
pub struct VmallocLine {
    pub addr: u64,
    pub size: u64,
    pub pages: usize,
    pub caller: &'static str,
}

/// Up to `out.len()` areas starting at or above `from`, in address order; returns how many.
pub(crate) fn snapshot(vm: &Vmalloc, from: u64, out: &mut [VmallocLine]) -> usize {
    let (mut n, mut cur) = (0, vm.head);
    while cur != 0 && area(cur).addr < from {
        cur = area(cur).next;
    }
    while cur != 0 && n < out.len() {
        let a = area(cur);
        out[n] = VmallocLine { addr: a.addr, size: a.size, pages: a.nr_pages, caller: a.caller };
        n += 1;
        cur = a.next;
    }
    n
}

/// `/proc/vmallocinfo`'s line for an area (`s_show`).
pub(crate) fn write_line(l: &VmallocLine, w: &mut dyn Write) -> fmt::Result {
    writeln!(
        w,
        "0x{:016x}-0x{:016x} {:>7} {} pages={} vmalloc N0={}",
        l.addr,
        l.addr + l.size,
        l.size,
        l.caller,
        l.pages,
        l.pages
    )
}
