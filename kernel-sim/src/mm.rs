//! The address space: `Mm` (Linux's `mm_struct`) and its `Vma`s (`vm_area_struct`).
//!
//! VMAs are slab objects kept in an ordered, augmented AVL tree (see `vma_tree`) and on a
//! doubly linked list in address order, as Linux kept them before the maple tree. The
//! counters follow `mm_struct`: `total_vm`, `data_vm`, `exec_vm`, `stack_vm`, `locked_vm`,
//! `map_count`, RSS by kind and its high-water mark.
//!
//! Here too: the `VM_*` flags, the lookups (`find_vma`, `vma_lookup`, `find_vma_prev`,
//! `find_vma_intersection`), and the limits a mapping is checked against (`may_expand_vm`
//! for `RLIMIT_AS` and `RLIMIT_DATA`, `mlock_future_ok` for `RLIMIT_MEMLOCK`).

use core::cell::Cell;

use crate::kptr::KPtr;
use crate::page::PAGE_SHIFT;
use crate::vma_tree::VmaTree;

pub type VmFlags = u64;
pub const VM_READ: VmFlags = 0x1;
pub const VM_WRITE: VmFlags = 0x2;
pub const VM_EXEC: VmFlags = 0x4;
pub const VM_SHARED: VmFlags = 0x8;
pub const VM_MAYREAD: VmFlags = 0x10;
pub const VM_MAYWRITE: VmFlags = 0x20;
pub const VM_MAYEXEC: VmFlags = 0x40;
pub const VM_MAYSHARE: VmFlags = 0x80;
pub const VM_GROWSDOWN: VmFlags = 0x100;
pub const VM_PFNMAP: VmFlags = 0x400;
pub const VM_LOCKED: VmFlags = 0x2000;
pub const VM_IO: VmFlags = 0x4000;
pub const VM_SEQ_READ: VmFlags = 0x8000;
pub const VM_RAND_READ: VmFlags = 0x10000;
pub const VM_DONTCOPY: VmFlags = 0x20000;
pub const VM_DONTEXPAND: VmFlags = 0x40000;
pub const VM_LOCKONFAULT: VmFlags = 0x80000;
pub const VM_ACCOUNT: VmFlags = 0x100000;
pub const VM_NORESERVE: VmFlags = 0x200000;
pub const VM_WIPEONFORK: VmFlags = 0x2000000;
pub const VM_DONTDUMP: VmFlags = 0x4000000;
pub const VM_MIXEDMAP: VmFlags = 0x10000000;
pub const VM_SOFTDIRTY: VmFlags = 0x8000000;
pub const VM_HUGEPAGE: VmFlags = 0x20000000;
pub const VM_NOHUGEPAGE: VmFlags = 0x40000000;
pub const VM_MERGEABLE: VmFlags = 0x80000000;

pub const VM_ACCESS_FLAGS: VmFlags = VM_READ | VM_WRITE | VM_EXEC;
pub const VM_STACK: VmFlags = VM_GROWSDOWN;
pub const VM_LOCKED_MASK: VmFlags = VM_LOCKED | VM_LOCKONFAULT;
/// Mappings that never merge with a neighbour (`VM_SPECIAL`).
pub const VM_SPECIAL: VmFlags = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;

/// Special mappings the kernel installs at exec (`vm_special_mapping`), by name.
pub const SPECIAL_VVAR: u8 = 1;
pub const SPECIAL_VVAR_VCLOCK: u8 = 2;
pub const SPECIAL_VDSO: u8 = 3;
/// x86-64's `VM_DATA_DEFAULT_FLAGS` (no READ_IMPLIES_EXEC personality).
pub const VM_DATA_DEFAULT_FLAGS: VmFlags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
pub const VM_STACK_FLAGS: VmFlags = VM_STACK | VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT;

/// `stack_guard_gap`: 256 pages kept free below a stack VMA.
pub const STACK_GUARD_GAP: usize = 256 << PAGE_SHIFT;

/// RSS counters, as `mm->rss_stat`; `MM_SWAPENTS` counts the swap entries in the page
/// tables (`VmSwap`), which are not resident.
pub const MM_FILEPAGES: usize = 0;
pub const MM_ANONPAGES: usize = 1;
pub const MM_SWAPENTS: usize = 2;
pub const MM_SHMEMPAGES: usize = 3;
pub const NR_MM_COUNTERS: usize = 4;

/// What an anonymous page belongs to. Two VMAs with different anon_vmas cannot merge:
/// their pages were faulted under different ones (`is_mergeable_anon_vma`).
#[repr(C)]
pub struct AnonVma {
    /// VMAs that point here.
    pub refcount: Cell<usize>,
    /// A serial number, for views and tests.
    pub id: Cell<u64>,
}

/// One mapping: `[vm_start, vm_end)` with one set of flags.
#[repr(C)]
pub struct Vma {
    pub vm_start: Cell<usize>,
    pub vm_end: Cell<usize>,
    pub vm_flags: Cell<VmFlags>,
    /// Offset in pages: in the file for file and shmem mappings; for private anonymous
    /// mappings, the page number of the address where the mapping was first created.
    pub vm_pgoff: Cell<usize>,
    pub anon_vma: Cell<Option<KPtr<AnonVma>>>,
    pub vm_file: Cell<Option<KPtr<crate::shmem::Inode>>>,
    pub vm_next: Cell<Option<VmaPtr>>,
    pub vm_prev: Cell<Option<VmaPtr>>,
    pub rb_left: Cell<Option<VmaPtr>>,
    pub rb_right: Cell<Option<VmaPtr>>,
    pub rb_parent: Cell<Option<VmaPtr>>,
    /// The largest free gap below any VMA of this subtree (augmented tree).
    pub rb_subtree_gap: Cell<usize>,
    pub rb_height: Cell<u32>,
    /// Which special mapping this is (`SPECIAL_*`), or 0.
    pub vm_special: Cell<u8>,
}

pub type VmaPtr = KPtr<Vma>;

impl Vma {
    #[inline]
    pub fn start(&self) -> usize {
        self.vm_start.get()
    }
    #[inline]
    pub fn end(&self) -> usize {
        self.vm_end.get()
    }
    #[inline]
    pub fn flags(&self) -> VmFlags {
        self.vm_flags.get()
    }
    #[inline]
    pub fn pgoff(&self) -> usize {
        self.vm_pgoff.get()
    }
    #[inline]
    pub fn pages(&self) -> usize {
        (self.end() - self.start()) >> PAGE_SHIFT
    }
    #[inline]
    pub fn next(&self) -> Option<VmaPtr> {
        self.vm_next.get()
    }
    #[inline]
    pub fn prev(&self) -> Option<VmaPtr> {
        self.vm_prev.get()
    }
    #[inline]
    pub fn anon(&self) -> Option<KPtr<AnonVma>> {
        self.anon_vma.get()
    }
    #[inline]
    pub fn file(&self) -> Option<KPtr<crate::shmem::Inode>> {
        self.vm_file.get()
    }
    pub fn is_anonymous(&self) -> bool {
        self.file().is_none()
    }
    pub fn is_shmem(&self) -> bool {
        self.file().is_some_and(|f| f.is_shmem())
    }
    pub fn is_accessible(&self) -> bool {
        self.flags() & VM_ACCESS_FLAGS != 0
    }
    /// The page offset that `addr` has in this VMA's object.
    pub fn pgoff_at(&self, addr: usize) -> usize {
        self.pgoff() + ((addr - self.start()) >> PAGE_SHIFT)
    }
    /// The addresses at which this VMA maps the pages `[lo, hi)` of its object, if any.
    pub fn object_range(&self, lo: usize, hi: usize) -> Option<(usize, usize)> {
        let (lo, hi) = (lo.max(self.pgoff()), hi.min(self.pgoff() + self.pages()));
        (lo < hi).then(|| {
            (
                self.start() + ((lo - self.pgoff()) << PAGE_SHIFT),
                self.start() + ((hi - self.pgoff()) << PAGE_SHIFT),
            )
        })
    }

    /// The lowest address this VMA claims, counting the guard gap below a stack.
    pub fn start_gap(&self) -> usize {
        let start = self.start();
        if self.flags() & VM_GROWSDOWN != 0 {
            start.saturating_sub(STACK_GUARD_GAP)
        } else {
            start
        }
    }
    /// The end of the VMA (no VMA grows up on x86-64).
    pub fn end_gap(&self) -> usize {
        self.end()
    }
}

pub fn is_exec_mapping(flags: VmFlags) -> bool {
    flags & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC
}
pub fn is_stack_mapping(flags: VmFlags) -> bool {
    flags & VM_STACK == VM_STACK
}
pub fn is_data_mapping(flags: VmFlags) -> bool {
    flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE
}

/// `calc_vm_prot_bits`.
pub fn calc_vm_prot_bits(prot: i32) -> VmFlags {
    let mut f = 0;
    if prot & libc::PROT_READ != 0 {
        f |= VM_READ;
    }
    if prot & libc::PROT_WRITE != 0 {
        f |= VM_WRITE;
    }
    if prot & libc::PROT_EXEC != 0 {
        f |= VM_EXEC;
    }
    f
}

/// Resource limits the address space is checked against (`rlimit(RLIMIT_*)`), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimits {
    pub data: u64,
    pub address_space: u64,
    pub stack: u64,
    pub memlock: u64,
}

pub const RLIM_INFINITY: u64 = u64::MAX;

impl Default for Rlimits {
    fn default() -> Self {
        Rlimits { data: RLIM_INFINITY, address_space: RLIM_INFINITY, stack: 8 << 20, memlock: 8 << 20 }
    }
}

// Default only for tests that build an address space by hand: pgd 0 is no page table.
#[cfg_attr(test, derive(Default))]
pub struct Mm {
    pub vmas: VmaTree,
    /// Frame of the top-level page table.
    pub pgd: usize,
    /// The top of user space (`TASK_SIZE`), exclusive.
    pub task_size: usize,
    /// The lowest address a mapping may use (`mmap_min_addr`).
    pub mmap_min_addr: usize,
    pub mmap_base: usize,
    pub mmap_legacy_base: usize,
    pub start_code: usize,
    pub end_code: usize,
    pub start_data: usize,
    pub end_data: usize,
    pub start_brk: usize,
    pub brk: usize,
    pub start_stack: usize,
    pub total_vm: usize,
    pub data_vm: usize,
    pub exec_vm: usize,
    pub stack_vm: usize,
    pub locked_vm: usize,
    pub rss: [usize; NR_MM_COUNTERS],
    pub hiwater_rss: usize,
    pub hiwater_vm: usize,
    pub pgtables_bytes: usize,
    pub def_flags: VmFlags,
    /// Faults handled for the process without reading a file (`min_flt`) and with
    /// (`maj_flt`).
    pub min_flt: u64,
    pub maj_flt: u64,
    pub next_anon_vma_id: u64,
    pub rlimits: Rlimits,
    /// Where exec put the argument and environment strings.
    pub arg_start: usize,
    pub arg_end: usize,
    pub env_start: usize,
    pub env_end: usize,
    /// The auxiliary vector exec gave the program (`saved_auxv`), and the program's name
    /// (`comm`); both empty before an exec.
    pub saved_auxv: SavedAuxv,
    /// Whether the image is one exec laid out (rather than boot's synthetic one): its maps
    /// end with the `[vsyscall]` gate, as x86-64's do.
    pub exec_image: bool,
    /// What the CPUs' TLBs know of this mm (`mm->context`).
    pub context: crate::cpu_tlbstate::TlbContext,
}

/// `mm->saved_auxv` (`AT_VECTOR_SIZE` words) and the task's `comm`.
#[derive(Clone, Copy)]
pub struct SavedAuxv {
    pub words: [u64; 64],
    pub len: usize,
    pub comm: [u8; 16],
}

impl Default for SavedAuxv {
    fn default() -> Self {
        SavedAuxv { words: [0; 64], len: 0, comm: [0; 16] }
    }
}

impl Mm {
    /// An address space with nothing in it (a free process slot's).
    pub fn empty() -> Mm {
        Mm {
            vmas: VmaTree::new(),
            pgd: 0,
            task_size: 0,
            mmap_min_addr: 0,
            mmap_base: 0,
            mmap_legacy_base: 0,
            start_code: 0,
            end_code: 0,
            start_data: 0,
            end_data: 0,
            start_brk: 0,
            brk: 0,
            start_stack: 0,
            total_vm: 0,
            data_vm: 0,
            exec_vm: 0,
            stack_vm: 0,
            locked_vm: 0,
            rss: [0; NR_MM_COUNTERS],
            hiwater_rss: 0,
            hiwater_vm: 0,
            pgtables_bytes: 0,
            def_flags: 0,
            min_flt: 0,
            maj_flt: 0,
            next_anon_vma_id: 1,
            rlimits: Rlimits::default(),
            arg_start: 0,
            arg_end: 0,
            env_start: 0,
            env_end: 0,
            saved_auxv: SavedAuxv::default(),
            exec_image: false,
            context: Default::default(),
        }
    }

    pub fn map_count(&self) -> usize {
        self.vmas.len()
    }

    pub fn rss(&self) -> usize {
        self.rss[MM_FILEPAGES] + self.rss[MM_ANONPAGES] + self.rss[MM_SHMEMPAGES]
    }

    /// Record the RSS peak before RSS goes down (`update_hiwater_rss`).
    pub fn update_hiwater_rss(&mut self) {
        self.hiwater_rss = self.hiwater_rss.max(self.rss());
    }

    pub fn update_hiwater_vm(&mut self) {
        self.hiwater_vm = self.hiwater_vm.max(self.total_vm);
    }

    /// The first VMA that ends above `addr`.
    pub fn find_vma(&self, addr: usize) -> Option<VmaPtr> {
        self.vmas.find(addr)
    }

    /// The VMA containing `addr`.
    pub fn vma_lookup(&self, addr: usize) -> Option<VmaPtr> {
        self.find_vma(addr).filter(|v| v.start() <= addr)
    }

    /// The first VMA that overlaps `[start, end)`.
    pub fn find_vma_intersection(&self, start: usize, end: usize) -> Option<VmaPtr> {
        self.find_vma(start).filter(|v| v.start() < end)
    }

    /// `find_vma` and the VMA before the one found (or the last VMA if none is found).
    pub fn find_vma_prev(&self, addr: usize) -> (Option<VmaPtr>, Option<VmaPtr>) {
        match self.find_vma(addr) {
            Some(v) => (Some(v), v.prev()),
            None => (None, self.vmas.last()),
        }
    }

    /// Count a mapping's pages in `total_vm` and the class its flags put it in.
    pub fn vm_stat_account(&mut self, flags: VmFlags, npages: isize) {
        let add = |c: &mut usize| *c = c.wrapping_add_signed(npages);
        add(&mut self.total_vm);
        if is_exec_mapping(flags) {
            add(&mut self.exec_vm);
        } else if is_stack_mapping(flags) {
            add(&mut self.stack_vm);
        } else if is_data_mapping(flags) {
            add(&mut self.data_vm);
        }
    }

    /// Whether `npages` more of a mapping with `flags` fit `RLIMIT_AS` and `RLIMIT_DATA`.
    pub fn may_expand_vm(&self, flags: VmFlags, npages: usize) -> bool {
        let pages_of = |limit: u64| {
            if limit == RLIM_INFINITY {
                usize::MAX
            } else {
                (limit >> PAGE_SHIFT) as usize
            }
        };
        if self.total_vm.saturating_add(npages) > pages_of(self.rlimits.address_space) {
            return false;
        }
        !(is_data_mapping(flags) && self.data_vm.saturating_add(npages) > pages_of(self.rlimits.data))
    }

    /// `mlock_future_ok`: whether `bytes` more locked memory fit `RLIMIT_MEMLOCK`.
    pub fn mlock_future_ok(&self, flags: VmFlags, bytes: usize, cap_ipc_lock: bool) -> bool {
        if flags & VM_LOCKED == 0 || cap_ipc_lock || self.rlimits.memlock == RLIM_INFINITY {
            return true;
        }
        let pages = (bytes >> PAGE_SHIFT) + self.locked_vm;
        pages <= (self.rlimits.memlock >> PAGE_SHIFT) as usize
    }

    /// Iterate over the VMAs in address order.
    pub fn iter(&self) -> impl Iterator<Item = VmaPtr> + '_ {
        let mut cur = self.vmas.first();
        core::iter::from_fn(move || {
            let v = cur?;
            cur = v.next();
            Some(v)
        })
    }

    /// Whether `vma` is the brk heap, as `/proc/PID/maps` decides it.
    pub fn is_heap(&self, vma: &Vma) -> bool {
        vma.start() < self.brk && vma.end() > self.start_brk
    }

    /// Whether `vma` is the initial stack.
    pub fn is_stack(&self, vma: &Vma) -> bool {
        vma.start() <= self.start_stack && vma.end() >= self.start_stack
    }
}
