//! Text views in the formats of Linux's `/proc`: `/proc/PID/maps`, `/proc/PID/smaps`,
//! `/proc/PID/smaps_rollup`, `/proc/PID/status` (memory lines), `/proc/buddyinfo`,
//! `/proc/meminfo` (memory lines) and `/proc/slabinfo`.
//!
//! The views are not system-call paths: they write into any `fmt::Write`. They copy what
//! they need out of the machine in small batches under its lock and format without it, so
//! the writer may allocate even from an allocator running on the same machine.

use core::fmt::{self, Write};

use crate::buddy::{MAX_NR_ZONES, NR_PAGE_ORDERS};
use crate::machine::{Machine, State};
use crate::mm::*;
use crate::page::{Page, PAGE_SHIFT, PAGE_SIZE, PG_ANON, PG_DIRTY, PG_FILE, PG_SWAPBACKED};
use crate::page_table::PTE_DIRTY;

/// The layout fields of the address space (`mm_struct`'s `start_code` … `env_end`, and
/// where the mmap area and the stack start), as exec set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub start_code: usize,
    pub end_code: usize,
    pub start_data: usize,
    pub end_data: usize,
    pub start_brk: usize,
    pub brk: usize,
    pub start_stack: usize,
    pub arg_start: usize,
    pub arg_end: usize,
    pub env_start: usize,
    pub env_end: usize,
    pub mmap_base: usize,
    /// `TASK_SIZE`, where the stack's top is.
    pub task_size: usize,
    /// The start of the simulated user range, which stands for address 0.
    pub user_base: usize,
}

impl Machine {
    pub fn layout(&self) -> Layout {
        let st = self.lock_view();
        let mm = &st.mm;
        Layout {
            start_code: mm.start_code,
            end_code: mm.end_code,
            start_data: mm.start_data,
            end_data: mm.end_data,
            start_brk: mm.start_brk,
            brk: mm.brk,
            start_stack: mm.start_stack,
            arg_start: mm.arg_start,
            arg_end: mm.arg_end,
            env_start: mm.env_start,
            env_end: mm.env_end,
            mmap_base: mm.mmap_base,
            task_size: mm.task_size,
            user_base: st.host.base(),
        }
    }
}

/// x86-64's vsyscall page (`VSYSCALL_ADDR`), shown after the VMAs.
const VSYSCALL_ADDR: usize = 0xffff_ffff_ff60_0000;

/// PSS is kept in bytes shifted left by this much, as Linux does.
const PSS_SHIFT: u32 = 12;

/// Page statistics of a range, in bytes (smaps' `mem_size_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    pub resident: u64,
    pub pss: u64,
    pub pss_dirty: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub pss_shmem: u64,
    pub shared_clean: u64,
    pub shared_dirty: u64,
    pub private_clean: u64,
    pub private_dirty: u64,
    pub referenced: u64,
    pub anonymous: u64,
    pub pss_locked: u64,
    /// Swap entries in the range, and their share of each slot (`SwapPss`).
    pub swap: u64,
    pub swap_pss: u64,
    /// Lazily freed pages not written since (`MADV_FREE`).
    pub lazyfree: u64,
}

impl MemStats {
    fn add(&mut self, o: &MemStats) {
        self.resident += o.resident;
        self.pss += o.pss;
        self.pss_dirty += o.pss_dirty;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
        self.pss_shmem += o.pss_shmem;
        self.shared_clean += o.shared_clean;
        self.shared_dirty += o.shared_dirty;
        self.private_clean += o.private_clean;
        self.private_dirty += o.private_dirty;
        self.referenced += o.referenced;
        self.anonymous += o.anonymous;
        self.pss_locked += o.pss_locked;
        self.swap += o.swap;
        self.swap_pss += o.swap_pss;
        self.lazyfree += o.lazyfree;
    }

    fn account(&mut self, page: &Page, pte: u64, locked: bool) {
        let size = PAGE_SIZE as u64;
        let mapcount = page.mapcount.get().max(1) as u64;
        let dirty = pte & PTE_DIRTY != 0 || page.has(PG_DIRTY);
        self.resident += size;
        if pte & crate::page_table::PTE_ACCESSED != 0 || page.has(crate::page::PG_REFERENCED) {
            self.referenced += size;
        }
        if page.has(PG_ANON) {
            self.anonymous += size;
        }
        if page.has(crate::page::PG_LAZYFREE) && !dirty {
            self.lazyfree += size;
        }
        let pss = (size << PSS_SHIFT) / mapcount;
        self.pss += pss;
        if dirty {
            self.pss_dirty += pss;
        }
        if page.has(PG_ANON) {
            self.pss_anon += pss;
        } else if page.has(PG_SWAPBACKED) {
            self.pss_shmem += pss;
        } else if page.has(PG_FILE) {
            self.pss_file += pss;
        }
        if locked {
            self.pss_locked += pss;
        }
        match (mapcount >= 2, dirty) {
            (true, true) => self.shared_dirty += size,
            (true, false) => self.shared_clean += size,
            (false, true) => self.private_dirty += size,
            (false, false) => self.private_clean += size,
        }
    }
}

/// The name of a mapping as the views show it: `[heap]`, `[stack]`, a file's path (up to
/// `shmem::NAME_MAX_BYTES - 1` bytes), or empty. A copy, so a view holds no reference into
/// the machine.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    buf: [u8; crate::shmem::NAME_MAX_BYTES],
    len: u16,
}

impl Name {
    pub const EMPTY: Name = Name { buf: [0; crate::shmem::NAME_MAX_BYTES], len: 0 };

    pub fn set(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len());
        self.buf[..n].copy_from_slice(&bytes[..n]);
        self.len = n as u16;
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("?")
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        let mut n = Name::EMPTY;
        n.set(s.as_bytes());
        n
    }
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a view needs to know about one VMA, copied out under the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaInfo {
    pub start: usize,
    pub end: usize,
    pub flags: VmFlags,
    /// `vm_pgoff`, whatever the mapping.
    pub pgoff: usize,
    /// The offset `/proc/PID/maps` shows (0 for anonymous memory).
    pub offset: u64,
    pub dev: (u32, u32),
    pub ino: u64,
    pub name: Name,
    /// Pages mapped by present PTEs, including the shared zero page.
    pub present: usize,
    /// Of those, the zero page.
    pub zero_pages: usize,
    /// The anon_vma's serial number, 0 if none.
    pub anon_vma: u64,
    /// Size of the mapped object (file or shmem inode) in pages; 0 for anonymous memory.
    pub object_pages: usize,
    pub stats: MemStats,
}

impl VmaInfo {
    pub const EMPTY: VmaInfo = VmaInfo {
        start: 0,
        end: 0,
        flags: 0,
        pgoff: 0,
        offset: 0,
        dev: (0, 0),
        ino: 0,
        name: Name::EMPTY,
        present: 0,
        zero_pages: 0,
        anon_vma: 0,
        object_pages: 0,
        stats: MemStats {
            resident: 0,
            pss: 0,
            pss_dirty: 0,
            pss_anon: 0,
            pss_file: 0,
            pss_shmem: 0,
            shared_clean: 0,
            shared_dirty: 0,
            private_clean: 0,
            private_dirty: 0,
            referenced: 0,
            anonymous: 0,
            pss_locked: 0,
            swap: 0,
            swap_pss: 0,
            lazyfree: 0,
        },
    };

    pub(crate) fn of(st: &State, v: VmaPtr) -> VmaInfo {
        let mut info = VmaInfo {
            start: v.start(),
            end: v.end(),
            flags: v.flags(),
            pgoff: v.pgoff(),
            anon_vma: v.anon().map_or(0, |a| a.id.get()),
            ..VmaInfo::EMPTY
        };
        let special = match v.vm_special.get() {
            SPECIAL_VVAR => Some(&b"[vvar]"[..]),
            SPECIAL_VVAR_VCLOCK => Some(&b"[vvar_vclock]"[..]),
            SPECIAL_VDSO => Some(&b"[vdso]"[..]),
            _ => None,
        };
        if let Some(name) = special {
            info.name.set(name);
        } else if let Some(f) = v.file() {
            info.offset = (v.pgoff() as u64) << PAGE_SHIFT;
            info.dev = crate::shmem::inode_dev(&f);
            info.ino = f.ino.get();
            crate::shmem::inode_path(&f, &mut info.name);
            info.object_pages = f.size_pages.get();
        } else if st.mm.is_heap(&v) {
            info.name.set(b"[heap]");
        } else if st.mm.is_stack(&v) {
            info.name.set(b"[stack]");
        }
        let locked = v.flags() & VM_LOCKED != 0;
        let mut stats = MemStats::default();
        let (mut present, mut zero) = (0, 0);
        crate::memory::count_ptes(st, v.start(), v.end(), &mut |pte, page| {
            present += 1;
            match page {
                Some(p) => stats.account(p, pte, locked),
                None => zero += 1,
            }
        });
        let swap = &st.phys.swap;
        crate::page_table::for_each_pte(
            st.phys.direct_map(),
            st.mm.pgd,
            v.start(),
            v.end(),
            &mut |_, slot| {
                let e = slot.get();
                if crate::page_table::is_swap_pte(e) {
                    let count = swap.swap_count(crate::page_table::pte_to_swp_offset(e)).max(1) as u64;
                    stats.swap += PAGE_SIZE as u64;
                    stats.swap_pss += ((PAGE_SIZE as u64) << PSS_SHIFT) / count;
                }
            },
        );
        info.present = present;
        info.zero_pages = zero;
        info.stats = stats;
        info
    }

    /// `rwxp`-style permissions.
    pub fn perms(&self) -> [u8; 4] {
        let f = self.flags;
        [
            if f & VM_READ != 0 { b'r' } else { b'-' },
            if f & VM_WRITE != 0 { b'w' } else { b'-' },
            if f & VM_EXEC != 0 { b'x' } else { b'-' },
            if f & VM_MAYSHARE != 0 { b's' } else { b'p' },
        ]
    }

    pub fn perms_str(&self) -> &'static str {
        const ALL: [&str; 16] = [
            "---p", "r--p", "-w-p", "rw-p", "--xp", "r-xp", "-wxp", "rwxp", "---s", "r--s", "-w-s", "rw-s",
            "--xs", "r-xs", "-wxs", "rwxs",
        ];
        let f = self.flags;
        let i = (f & 7) as usize | if f & VM_MAYSHARE != 0 { 8 } else { 0 };
        ALL[i]
    }

    /// The line `/proc/PID/maps` shows for this VMA (without the newline).
    pub fn write_maps_line(&self, w: &mut dyn Write) -> fmt::Result {
        let mut line = crate::util::StackWriter::<128>::new();
        let _ = write!(
            line,
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            self.perms_str(),
            self.offset,
            self.dev.0,
            self.dev.1,
            self.ino
        );
        let prefix = core::str::from_utf8(line.as_bytes()).unwrap_or("");
        w.write_str(prefix)?;
        if !self.name.is_empty() {
            for _ in prefix.len()..72 {
                w.write_char(' ')?;
            }
            w.write_char(' ')?;
            w.write_str(&self.name)?;
        }
        Ok(())
    }

    /// `VmFlags:` mnemonics, as smaps prints them (space separated, trailing space).
    pub fn write_vm_flags(&self, w: &mut dyn Write) -> fmt::Result {
        const NAMES: [(VmFlags, &str); 23] = [
            (VM_READ, "rd"),
            (VM_WRITE, "wr"),
            (VM_EXEC, "ex"),
            (VM_SHARED, "sh"),
            (VM_MAYREAD, "mr"),
            (VM_MAYWRITE, "mw"),
            (VM_MAYEXEC, "me"),
            (VM_MAYSHARE, "ms"),
            (VM_GROWSDOWN, "gd"),
            (VM_LOCKED, "lo"),
            (VM_SEQ_READ, "sr"),
            (VM_RAND_READ, "rr"),
            (VM_DONTCOPY, "dc"),
            (VM_DONTEXPAND, "de"),
            (VM_LOCKONFAULT, "lf"),
            (VM_ACCOUNT, "ac"),
            (VM_NORESERVE, "nr"),
            (VM_WIPEONFORK, "wf"),
            (VM_DONTDUMP, "dd"),
            (VM_SOFTDIRTY, "sd"),
            (VM_HUGEPAGE, "hg"),
            (VM_NOHUGEPAGE, "nh"),
            (VM_MERGEABLE, "mg"),
        ];
        for (bit, name) in NAMES {
            if self.flags & bit != 0 {
                write!(w, "{name} ")?;
            }
        }
        Ok(())
    }
}

fn kb(w: &mut dyn Write, label: &str, bytes: u64) -> fmt::Result {
    writeln!(w, "{label:<16}{:>8} kB", bytes >> 10)
}

fn write_stats(w: &mut dyn Write, s: &MemStats, rollup: bool) -> fmt::Result {
    kb(w, "Rss:", s.resident)?;
    kb(w, "Pss:", s.pss >> PSS_SHIFT)?;
    kb(w, "Pss_Dirty:", s.pss_dirty >> PSS_SHIFT)?;
    if rollup {
        kb(w, "Pss_Anon:", s.pss_anon >> PSS_SHIFT)?;
        kb(w, "Pss_File:", s.pss_file >> PSS_SHIFT)?;
        kb(w, "Pss_Shmem:", s.pss_shmem >> PSS_SHIFT)?;
    }
    kb(w, "Shared_Clean:", s.shared_clean)?;
    kb(w, "Shared_Dirty:", s.shared_dirty)?;
    kb(w, "Private_Clean:", s.private_clean)?;
    kb(w, "Private_Dirty:", s.private_dirty)?;
    kb(w, "Referenced:", s.referenced)?;
    kb(w, "Anonymous:", s.anonymous)?;
    kb(w, "KSM:", 0)?;
    kb(w, "LazyFree:", s.lazyfree)?;
    for label in ["AnonHugePages:", "ShmemPmdMapped:", "FilePmdMapped:"] {
        kb(w, label, 0)?;
    }
    writeln!(w, "{:<16}{:>8} kB", "Shared_Hugetlb:", 0)?;
    writeln!(w, "{:<16}{:>8} kB", "Private_Hugetlb:", 0)?;
    kb(w, "Swap:", s.swap)?;
    kb(w, "SwapPss:", s.swap_pss >> PSS_SHIFT)?;
    kb(w, "Locked:", s.pss_locked >> PSS_SHIFT)
}

impl Machine {
    /// `/proc/PID/maps`; after an exec, with x86-64's `[vsyscall]` gate page at the end.
    pub fn write_maps(&self, w: &mut dyn Write) -> fmt::Result {
        let mut r = Ok(());
        self.for_each_vma(|v| {
            if r.is_ok() {
                r = v.write_maps_line(w).and_then(|_| w.write_char('\n'));
            }
        });
        r?;
        if self.lock_view().mm.exec_image {
            let mut gate = VmaInfo {
                start: VSYSCALL_ADDR,
                end: VSYSCALL_ADDR + PAGE_SIZE,
                flags: VM_EXEC | VM_MAYREAD | VM_MAYEXEC,
                ..VmaInfo::EMPTY
            };
            gate.name.set(b"[vsyscall]");
            gate.write_maps_line(w)?;
            w.write_char('\n')?;
        }
        Ok(())
    }

    /// `/proc/PID/auxv`: the auxiliary vector exec gave the program, as native words
    /// (empty before an exec).
    pub fn auxv(&self) -> ([u64; 64], usize) {
        let st = self.lock_view();
        (st.mm.saved_auxv.words, st.mm.saved_auxv.len)
    }

    /// `/proc/PID/stat` of the process, as `pid`: its name after an exec, state `R`, the
    /// fault counts, sizes and the layout fields (start and end of code, data, brk,
    /// arguments and environment, the stack); what the simulation has no notion of
    /// (times, scheduling, signals) is 0.
    pub fn write_stat(&self, pid: u32, w: &mut dyn Write) -> fmt::Result {
        let (mm_fields, comm, minflt, majflt, vsize, rss) = {
            let st = self.lock_view();
            let mm = &st.mm;
            let f = [
                mm.start_code,
                mm.end_code,
                mm.start_stack,
                mm.start_data,
                mm.end_data,
                mm.start_brk,
                mm.arg_start,
                mm.arg_end,
                mm.env_start,
                mm.env_end,
            ];
            (f, mm.saved_auxv.comm, mm.min_flt, mm.maj_flt, mm.total_vm << PAGE_SHIFT, mm.rss())
        };
        let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        let name = core::str::from_utf8(&comm[..n]).unwrap_or("?");
        let [start_code, end_code, start_stack, start_data, end_data, start_brk, arg_start, arg_end, env_start, env_end] =
            mm_fields;
        // Fields 1-9: pid (comm) state ppid pgrp session tty_nr tpgid flags.
        write!(w, "{pid} ({name}) R 0 {pid} {pid} 0 -1 0 ")?;
        // 10-19: minflt cminflt majflt cmajflt utime stime cutime cstime priority nice.
        write!(w, "{minflt} 0 {majflt} 0 0 0 0 0 20 0 ")?;
        // 20-25: num_threads itrealvalue starttime vsize rss rsslim.
        write!(w, "1 0 0 {vsize} {rss} {} ", u64::MAX)?;
        // 26-28: startcode endcode startstack; 29-44: kstkesp .. guest_time.
        write!(w, "{start_code} {end_code} {start_stack} 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 ")?;
        // 45-52: start_data end_data start_brk arg_start arg_end env_start env_end exit_code.
        writeln!(w, "{start_data} {end_data} {start_brk} {arg_start} {arg_end} {env_start} {env_end} 0")
    }

    /// `/proc/PID/smaps`.
    pub fn write_smaps(&self, w: &mut dyn Write) -> fmt::Result {
        let mut r = Ok(());
        self.for_each_vma(|v| {
            if r.is_err() {
                return;
            }
            r = (|| {
                v.write_maps_line(w)?;
                w.write_char('\n')?;
                kb(w, "Size:", (v.end - v.start) as u64)?;
                kb(w, "KernelPageSize:", PAGE_SIZE as u64)?;
                kb(w, "MMUPageSize:", PAGE_SIZE as u64)?;
                write_stats(w, &v.stats, false)?;
                writeln!(w, "{:<16}{:>8}", "THPeligible:", 0)?;
                w.write_str("VmFlags: ")?;
                v.write_vm_flags(w)?;
                w.write_char('\n')
            })();
        });
        r
    }

    /// `/proc/PID/smaps_rollup`.
    pub fn write_smaps_rollup(&self, w: &mut dyn Write) -> fmt::Result {
        let mut total = MemStats::default();
        let (mut first, mut last) = (None, 0);
        self.for_each_vma(|v| {
            first.get_or_insert(v.start);
            last = v.end;
            total.add(&v.stats);
        });
        let mut header = VmaInfo { start: first.unwrap_or(0), end: last, flags: 0, ..VmaInfo::EMPTY };
        header.name.set(b"[rollup]");
        header.write_maps_line(w)?;
        w.write_char('\n')?;
        write_stats(w, &total, true)
    }

    /// The memory lines of `/proc/PID/status`.
    pub fn write_status(&self, w: &mut dyn Write) -> fmt::Result {
        let c = self.counters();
        let (exe, lib) = {
            let st = self.lock_view();
            // As Linux counts them: the code's pages, at most the executable mappings.
            let text = crate::page::page_align(st.mm.end_code)
                .saturating_sub(st.mm.start_code & crate::page::PAGE_MASK);
            let text = text.min(st.mm.exec_vm << PAGE_SHIFT);
            (text >> 10, ((st.mm.exec_vm << PAGE_SHIFT) - text) >> 10)
        };
        let k = |p: usize| p << (PAGE_SHIFT - 10);
        writeln!(w, "VmPeak:\t{:>8} kB", k(c.hiwater_vm))?;
        writeln!(w, "VmSize:\t{:>8} kB", k(c.total_vm))?;
        writeln!(w, "VmLck:\t{:>8} kB", k(c.locked_vm))?;
        writeln!(w, "VmPin:\t{:>8} kB", 0)?;
        writeln!(w, "VmHWM:\t{:>8} kB", k(c.hiwater_rss))?;
        writeln!(w, "VmRSS:\t{:>8} kB", k(c.rss))?;
        writeln!(w, "RssAnon:\t{:>8} kB", k(c.rss_anon))?;
        writeln!(w, "RssFile:\t{:>8} kB", k(c.rss_file))?;
        writeln!(w, "RssShmem:\t{:>8} kB", k(c.rss_shmem))?;
        writeln!(w, "VmData:\t{:>8} kB", k(c.data_vm))?;
        writeln!(w, "VmStk:\t{:>8} kB", k(c.stack_vm))?;
        writeln!(w, "VmExe:\t{:>8} kB", exe)?;
        writeln!(w, "VmLib:\t{:>8} kB", lib)?;
        writeln!(w, "VmPTE:\t{:>8} kB", c.pgtables_bytes >> 10)?;
        writeln!(w, "VmSwap:\t{:>8} kB", k(c.swap_ents))?;
        writeln!(w, "Threads:\t{}", self.mm_users())
    }

    /// `mm_users` of the process (the calling one, or `as_process`'s): the threads that
    /// share its address space. A simulated process's threads are its host process's, so
    /// this counts them (in `/proc/HOSTPID/task`); `mm_count` is 1 while it has any, as
    /// Linux's is without lazy-TLB users.
    pub fn mm_users(&self) -> usize {
        let host_pid = {
            let st = self.lock_view();
            st.tasks[st.current].host_pid
        };
        std::fs::read_dir(format!("/proc/{host_pid}/task")).map_or(0, |d| d.count())
    }

    /// `/proc/pagetypeinfo`: free blocks per order and migratetype, and pageblocks per
    /// migratetype, in each populated zone (`pagetypeinfo_show`).
    pub fn write_pagetypeinfo(&self, w: &mut dyn Write) -> fmt::Result {
        use crate::buddy::{MIGRATETYPE_NAMES, MIGRATE_TYPES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
        type ZoneTypes =
            (bool, &'static str, [[usize; NR_PAGE_ORDERS]; MIGRATE_TYPES], [usize; MIGRATE_TYPES]);
        let snapshot: [ZoneTypes; MAX_NR_ZONES] = {
            let st = self.lock();
            core::array::from_fn(|i| {
                let z = &st.phys.zones[i];
                let free =
                    core::array::from_fn(|mt| core::array::from_fn(|o| z.free_area[o].free_list[mt].nr_free));
                let mut blocks = [0; MIGRATE_TYPES];
                for b in (z.zone_start_pfn..z.zone_end_pfn()).step_by(PAGEBLOCK_NR_PAGES) {
                    blocks[st.phys.pageblock_migratetype(b)] += 1;
                }
                (z.populated(), z.name, free, blocks)
            })
        };
        writeln!(w, "Page block order: {PAGEBLOCK_ORDER}")?;
        writeln!(w, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
        writeln!(w)?;
        write!(w, "{:<43} ", "Free pages count per migrate type at order")?;
        for o in 0..NR_PAGE_ORDERS {
            write!(w, "{o:>6} ")?;
        }
        writeln!(w)?;
        for (populated, name, free, _) in &snapshot {
            if !populated {
                continue;
            }
            for (mt, counts) in free.iter().enumerate() {
                write!(w, "Node {:>4}, zone {name:>8}, type {:>12} ", 0, MIGRATETYPE_NAMES[mt])?;
                for n in counts {
                    // Linux stops counting a list at 100,000.
                    if *n >= 100_000 {
                        write!(w, ">{:>6} ", 100_000)?;
                    } else {
                        write!(w, "{n:>6} ")?;
                    }
                }
                writeln!(w)?;
            }
        }
        write!(w, "\n{:<23}", "Number of blocks type ")?;
        for name in MIGRATETYPE_NAMES {
            write!(w, "{name:>12} ")?;
        }
        writeln!(w)?;
        for (populated, name, _, blocks) in &snapshot {
            if !populated {
                continue;
            }
            write!(w, "Node 0, zone {name:>8} ")?;
            for n in blocks {
                write!(w, "{n:>12} ")?;
            }
            writeln!(w)?;
        }
        Ok(())
    }

    /// `/proc/buddyinfo`: free blocks per order in each populated zone.
    pub fn write_buddyinfo(&self, w: &mut dyn Write) -> fmt::Result {
        let snapshot: [(bool, &str, [usize; NR_PAGE_ORDERS]); MAX_NR_ZONES] = {
            let st = self.lock();
            core::array::from_fn(|i| {
                let z = &st.phys.zones[i];
                (z.populated(), z.name, core::array::from_fn(|o| z.free_area[o].nr_free))
            })
        };
        for (populated, name, free) in snapshot {
            if !populated {
                continue;
            }
            write!(w, "Node 0, zone {name:>8} ")?;
            for n in free {
                write!(w, "{n:>6} ")?;
            }
            w.write_char('\n')?;
        }
        Ok(())
    }

    /// The memory lines of `/proc/meminfo`.
    pub fn write_meminfo(&self, w: &mut dyn Write) -> fmt::Result {
        let c = self.counters();
        let (lru, mlock, swap_total, swap_free, swap_cached) = {
            let st = self.lock_view();
            let s = &st.phys.swap;
            (st.phys.lru_sizes(), st.phys.vmstat.nr_mlock, s.total_pages(), s.free_pages(), s.nr_cached)
        };
        let k = |p: usize| (p as u64) << (PAGE_SHIFT - 10);
        let line = |w: &mut dyn Write, label: &str, v: u64| writeln!(w, "{label:<16}{v:>8} kB");
        line(w, "MemTotal:", k(c.totalram_pages))?;
        line(w, "MemFree:", k(c.free_pages))?;
        line(w, "MemAvailable:", k(c.free_pages))?;
        line(w, "Buffers:", 0)?;
        line(w, "Cached:", k(c.nr_file_pages))?;
        line(w, "SwapCached:", k(swap_cached))?;
        line(w, "Active:", k(lru[1] + lru[3]))?;
        line(w, "Inactive:", k(lru[0] + lru[2]))?;
        line(w, "Active(anon):", k(lru[1]))?;
        line(w, "Inactive(anon):", k(lru[0]))?;
        line(w, "Active(file):", k(lru[3]))?;
        line(w, "Inactive(file):", k(lru[2]))?;
        line(w, "Unevictable:", k(mlock))?;
        line(w, "Mlocked:", k(mlock))?;
        line(w, "SwapTotal:", k(swap_total))?;
        line(w, "SwapFree:", k(swap_free))?;
        line(w, "Dirty:", k(c.nr_dirty))?;
        // Write-back is synchronous here: no page is ever under it when anyone looks.
        line(w, "Writeback:", 0)?;
        line(w, "AnonPages:", k(c.nr_anon_pages))?;
        line(w, "Shmem:", k(c.nr_shmem))?;
        line(w, "Slab:", k(c.nr_slab))?;
        line(w, "SUnreclaim:", k(c.nr_slab))?;
        line(w, "PageTables:", k(c.nr_page_table_pages))?;
        line(w, "CommitLimit:", k(c.commit_limit))?;
        line(w, "Committed_AS:", k(c.committed_as.max(0) as usize))?;
        let l = self.kernel_layout();
        line(w, "VmallocTotal:", (l.vmalloc_end - 1 - l.vmalloc_start) >> 10)?;
        line(w, "VmallocUsed:", k(self.lock_view().vmalloc.nr_pages))?;
        line(w, "VmallocChunk:", 0)?;
        let (cma_total, cma_free) = {
            let st = self.lock_view();
            let z = st.phys.zone_of(st.phys.cma_base);
            (st.phys.cma_count, st.phys.nr_free_of_type(z, crate::buddy::MIGRATE_CMA))
        };
        line(w, "CmaTotal:", k(cma_total))?;
        line(w, "CmaFree:", k(cma_free))
    }

    /// `/proc/vmstat`: the counters the simulation keeps, in Linux's order and names, then
    /// one of its own (`ksim_cow_faults`: Linux counts copy-on-write faults nowhere).
    pub fn write_vmstat(&self, w: &mut dyn Write) -> fmt::Result {
        let c = self.counters();
        let (v, lru, zone, received) = {
            let st = self.lock_view();
            let zone = (0..crate::buddy::MAX_NR_ZONES)
                .rev()
                .find(|&z| st.phys.zones[z].populated())
                .map_or("normal", |z| ["dma", "dma32", "normal"][z.min(2)]);
            let received = st.phys.cpus.total().flushes_received;
            (st.phys.vmstat, st.phys.lru_sizes(), zone, received)
        };
        let lines: [(&str, u64); 23] = [
            ("nr_free_pages", c.free_pages as u64),
            ("nr_inactive_anon", lru[0] as u64),
            ("nr_active_anon", lru[1] as u64),
            ("nr_inactive_file", lru[2] as u64),
            ("nr_active_file", lru[3] as u64),
            ("nr_unevictable", v.nr_mlock as u64),
            ("nr_mlock", v.nr_mlock as u64),
            ("nr_anon_pages", c.nr_anon_pages as u64),
            ("nr_file_pages", c.nr_file_pages as u64),
            ("nr_dirty", c.nr_dirty as u64),
            ("nr_writeback", 0),
            ("nr_shmem", c.nr_shmem as u64),
            ("nr_page_table_pages", c.nr_page_table_pages as u64),
            ("nr_dirtied", c.nr_dirtied),
            ("nr_written", c.nr_written),
            ("pgpgin", c.pgpgin),
            ("pgpgout", c.pgpgout),
            ("pswpin", v.pswpin),
            ("pswpout", v.pswpout),
            ("pgfree", c.pgfree),
            ("pgactivate", v.pgactivate),
            ("pgdeactivate", v.pgdeactivate),
            ("pglazyfree", v.pglazyfree),
        ];
        for (name, n) in lines {
            writeln!(w, "{name} {n}")?;
        }
        writeln!(w, "pgfault {}", c.pgfault)?;
        writeln!(w, "pgmajfault {}", c.pgmajfault)?;
        writeln!(w, "pglazyfreed {}", v.pglazyfreed)?;
        writeln!(w, "pgrefill {}", v.pgrefill)?;
        writeln!(w, "pgsteal_kswapd {}", v.pgsteal_kswapd)?;
        writeln!(w, "pgsteal_direct {}", v.pgsteal_direct)?;
        writeln!(w, "pgscan_kswapd {}", v.pgscan_kswapd)?;
        writeln!(w, "pgscan_direct {}", v.pgscan_direct)?;
        writeln!(w, "oom_kill {}", c.oom_kill)?;
        // Linux names the stall counter by the zone the allocation wanted.
        writeln!(w, "allocstall_{} {}", zone, v.allocstall)?;
        writeln!(w, "pageoutrun {}", v.pageoutrun)?;
        writeln!(w, "kswapd_wakeups {}", v.kswapd_wakeups)?;
        writeln!(w, "pgmigrate_success {}", v.pgmigrate_success)?;
        writeln!(w, "pgmigrate_fail {}", v.pgmigrate_fail)?;
        writeln!(w, "compact_migrate_scanned {}", v.compact_migrate_scanned)?;
        writeln!(w, "compact_free_scanned {}", v.compact_free_scanned)?;
        writeln!(w, "compact_isolated {}", v.compact_isolated)?;
        writeln!(w, "compact_stall {}", v.compact_stall)?;
        writeln!(w, "compact_fail {}", v.compact_fail)?;
        writeln!(w, "compact_success {}", v.compact_success)?;
        writeln!(w, "nr_tlb_remote_flush {}", v.nr_tlb_remote_flush)?;
        writeln!(w, "nr_tlb_remote_flush_received {received}")?;
        writeln!(w, "nr_tlb_local_flush_all {}", v.nr_tlb_local_flush_all)?;
        writeln!(w, "nr_tlb_local_flush_one {}", v.nr_tlb_local_flush_one)?;
        writeln!(w, "swap_ra {}", v.swap_ra)?;
        writeln!(w, "ksim_cow_faults {}", c.cow_faults)
    }

    /// The machine's kernel layout: x86-64 with 4-level paging, as it runs on.
    pub fn kernel_layout(&self) -> crate::kernel_layout::KernelLayout {
        crate::kernel_layout::KernelLayout::new(crate::kernel_layout::Arch::X86_64)
    }

    /// The kernel address of the byte at host address `addr` of simulated physical memory
    /// (a slab object, a page table, `mem_map`): its frame in the direct map.
    pub fn kernel_address(&self, addr: usize) -> Option<u64> {
        self.kernel_layout().host_to_kaddr(&self.lock().phys, addr)
    }

    /// Where the machine's own objects are in its kernel address space: RAM in the direct
    /// map, `mem_map` (as frames of it) and the `struct page` array in vmemmap, the running
    /// process's page-table root and first VMA, the slab and page-table pages, and
    /// `virt_to_page` / `page_to_virt` of the root table's frame.
    pub fn write_kernel_objects(&self, w: &mut dyn Write) -> fmt::Result {
        let l = self.kernel_layout();
        let (nr_frames, mem_map_pfn, pgd, vma, slabs, tables) = {
            let st = self.lock_view();
            let mm_pfn = st.phys.virt_to_pfn(st.phys.page(0) as *const _ as usize);
            let vma = st.mm.vmas.first().and_then(|v| l.host_to_kaddr(&st.phys, v.addr()));
            (
                st.phys.nr_frames() as u64,
                mm_pfn as u64,
                st.mm.pgd as u64,
                vma,
                st.slab.caches().iter().map(|c| c.nr_slabs).sum::<usize>(),
                st.phys.vmstat.nr_page_table_pages,
            )
        };
        let line =
            |w: &mut dyn Write, what: &str, a: u64, b: u64| writeln!(w, "{what:<44} {a:016x}-{b:016x}");
        line(w, "RAM (the direct map's used part)", l.page_offset, l.pfn_to_kaddr(nr_frames) - 1)?;
        line(
            w,
            "mem_map (the simulation's Page array)",
            l.pfn_to_kaddr(mem_map_pfn),
            l.pfn_to_kaddr(nr_frames) - 1,
        )?;
        line(
            w,
            "struct page array (vmemmap)",
            l.vmemmap,
            l.vmemmap + nr_frames * crate::kernel_layout::STRUCT_PAGE_SIZE - 1,
        )?;
        let pgd_k = l.pfn_to_kaddr(pgd);
        writeln!(w, "{:<44} {pgd_k:016x}", "the process's PGD (mm->pgd)")?;
        if let Some(k) = vma {
            writeln!(w, "{:<44} {k:016x}", "its first vm_area_struct")?;
        }
        writeln!(w, "{:<44} {slabs} pages, {tables} page-table pages", "slab caches")?;
        let page = l.virt_to_page(pgd_k).unwrap_or(0);
        writeln!(
            w,
            "virt_to_page({pgd_k:#x}) = {page:#x}, page_to_virt of that = {:#x}",
            l.page_to_virt(page).unwrap_or(0)
        )
    }

    /// `/proc/interrupts`' line for TLB shootdowns: per CPU, the flush requests it handled
    /// from other CPUs.
    pub fn write_interrupts(&self, w: &mut dyn Write) -> fmt::Result {
        let (n, received) = {
            let st = self.lock_view();
            let n = st.phys.cpus.nr_cpus();
            let mut r = [0u64; crate::cpu_tlbstate::MAX_CPUS];
            for (c, v) in r.iter_mut().enumerate().take(n) {
                *v = st.phys.cpus.stats(c).flushes_received;
            }
            (n, r)
        };
        write!(w, "     ")?;
        for c in 0..n {
            let pad = if c < 10 { 6 } else { 5 };
            write!(w, " {:pad$}CPU{c}", "")?;
        }
        writeln!(w)?;
        write!(w, " TLB:")?;
        for r in &received[..n] {
            write!(w, " {r:>10}")?;
        }
        writeln!(w, "   TLB shootdowns")
    }

    /// The simulation's own view of the CPUs' TLBs (Linux shows none): per CPU the process
    /// whose mm is loaded and its ASID, what the CPU counted, and per ASID the process it
    /// holds, the flush generation it caught up with against the mm's, and the entries it
    /// caches.
    pub fn write_tlbinfo(&self, w: &mut dyn Write) -> fmt::Result {
        use crate::cpu_tlbstate::{TlbStats, MAX_CPUS, TLB_NR_DYN_ASIDS, TLB_SETS, TLB_WAYS};
        type Desc = (u64, usize, [(u64, u64); TLB_NR_DYN_ASIDS], [usize; TLB_NR_DYN_ASIDS]);
        let (n, pcid, descs, stats, mms) = {
            let mut st = self.lock_view();
            let n = st.phys.cpus.nr_cpus();
            let mut descs: [Desc; MAX_CPUS] =
                [(0, 0, [(0, 0); TLB_NR_DYN_ASIDS], [0; TLB_NR_DYN_ASIDS]); MAX_CPUS];
            let mut stats = [TlbStats::default(); MAX_CPUS];
            for c in 0..n {
                descs[c] = st.phys.cpus.describe(c);
                stats[c] = st.phys.cpus.stats(c);
            }
            // (context id, pid, tlb_gen) of each process.
            let mut mms = [(0u64, 0u32, 0u64); crate::machine::MAX_TASKS];
            for (t, m) in mms.iter_mut().enumerate() {
                let pid = st.tasks[t].pid;
                if pid != 0 && !st.tasks[t].zombie {
                    let ctx = st.mm_of_task(t).context;
                    *m = (ctx.ctx_id, pid, ctx.tlb_gen);
                }
            }
            (n, st.phys.cpus.pcid(), descs, stats, mms)
        };
        let pid_of = |id: u64| mms.iter().find(|m| m.0 == id && id != 0).map(|m| (m.1, m.2));
        writeln!(
            w,
            "cpus {n} pcid {} asids {TLB_NR_DYN_ASIDS} entries {} ({TLB_SETS} sets x {TLB_WAYS} ways)",
            if pcid { "on" } else { "off" },
            TLB_SETS * TLB_WAYS
        )?;
        writeln!(
            w,
            "# cpu  loaded asid  fault_hits fault_misses scan_cached received switches switch_flushes invalidated evicted"
        )?;
        for c in 0..n {
            let (loaded, asid, ctxs, held) = descs[c];
            let s = stats[c];
            match pid_of(loaded) {
                Some((pid, _)) => write!(w, "cpu{c:<3} {pid:>6} {asid:>4}")?,
                None => write!(w, "cpu{c:<3} {:>6} {:>4}", "-", "-")?,
            }
            writeln!(
                w,
                "  {:>10} {:>12} {:>11} {:>8} {:>8} {:>14} {:>11} {:>7}",
                s.fault_hits,
                s.fault_misses,
                s.scan_cached,
                s.flushes_received,
                s.switches,
                s.switch_flushes,
                s.invalidated,
                s.evicted
            )?;
            for (a, &(id, gen)) in ctxs.iter().enumerate() {
                if id == 0 {
                    continue;
                }
                match pid_of(id) {
                    Some((pid, mm_gen)) => {
                        writeln!(w, "  asid{a} pid {pid} tlb_gen {gen}/{mm_gen} entries {}", held[a])?
                    }
                    None => writeln!(w, "  asid{a} pid - (exited) entries {}", held[a])?,
                }
            }
        }
        Ok(())
    }

    /// `/proc/swaps`.
    pub fn write_swaps(&self, w: &mut dyn Write) -> fmt::Result {
        let line = crate::swapfile::SwapsLine::of(&self.lock_view().phys.swap);
        line.write(w)
    }

    /// `/proc/slabinfo` (version 2.1 format) for the kernel's caches.
    pub fn write_slabinfo(&self, w: &mut dyn Write) -> fmt::Result {
        // Copied out (into a fixed array: nothing may allocate under the lock), then written.
        let (caches, n) = {
            let st = self.lock();
            let cs = st.slab.caches();
            let mut copy: [crate::slab::KmemCache; crate::slab::NR_CACHES] =
                core::array::from_fn(|_| crate::slab::KmemCache::new("", 8));
            copy[..cs.len()].clone_from_slice(cs);
            (copy, cs.len())
        };
        writeln!(w, "slabinfo - version: 2.1")?;
        writeln!(w, "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>")?;
        for c in &caches[..n] {
            writeln!(
                w,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                c.name,
                c.active_objs,
                c.total_objs(),
                c.object_size,
                c.objects_per_slab,
                1 << c.order,
                0,
                0,
                0,
                c.nr_slabs,
                c.nr_slabs,
                0
            )?;
        }
        Ok(())
    }
}
