//! The OOM killer (Linux's `mm/oom_kill.c`): when a fault finds no frame and reclaim frees
//! nothing, the process with the highest `oom_badness` — resident pages, swap entries and
//! page-table pages — is killed and its memory taken back, and the fault retries. If the
//! faulting process is the one chosen, it dies (`signal::oom_kill`).
//!
//! Every process is a candidate (`oom_score_adj` is 0 for all): the simulated pid 1 is the
//! host program, not init. The victim's host process gets `SIGKILL`; once it is gone (the
//! killer waits for it, holding the machine lock, which the victim cannot be holding: the
//! faulting process holds it) its address space and files are torn down (the OOM reaper's
//! work) and it stays a zombie until its parent's `waitpid`.

use crate::machine::{State, MAX_TASKS};
use crate::mm::{Mm, MM_SWAPENTS};
use crate::page::PAGE_SIZE;

/// `oom_badness` with `oom_score_adj` 0: pages the process would give back.
pub(crate) fn oom_badness(mm: &Mm) -> usize {
    mm.rss() + mm.rss[MM_SWAPENTS] + mm.pgtables_bytes / PAGE_SIZE
}

/// `/proc/PID/oom_score` (`proc_oom_score`): the badness per thousand of RAM and swap,
/// scaled into Linux's exported range, `(1000 + badness * 1000 / totalpages) * 2 / 3`.
pub(crate) fn oom_score(st: &State, mm: &Mm) -> usize {
    let total = (st.phys.totalram_pages() + st.phys.swap.total_pages()).max(1);
    (1000 + oom_badness(mm) * 1000 / total) * 2 / 3
}

/// The process to kill (`select_bad_process`): the highest badness, the later one of equals
/// (Linux walks the task list oldest first and takes ties).
pub(crate) fn select_bad_process(st: &State) -> Option<usize> {
    let mut chosen: Option<(usize, usize)> = None;
    let mut order: [(u32, usize); MAX_TASKS] = [(u32::MAX, 0); MAX_TASKS];
    for (t, slot) in order.iter_mut().enumerate() {
        if st.tasks[t].pid != 0 && !st.tasks[t].zombie {
            *slot = (st.tasks[t].pid, t);
        }
    }
    order.sort_unstable();
    for &(pid, t) in &order {
        if pid == u32::MAX {
            break;
        }
        let mm = if t == st.current { &st.mm } else { &st.tasks[t].mm };
        let points = oom_badness(mm);
        if chosen.is_none_or(|(_, best)| points >= best) {
            chosen = Some((t, points));
        }
    }
    chosen.map(|(t, _)| t)
}

/// Kill task `victim`, another process than the running one, and take its memory back.
/// Returns false if its host process would not die in time (nothing was torn down).
pub(crate) fn oom_kill_other(st: &mut State, victim: usize) -> bool {
    use core::fmt::Write;
    let hp = st.tasks[victim].host_pid;
    let mm = &st.tasks[victim].mm;
    let kb = |pages: usize| pages * (PAGE_SIZE / 1024);
    let mut w = crate::util::StackWriter::<300>::new();
    let _ = writeln!(
        w,
        "kernel-sim: Out of memory: Killed process {} (ksim) total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB, pgtables:{}kB oom_score_adj:0",
        st.tasks[victim].pid,
        kb(mm.total_vm),
        kb(mm.rss[crate::mm::MM_ANONPAGES]),
        kb(mm.rss[crate::mm::MM_FILEPAGES]),
        kb(mm.rss[crate::mm::MM_SHMEMPAGES]),
        mm.pgtables_bytes / 1024
    );
    w.emit();
    st.phys.vmstat.oom_kill += 1;
    // SAFETY: SIGKILL to a host process of this machine.
    unsafe { libc::kill(hp, libc::SIGKILL) };
    let mut waited = 0;
    while crate::tlb::host_alive(hp) {
        if waited == 10_000 {
            return false;
        }
        // SAFETY: a 1 ms sleep.
        unsafe { libc::usleep(1000) };
        waited += 1;
    }
    // The OOM reaper: its host process is gone, so nothing reaches its memory any more.
    let host = st.host.detached();
    let mut mm = core::mem::replace(&mut st.tasks[victim].mm, Mm::empty());
    let mut files = core::mem::take(&mut st.tasks[victim].files);
    // SAFETY: the process is gone (above); the detached host leaves the caller's view alone.
    unsafe { crate::fork::exit_mm(st, &mut mm, host) };
    core::mem::swap(&mut st.files, &mut files);
    crate::file::close_all(st);
    core::mem::swap(&mut st.files, &mut files);
    st.tasks[victim].zombie = true;
    st.tasks[victim].stale = false;
    st.free_deferred_if_settled();
    true
}
