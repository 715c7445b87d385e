//! A simulated machine: its configuration, its boot, and the one lock around its state —
//! physical memory, the kernel's slab caches, the sysctls and one process's address space.
//! Its system calls are in `syscalls`, its views in `proc` and `svg`.
//!
//! A machine is booted from a [`Config`]: physical memory is a memfd (`physmem`), the user
//! address space a reserved range of host memory, and the process starts as `execve` would
//! leave it (program text and data, an empty heap, a stack). The `Machine` lives in its own
//! anonymous host mapping (never the host heap), and the fault handler (`signal`) finds the
//! machine owning a faulting address through a fixed registry. [`Machine::boot`] returns an
//! owning [`MachineBox`]; [`default_machine`] is a lazily booted process-wide machine used
//! by `SimKernel::new()`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::mm::{Mm, Rlimits, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES};
use crate::mmu::Host;
use crate::overcommit::VmSysctl;
use crate::page::{PAGE_SHIFT, PAGE_SIZE};
use crate::physmem::PhysMem;
use crate::slab::Slab;
use crate::stats::{Counters, Stats, Syscall};
use crate::sync::MmapLock;
use crate::vma::VmaEnv;
use crate::vma_tree::VmaTree;
use crate::Errno;

/// How to build a machine.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Simulated RAM (rounded down to pages).
    pub phys_bytes: usize,
    /// Size of the user address space (the reserved host range).
    pub user_bytes: usize,
    /// Overrides Linux's sizing of the zone watermarks.
    pub min_free_kbytes: Option<usize>,
    /// `vm.overcommit_memory`: 0 heuristic, 1 always, 2 never.
    pub overcommit_memory: u32,
    /// `vm.overcommit_ratio` (percent of RAM under mode 2).
    pub overcommit_ratio: usize,
    /// `vm.max_map_count`.
    pub max_map_count: usize,
    pub rlimits: Rlimits,
    pub cap_sys_admin: bool,
    pub cap_ipc_lock: bool,
    /// Place anonymous mappings whose length is a multiple of 2 MiB on a 2 MiB boundary,
    /// as kernels with transparent huge pages do since 6.7 (the pages are still 4 KiB).
    pub thp_align: bool,
    /// `vm.mmap_min_addr`, relative to the start of the user range.
    pub mmap_min_addr: usize,
    /// Extra space between the end of the data segment and `start_brk`, rounded to pages:
    /// where Linux's brk randomisation would put the heap (0 is `setarch -R`).
    pub brk_offset: usize,
    /// Size of a swap area to create at boot (a file in the host's `/tmp`, unlinked at
    /// once), or 0 for none; `Machine::swapon` takes one later.
    pub swap_bytes: usize,
    /// `vm.swappiness` (0 to 200): how readily reclaim takes anonymous pages rather than
    /// the page cache.
    pub swappiness: usize,
    /// Size of the CMA area reserved at boot (`cma=`), 0 for none: movable pages may use it
    /// until `Machine::cma_alloc` takes a range of it back.
    pub cma_bytes: usize,
    /// CPUs (1 to `cpu_tlbstate::MAX_CPUS`): each host thread that uses the machine runs on
    /// one, given out round-robin, and each has its own TLB (`cpu_tlbstate`).
    pub nr_cpus: usize,
    /// Whether the CPUs tag TLB entries with an ASID (x86's PCID): without it every switch
    /// to another process's mm flushes the TLB.
    pub pcid: bool,
}

impl Config {
    pub const DEFAULT: Config = Config {
        phys_bytes: 1 << 30,
        user_bytes: 64 << 30,
        min_free_kbytes: None,
        overcommit_memory: 0,
        overcommit_ratio: 50,
        max_map_count: 65530,
        rlimits: Rlimits { data: u64::MAX, address_space: u64::MAX, stack: 8 << 20, memlock: 8 << 20 },
        cap_sys_admin: false,
        cap_ipc_lock: false,
        thp_align: true,
        mmap_min_addr: 65536,
        brk_offset: 0,
        swap_bytes: 0,
        swappiness: 60,
        cma_bytes: 0,
        nr_cpus: 4,
        pcid: true,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Where the simulated program image and stack sit, relative to the user range.
pub const IMAGE_OFFSET: usize = 0x40_0000;
/// Initial stack: 132 KiB below the top of the user range.
pub const STACK_SIZE: usize = 0x21000;

/// Processes a machine can hold at once.
pub const MAX_TASKS: usize = 16;

/// A simulated process (`task_struct` with its `mm_struct` and `files_struct`). The running
/// one's address space and files are `State::mm` and `State::files`; the others' are kept
/// here and swapped in when their host process takes the machine lock (`switch_mm`).
pub(crate) struct Task {
    /// 0 for a free slot.
    pub pid: u32,
    /// The host process that is this simulated process.
    pub host_pid: i32,
    pub mm: Mm,
    pub files: crate::file::FdTable,
    /// Its page tables changed while another process ran (a truncation took pages from
    /// it): its host view may map more than they do, until it next takes the lock.
    pub stale: bool,
    /// Its whole host view was flushed by a TLB shootdown: rebuilt from its page tables
    /// when it next takes the lock (nothing it could reach was held back for it).
    pub needs_resync: bool,
    /// It exited on the machine (its address space and files are gone) and waits for its
    /// parent's `waitpid`.
    pub zombie: bool,
}

impl Task {
    pub(crate) fn free() -> Task {
        Task {
            pid: 0,
            host_pid: 0,
            mm: Mm::empty(),
            files: Default::default(),
            stale: false,
            needs_resync: false,
            zombie: false,
        }
    }
}

/// Everything the machine lock protects.
pub(crate) struct State {
    pub phys: PhysMem,
    pub slab: Slab,
    pub mm: Mm,
    pub host: Host,
    pub sys: VmSysctl,
    pub stats: Stats,
    pub thp_align: bool,
    pub next_ino: u64,
    /// The process's open files.
    pub files: crate::file::FdTable,
    /// The host files the machine has inodes for.
    pub sb: crate::shmem::SuperBlock,
    /// Set by a fault that had to read its page from a file (`VM_FAULT_MAJOR`).
    pub fault_major: bool,
    /// The processes; `current` is the one whose `mm` and `files` are in place.
    pub tasks: [Task; MAX_TASKS],
    pub current: usize,
    pub next_pid: u32,
    /// Set by a forked child when its host view is ready (`fork`).
    pub fork_ready: core::sync::atomic::AtomicU32,
    /// The task of the host process holding the lock (the running one may be another, for
    /// a view or a reap), and the live host view that process has.
    pub me: usize,
    pub user_host: Host,
    /// The processes' TLB mailboxes (`Machine::tlb`), in the machine's shared mapping.
    tlb: *const crate::tlb::TlbMailbox,
    /// The top of this host process's kernel stack for the machine (`kstack`), and whether
    /// the lock holder runs on it.
    pub kstack_top: usize,
    pub on_kstack: bool,
    /// The kernel's own page table and vmalloc areas.
    pub vmalloc: crate::vmalloc::Vmalloc,
    /// Kernel memory the machine's API handed out (`Machine::kmalloc`, `vmalloc`): start
    /// and length of each, length 0 for a free entry. Only these may be freed or written
    /// through the API; the simulated kernel's own objects are not among them.
    pub api_objects: [(u64, u64); MAX_API_OBJECTS],
    /// The ranges `Machine::cma_alloc` handed out: (first frame, frames), 0 frames for a
    /// free entry.
    pub cma_allocs: [(usize, usize); MAX_CMA_ALLOCS],
}

/// Kernel objects the machine's API can hand out at once.
pub const MAX_API_OBJECTS: usize = 256;
/// Ranges of the CMA area handed out at once, at most.
pub const MAX_CMA_ALLOCS: usize = 64;

/// A booted machine: physical memory, the kernel's slab caches and one process's address
/// space, behind one lock. Its system calls are `Machine::{brk, mmap, munmap, mremap,
/// mprotect, madvise, mincore}`.
///
/// # The range rule
///
/// The process's memory is the user range, and a Rust program may keep anything there
/// (`ptalloc::Malloc<SimKernel>` hands it out as heap blocks). So the calls that take
/// simulated memory away or change it — `brk` lowering the break, `munmap`, `mremap`,
/// `mprotect`, `madvise`, and `mmap` with `MAP_FIXED` — are `unsafe fn`s: their caller
/// promises the *range rule*, that nothing still uses the simulated memory they unmap, move,
/// protect or discard (no reference, and no pointer anyone will dereference, points into
/// it). Memory is the caller's to give up only if it got it from these calls. The rest —
/// `mincore`, `fault_in`, [`Machine::current_break`], the counters, setters, checkers and
/// views — is safe.
pub struct Machine {
    lock: MmapLock,
    state: UnsafeCell<State>,
    host: Host,
    slot: core::sync::atomic::AtomicUsize,
    /// The host process that booted the machine and owns its memory.
    boot_pid: i32,
    /// Each process's TLB flush requests (`tlb`), outside the locked state: the target's
    /// signal handler reads its own without the lock.
    tlb: [crate::tlb::TlbMailbox; MAX_TASKS],
}

/// Which of each machine's processes this host process is (by registry slot): 0, the first,
/// unless `Machine::fork` made it another.
static MY_TASK: [core::sync::atomic::AtomicUsize; crate::signal::MAX_MACHINES] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; crate::signal::MAX_MACHINES];

std::thread_local! {
    /// The pid of the process a view on this thread looks at (`Machine::as_process`); 0 for
    /// the calling process's own.
    static VIEW_AS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

// SAFETY: `state` is only reached through `lock()`, which serialises all threads (and the
// fault handler); `host` is immutable after boot.
unsafe impl Sync for Machine {}
// SAFETY: as above; nothing in a machine is tied to the thread that booted it.
unsafe impl Send for Machine {}

/// The state, locked.
pub(crate) struct Guard<'a> {
    m: &'a Machine,
}

impl Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: the lock is held for the guard's life, so no other reference exists.
        unsafe { &*self.m.state.get() }
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.m.state.get() }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock, so this is the only reference to the state.
        let st = unsafe { &mut *self.m.state.get() };
        if st.phys.kswapd_woken {
            // kswapd, woken by an allocation below the low watermark, runs before anyone
            // else gets the machine.
            crate::kstack::on_kernel_stack(st, &mut |st| {
                crate::vmscan::kswapd(st);
                0
            });
        }
        // SAFETY: the guard holds the lock, and the references it handed out borrow it, so
        // none outlives it.
        unsafe { self.m.lock.unlock() };
    }
}

impl State {
    fn boot(config: &Config) -> Result<State, Errno> {
        if config.user_bytes < (1 << 30) || !config.user_bytes.is_multiple_of(1 << 30) {
            return Err(Errno::EINVAL);
        }
        let mut phys = PhysMem::boot(config.phys_bytes, config.min_free_kbytes, config.cma_bytes)?;
        phys.cpus = match crate::cpu_tlbstate::Cpus::boot(config.nr_cpus, config.pcid) {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: physical memory just booted, of which nothing has been handed out.
                unsafe { phys.shutdown() };
                return Err(e);
            }
        };
        let host = match Host::reserve(config.user_bytes, phys.memfd()) {
            Ok(h) => h,
            Err(e) => {
                // SAFETY: physical memory just booted, of which nothing has been handed out.
                unsafe { phys.shutdown() };
                return Err(e);
            }
        };
        let slab = Slab::kernel_caches();
        let mut sys = VmSysctl::new(phys.nr_free_pages());
        sys.overcommit_memory = config.overcommit_memory;
        sys.overcommit_ratio = config.overcommit_ratio;
        sys.max_map_count = config.max_map_count;
        sys.cap_sys_admin = config.cap_sys_admin;
        sys.cap_ipc_lock = config.cap_ipc_lock;
        let mut pgtables_bytes = 0;
        let pgd = crate::page_table::pgd_alloc(&mut phys, &mut pgtables_bytes)?;
        let task_size = host.end();
        // Linux's mmap_base(): the stack rlimit plus the guard gap, at least 128 MiB.
        let gap = (config.rlimits.stack.min(task_size as u64) as usize + crate::mm::STACK_GUARD_GAP)
            .clamp(128 << 20, host.size() / 6 * 5);
        let start_code = host.base() + IMAGE_OFFSET;
        let mm = Mm {
            vmas: VmaTree::new(),
            pgd,
            task_size,
            mmap_min_addr: host.base() + config.mmap_min_addr.max(PAGE_SIZE),
            mmap_base: crate::page::page_align(task_size - gap) & crate::page::PAGE_MASK,
            mmap_legacy_base: crate::page::page_align(host.base() + host.size() / 3),
            start_code,
            end_code: start_code + PAGE_SIZE,
            start_data: start_code + PAGE_SIZE,
            end_data: start_code + 2 * PAGE_SIZE,
            start_brk: start_code + 2 * PAGE_SIZE + (config.brk_offset & crate::page::PAGE_MASK),
            brk: start_code + 2 * PAGE_SIZE + (config.brk_offset & crate::page::PAGE_MASK),
            start_stack: task_size - 0x800,
            total_vm: 0,
            data_vm: 0,
            exec_vm: 0,
            stack_vm: 0,
            locked_vm: 0,
            rss: [0; crate::mm::NR_MM_COUNTERS],
            hiwater_rss: 0,
            hiwater_vm: 0,
            pgtables_bytes,
            def_flags: 0,
            min_flt: 0,
            maj_flt: 0,
            next_anon_vma_id: 1,
            rlimits: config.rlimits,
            arg_start: 0,
            arg_end: 0,
            env_start: 0,
            env_end: 0,
            saved_auxv: Default::default(),
            exec_image: false,
            context: phys.cpus.init_new_context(),
        };
        let mut st = State {
            phys,
            slab,
            mm,
            host,
            sys,
            stats: Stats::default(),
            thp_align: config.thp_align,
            next_ino: 1000,
            files: Default::default(),
            sb: Default::default(),
            fault_major: false,
            tasks: core::array::from_fn(|_| Task::free()),
            current: 0,
            next_pid: 2,
            fork_ready: core::sync::atomic::AtomicU32::new(0),
            me: 0,
            user_host: host,
            tlb: core::ptr::null(),
            kstack_top: 0,
            on_kstack: false,
            vmalloc: crate::vmalloc::Vmalloc::new(),
            api_objects: [(0, 0); MAX_API_OBJECTS],
            cma_allocs: [(0, 0); MAX_CMA_ALLOCS],
        };
        if config.swappiness > 200 {
            return Err(Errno::EINVAL);
        }
        st.phys.swap.swappiness = config.swappiness;
        st.tasks[0].pid = 1;
        // SAFETY: getpid has no preconditions.
        st.tasks[0].host_pid = unsafe { libc::getpid() };
        st.setup_image()?;
        if config.swap_bytes != 0 {
            crate::swapfile::swapon_tmpfile(&mut st, config.swap_bytes)?;
            st.sys.total_swap_pages = st.phys.swap.total_pages();
        }
        // Last, so that no failure above leaves it behind.
        st.kstack_top = crate::kstack::kstack_alloc();
        Ok(st)
    }

    /// The address space of task `t` (the running one's is `self.mm`).
    pub(crate) fn mm_of_task(&mut self, t: usize) -> &mut Mm {
        if t == self.current {
            &mut self.mm
        } else {
            &mut self.tasks[t].mm
        }
    }

    /// `flush_tlb_mm_range` of `[start, end)` in the address space of task `t`.
    pub(crate) fn flush_tlb_task(&mut self, t: usize, start: usize, end: usize) {
        // The context is copied out and back: the flush needs `phys` beside it.
        let mut ctx = self.mm_of_task(t).context;
        crate::tlb::flush_tlb_mm_range(&mut self.phys, &mut ctx, start, end);
        self.mm_of_task(t).context = ctx;
    }

    /// The calling host thread's CPU becomes `this_cpu`; with `live` (the calling process
    /// runs) it loads the running mm (`switch_mm`).
    fn enter_cpu(&mut self, live: bool) {
        let cpu = self.phys.cpus.cpu_of_current_thread();
        self.phys.cpus.this_cpu = cpu;
        if live && self.current == self.me {
            self.phys.cpus.switch_mm(cpu, &mut self.mm.context);
        }
    }

    /// Process `task`'s mailbox for TLB flush requests.
    pub(crate) fn tlb_mailbox(&self, task: usize) -> &crate::tlb::TlbMailbox {
        if self.tlb.is_null() || task >= MAX_TASKS {
            crate::util::bug("no TLB mailbox for task", task, 0);
        }
        // SAFETY: `tlb` points at the machine's MAX_TASKS mailboxes (set at boot), which
        // live as long as the machine; they are atomics, shared by design.
        unsafe { &*self.tlb.add(task) }
    }

    /// Map the program text, its data and the initial stack, as `execve` would.
    fn setup_image(&mut self) -> Result<(), Errno> {
        use crate::mm::*;
        let (mm, mut env) = self.vma_env();
        let ino = env.get_next_ino();
        let file = crate::shmem::new_inode(env.slab, env.phys, crate::shmem::INODE_FILE, ino, 2)?;
        let (sc, ec, sd, ed) = (mm.start_code, mm.end_code, mm.start_data, mm.end_data);
        let text = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
        let data = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT;
        let top = mm.task_size;
        let totalram = env.phys.totalram_pages();
        let stack_pages = STACK_SIZE >> PAGE_SHIFT;
        env.sys.vm_enough_memory(1 + stack_pages, totalram, 0)?;
        for (start, end, flags, pgoff, f) in [
            (sc, ec, text, 0, Some(file)),
            (sd, ed, data, 1, Some(file)),
            (top - STACK_SIZE, top, VM_STACK_FLAGS, (top - STACK_SIZE) >> PAGE_SHIFT, None),
        ] {
            let v = crate::vma::vm_area_alloc(&mut env)?;
            v.vm_start.set(start);
            v.vm_end.set(end);
            v.vm_flags.set(flags);
            v.vm_pgoff.set(pgoff);
            if let Some(f) = f {
                f.refcount.set(f.refcount.get() + 1);
                v.vm_file.set(Some(f));
            }
            crate::vma::vma_link(mm, v);
            mm.vm_stat_account(flags, ((end - start) >> PAGE_SHIFT) as isize);
        }
        // The reference new_inode gave us was only to keep the inode alive while mapping.
        file.refcount.set(file.refcount.get() - 1);
        mm.hiwater_vm = mm.total_vm;
        Ok(())
    }

    /// Before the machine goes: close the process's files and write every dirty page of
    /// every file back (what is still mapped is written too), closing the host descriptors.
    fn shutdown_files(&mut self) {
        crate::file::close_all(self);
        let mut cur = self.sb.inodes;
        while let Some(inode) = cur {
            cur = inode.next.get();
            let _ = crate::page_writeback::write_dirty_pages(
                &mut self.phys,
                &inode,
                0,
                crate::shmem::MAX_INODE_PAGES,
            );
            crate::file::release_host_fds(&inode);
        }
        self.sb.inodes = None;
    }

    /// Make task `to` the running one (`switch_mm`), its host view `host` (the machine's
    /// own when `to` is the calling process, a detached one otherwise). A task whose page
    /// tables another process changed gets its host view rebuilt from them.
    pub(crate) fn switch_to(&mut self, to: usize, host: Host) {
        if self.tasks[to].pid == 0 || (self.tasks[to].zombie && host.is_live()) {
            crate::util::bug("a process that has exited used its machine", to, 0);
        }
        if self.current != to {
            let cur = self.current;
            core::mem::swap(&mut self.mm, &mut self.tasks[cur].mm);
            core::mem::swap(&mut self.files, &mut self.tasks[cur].files);
            core::mem::swap(&mut self.mm, &mut self.tasks[to].mm);
            core::mem::swap(&mut self.files, &mut self.tasks[to].files);
            self.current = to;
        }
        self.host = host;
        if host.is_live() && (self.tasks[to].stale || self.tasks[to].needs_resync) {
            crate::fork::resync_host(&self.mm, &self.phys, host);
            self.tasks[to].stale = false;
            self.tasks[to].needs_resync = false;
            self.free_deferred_if_settled();
        }
    }

    /// Free the frames held back for stale host views once no process has one.
    pub(crate) fn free_deferred_if_settled(&mut self) {
        if self.tasks.iter().all(|t| !t.stale) {
            self.phys.free_deferred();
        }
    }

    /// The address space, and what the VMA layer uses besides it.
    pub fn vma_env(&mut self) -> (&mut Mm, VmaEnv<'_>) {
        let env = VmaEnv {
            phys: &mut self.phys,
            slab: &mut self.slab,
            sys: &mut self.sys,
            host: self.host,
            next_ino: &mut self.next_ino,
            sb: &mut self.sb,
        };
        (&mut self.mm, env)
    }

    pub fn count(&mut self, s: Syscall, ok: bool) {
        self.stats.calls[s as usize] += 1;
        if !ok {
            self.stats.failed[s as usize] += 1;
        }
    }

    pub fn counters(&self) -> Counters {
        let mm = &self.mm;
        Counters {
            faults: self.stats.faults,
            pgfault: self.phys.vmstat.pgfault,
            pgmajfault: self.phys.vmstat.pgmajfault,
            maj_flt: mm.maj_flt,
            pgpgin: self.phys.vmstat.pgpgin,
            pgpgout: self.phys.vmstat.pgpgout,
            nr_dirty: self.phys.vmstat.nr_dirty,
            nr_dirtied: self.phys.vmstat.nr_dirtied,
            nr_written: self.phys.vmstat.nr_written,
            cow_faults: self.phys.vmstat.cow_faults,
            syscalls: self.stats.calls,
            syscalls_failed: self.stats.failed,
            segv: self.stats.segv,
            sigbus: self.stats.sigbus,
            rss_anon: mm.rss[MM_ANONPAGES],
            rss_file: mm.rss[MM_FILEPAGES],
            rss_shmem: mm.rss[MM_SHMEMPAGES],
            rss: mm.rss(),
            hiwater_rss: mm.hiwater_rss.max(mm.rss()),
            total_vm: mm.total_vm,
            hiwater_vm: mm.hiwater_vm.max(mm.total_vm),
            data_vm: mm.data_vm,
            exec_vm: mm.exec_vm,
            stack_vm: mm.stack_vm,
            locked_vm: mm.locked_vm,
            map_count: mm.map_count(),
            pgtables_bytes: mm.pgtables_bytes,
            brk: mm.brk,
            start_brk: mm.start_brk,
            totalram_pages: self.phys.totalram_pages(),
            free_pages: self.phys.nr_free_pages(),
            committed_as: self.sys.committed_as,
            commit_limit: self.sys.commit_limit(self.phys.totalram_pages()),
            nr_anon_pages: self.phys.vmstat.nr_anon_pages,
            nr_shmem: self.phys.vmstat.nr_shmem,
            nr_file_pages: self.phys.vmstat.nr_file_pages,
            nr_page_table_pages: self.phys.vmstat.nr_page_table_pages,
            nr_slab: self.phys.vmstat.nr_slab_unreclaimable,
            pgalloc: self.phys.vmstat.pgalloc,
            pgfree: self.phys.vmstat.pgfree,
            oom_kill: self.phys.vmstat.oom_kill,
            swap_ents: mm.rss[crate::mm::MM_SWAPENTS],
        }
    }
}

impl Machine {
    /// Boot a machine. It owns a reserved host range of `config.user_bytes` and a memfd of
    /// `config.phys_bytes` (whose pages cost host memory only once touched).
    pub fn boot(config: &Config) -> Result<MachineBox, Errno> {
        crate::sync::install_atfork();
        let st = State::boot(config)?;
        let host = st.host;
        let size = core::mem::size_of::<Machine>();
        // SAFETY: a fresh private anonymous mapping to hold the Machine.
        // Shared, so that the host processes forked as its processes share its state.
        let mem = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return Err(Errno(ptalloc::errno()));
        }
        let m = mem as *mut Machine;
        // SAFETY: `m` is a fresh, suitably aligned (page) allocation of the right size.
        unsafe {
            m.write(Machine {
                lock: MmapLock::new(),
                state: UnsafeCell::new(st),
                host,
                slot: core::sync::atomic::AtomicUsize::new(usize::MAX),
                boot_pid: libc::getpid(),
                tlb: [const { crate::tlb::TlbMailbox::new() }; MAX_TASKS],
            });
            let st = &mut *(*m).state.get();
            st.tlb = (*m).tlb.as_ptr();
        };
        // SAFETY: just initialised; lives until MachineBox::drop.
        let shared: &'static Machine = unsafe { &*m };
        match crate::signal::register(shared) {
            Some(slot) => shared.slot.store(slot, Ordering::Relaxed),
            None => {
                // SAFETY: not registered, so this is the only reference.
                drop(MachineBox(unsafe { &mut *m }));
                return Err(Errno::EAGAIN);
            }
        }
        // SAFETY: the registry holds only a shared reference, used only by the fault handler
        // under the machine lock; the box is the owner.
        Ok(MachineBox(unsafe { &mut *m }))
    }

    /// The machine's own host view (the calling process's).
    pub(crate) fn user_host(&self) -> Host {
        self.host
    }

    /// From the TLB signal's handler: carry out a flush request for this process, if one
    /// is waiting.
    pub(crate) fn handle_tlb_request(&self) {
        let task = self.my_task();
        if task < MAX_TASKS {
            crate::tlb::handle_flush_request(&self.tlb[task], self.host);
        }
    }

    /// The calling process's task.
    pub(crate) fn my_task(&self) -> usize {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot == usize::MAX {
            return 0;
        }
        MY_TASK[slot].load(Ordering::Relaxed)
    }

    pub(crate) fn set_my_task(&self, task: usize) {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot != usize::MAX {
            MY_TASK[slot].store(task, Ordering::Relaxed);
        }
    }

    /// The state, locked, with the calling process running (system calls and faults).
    pub(crate) fn lock(&self) -> Guard<'_> {
        self.lock_as(self.my_task(), true)
    }

    /// The state, locked, with the process a view looks at running (`as_process`; the
    /// calling one if that process has gone meanwhile).
    pub(crate) fn lock_view(&self) -> Guard<'_> {
        let pid = VIEW_AS.with(|v| v.get());
        if pid == 0 {
            return self.lock();
        }
        if self.lock.held_by_me() {
            crate::util::bug("machine lock taken twice by one thread", self.host.base(), 0);
        }
        self.lock.lock();
        let me = self.my_task();
        // SAFETY: the lock is held, so this is the only reference to the state.
        let st = unsafe { &mut *self.state.get() };
        let task = st.tasks.iter().position(|t| t.pid as usize == pid).unwrap_or(me);
        let host = if task == me { self.host } else { self.host.detached() };
        st.me = me;
        st.switch_to(task, host);
        st.enter_cpu(task == me);
        Guard { m: self }
    }

    /// The state, locked, with task `task` running: with the real host view if `live` (it
    /// is the calling process), else a detached one that changes nothing.
    pub(crate) fn lock_as(&self, task: usize, live: bool) -> Guard<'_> {
        if self.lock.held_by_me() {
            crate::util::bug("machine lock taken twice by one thread", self.host.base(), 0);
        }
        self.lock.lock();
        let host = if live { self.host } else { self.host.detached() };
        // SAFETY: the lock is held, so this is the only reference to the state.
        let st = unsafe { &mut *self.state.get() };
        st.me = self.my_task();
        st.switch_to(task, host);
        st.enter_cpu(live);
        Guard { m: self }
    }

    /// The state without taking the lock: for a forked child while its parent holds the
    /// lock for it (`fork`). Dereferencing it is sound only while another thread holds the
    /// lock and waits, touching nothing, until the caller is done.
    pub(crate) fn state_lent(&self) -> *mut State {
        self.state.get()
    }

    /// Run `f` with this thread's views (`write_maps`, `write_smaps_rollup`, `counters`, …)
    /// looking at process `pid` instead of the calling one. `ESRCH` if there is no such
    /// process. System calls inside `f` still act for the calling process.
    pub fn as_process<R>(&self, pid: u32, f: impl FnOnce() -> R) -> Result<R, Errno> {
        {
            let st = self.lock();
            if pid == 0 || !st.tasks.iter().any(|t| t.pid == pid) {
                return Err(Errno(libc::ESRCH));
            }
        }
        let old = VIEW_AS.with(|v| v.replace(pid as usize));
        let r = f();
        VIEW_AS.with(|v| v.set(old));
        Ok(r)
    }

    pub(crate) fn mmap_lock(&self) -> &MmapLock {
        &self.lock
    }

    /// The first address of the user range.
    pub fn user_base(&self) -> usize {
        self.host.base()
    }

    /// One past the last address of the user range (`TASK_SIZE`).
    pub fn task_size(&self) -> usize {
        self.host.end()
    }

    pub fn page_size(&self) -> usize {
        PAGE_SIZE
    }

    /// Whether `addr` is in this machine's user range.
    pub fn contains(&self, addr: usize) -> bool {
        self.host.contains(addr)
    }
}

/// An owned machine: dropping it unregisters it and releases its host memory. Every
/// mapping of its user range becomes inaccessible.
pub struct MachineBox(&'static mut Machine);

impl MachineBox {
    /// Keep the machine for the rest of the process.
    pub fn leak(self) -> &'static Machine {
        let m: *const Machine = &*self.0;
        core::mem::forget(self);
        // SAFETY: the machine is never freed now.
        unsafe { &*m }
    }
}

impl Deref for MachineBox {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        self.0
    }
}

impl Drop for MachineBox {
    fn drop(&mut self) {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } != self.0.boot_pid {
            // A forked process's copy: the machine is its booter's to shut down.
            return;
        }
        // Other processes still on the machine share its state: leave it to them (their
        // memory and the machine's stay theirs) rather than pull it away under them.
        let others = {
            self.0.lock.lock();
            // SAFETY: the lock is held.
            let st = unsafe { &*self.0.state.get() };
            let n = st
                .tasks
                .iter()
                .enumerate()
                .filter(|(i, t)| *i != self.0.my_task() && t.pid != 0 && !t.zombie)
                .count();
            // SAFETY: taken just above.
            unsafe { self.0.lock.unlock() };
            n
        };
        if others > 0 {
            // Still registered: this process keeps answering TLB shootdowns for its view.
            return;
        }
        let slot = self.0.slot.load(Ordering::Relaxed);
        if slot != usize::MAX {
            crate::signal::unregister(slot);
        }
        let host = self.0.host;
        {
            let st = self.0.state.get_mut();
            st.shutdown_files();
            // SAFETY: the box owns the machine and the fault handler no longer finds it, so
            // nothing else reaches its frames; the state dropped below holds frame numbers and
            // KPtrs but has no destructor that follows them.
            unsafe { st.phys.shutdown() };
            crate::kstack::kstack_free(st.kstack_top);
            st.kstack_top = 0;
        }
        // SAFETY: the machine is unregistered, so the fault handler no longer finds it, and
        // the box was its only owner. Release the user range and the Machine's own mapping.
        unsafe {
            host.release();
            let m: *mut Machine = self.0;
            core::ptr::drop_in_place(m);
            libc::munmap(m as *mut libc::c_void, core::mem::size_of::<Machine>());
        }
    }
}

const UNBOOTED: u8 = 0;
const BOOTING: u8 = 1;
const READY: u8 = 2;

static DEFAULT_STATE: AtomicU8 = AtomicU8::new(UNBOOTED);
static DEFAULT_MACHINE: AtomicPtr<Machine> = AtomicPtr::new(core::ptr::null_mut());

/// The process-wide machine `SimKernel::new()` uses, booted with [`Config::DEFAULT`] on first
/// use. If it cannot boot (the host refused memory), the process cannot go on: it prints the
/// reason and aborts.
pub fn default_machine() -> &'static Machine {
    if DEFAULT_STATE.load(Ordering::Acquire) == READY {
        // SAFETY: set once before READY and never freed.
        return unsafe { &*DEFAULT_MACHINE.load(Ordering::Acquire) };
    }
    boot_default()
}

#[cold]
#[inline(never)]
fn boot_default() -> &'static Machine {
    loop {
        match DEFAULT_STATE.compare_exchange(UNBOOTED, BOOTING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => {
                // SAFETY: set once before READY and never freed.
                return unsafe { &*DEFAULT_MACHINE.load(Ordering::Acquire) };
            }
            Err(_) => core::hint::spin_loop(),
        }
    }
    match Machine::boot(&Config::DEFAULT) {
        Ok(b) => {
            let m = b.leak();
            DEFAULT_MACHINE.store(m as *const Machine as *mut Machine, Ordering::Release);
            DEFAULT_STATE.store(READY, Ordering::Release);
            m
        }
        Err(e) => crate::util::bug("cannot boot the default machine (host errno)", e.0 as usize, 0),
    }
}
