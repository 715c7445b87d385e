//! `ptalloc trace-stats FILE`: what a trace holds, in numbers.

use std::fmt::Write;
use std::path::Path;

use crate::history::{self, History};
use crate::trace::Kind;
use crate::tracefile::{self, Trace};

pub fn trace_stats(path: &Path, largest: usize, calls: bool, svg: Option<&Path>) -> Result<i32, String> {
    let trace = tracefile::read(path).map_err(|e| format!("trace-stats: {e}"))?;
    let h = history::history(&trace);
    if let Some(svg) = svg {
        std::fs::write(svg, crate::pictures::trace_chart(&trace, &h))
            .map_err(|e| format!("trace-stats: cannot write {}: {e}", svg.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let mut text = report(&trace, &h, largest);
    if calls {
        text.push_str(
            "
calls, each thread's in its order: [thread] nanoseconds call\n",
        );
        for t in &trace.threads {
            for r in &t.records {
                let _ = writeln!(text, "[{}] {} {}", r.thread, r.time, call(r));
            }
        }
    }
    // A closed pipe (`| head`) ends the output quietly.
    let _ = std::io::Write::write_all(&mut out, text.as_bytes());
    Ok(0)
}

/// A record as the C call it was (results in hex, failures of kernel calls as -errno).
pub fn call(r: &tracefile::Record) -> String {
    let a = r.args;
    let e = |v: u64| if crate::trace::is_errno(v) { format!("{}", v as i64) } else { format!("{v:#x}") };
    match r.kind {
        Kind::Malloc | Kind::Valloc | Kind::Pvalloc => format!("{}({}) = {:#x}", r.kind.name(), a[0], a[1]),
        Kind::Free => format!("free({:#x})", a[0]),
        Kind::Calloc => format!("calloc({}, {}) = {:#x}", a[0], a[1], a[2]),
        Kind::Realloc => format!("realloc({:#x}, {}) = {:#x}", a[0], a[1], a[2]),
        Kind::Reallocarray => format!("reallocarray({:#x}, {}, {}) = {:#x}", a[0], a[1], a[2], a[3]),
        Kind::Memalign | Kind::AlignedAlloc => format!("{}({}, {}) = {:#x}", r.kind.name(), a[0], a[1], a[2]),
        Kind::PosixMemalign => format!("posix_memalign({}, {}) = {:#x} ({})", a[0], a[1], a[2], a[3]),
        Kind::MallocTrim => format!("malloc_trim({}) = {}", a[0], a[1]),
        Kind::Sbrk => format!("sbrk({}) = {}", a[0] as i64, e(a[1])),
        Kind::Mmap => format!("mmap({}, {:#x}, {:#x}) = {}", a[0], a[1] >> 32, a[1] as u32, e(a[2])),
        Kind::Munmap => format!("munmap({:#x}, {}) = {}", a[0], a[1], e(a[2])),
        Kind::Mremap => format!("mremap({:#x}, {}, {}, {:#x}) = {}", a[0], a[1], a[2], a[3], e(a[4])),
        Kind::Mprotect | Kind::Madvise => {
            format!("{}({:#x}, {}, {:#x}) = {}", r.kind.name(), a[0], a[1], a[2], e(a[3]))
        }
        Kind::Rss => format!("rss {}", a[0]),
    }
}

/// Bytes for people: B, KiB, MiB, GiB with one decimal above bytes.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Nanoseconds for people.
pub fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// A UTC date and time from nanoseconds since the epoch (days to civil date, proleptic
/// Gregorian).
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

fn bar(n: u64, max: u64) -> String {
    let w = if max == 0 { 0 } else { ((n as f64 / max as f64) * 40.0).ceil() as usize };
    "#".repeat(w)
}

pub fn report(trace: &Trace, h: &History, largest: usize) -> String {
    let mut o = String::new();
    let hd = &trace.header;
    let _ = writeln!(
        o,
        "trace {}: process {} (parent {}){}: {}",
        trace.path.display(),
        hd.pid,
        hd.ppid,
        if hd.forked != 0 { ", a forked child" } else { "" },
        trace.cmdline.join(" ")
    );
    let _ = writeln!(
        o,
        "  recorded {}, {} long; {} records from {} threads",
        utc(hd.start_realtime_ns),
        duration(h.duration),
        trace.records(),
        trace.threads.len()
    );
    if trace.truncated {
        let _ = writeln!(o, "  the trace ends mid-way (the program was killed, or the file is cut): read up to its last complete record");
    }
    if hd.dropped != 0 {
        let _ = writeln!(
            o,
            "  {} calls were not recorded (made while the recorder was busy on their thread)",
            hd.dropped
        );
    }

    // Calls by kind.
    let all = || trace.threads.iter().flat_map(|t| t.records.iter());
    // One pass: calls by kind, and the bytes of those that succeeded (a failed one may ask
    // for any number).
    let mut count = [0usize; 256];
    let mut requested = [0u64; 256];
    for r in all() {
        count[r.kind as usize] += 1;
        if history::is_allocation(r.kind) && history::result(r) != 0 {
            requested[r.kind as usize] = requested[r.kind as usize].saturating_add(history::request(r));
        }
    }
    let _ = writeln!(o, "\nprogram calls        count   requested");
    for k in Kind::ALL.iter().filter(|k| !k.is_kernel() && **k != Kind::Rss) {
        let n = count[*k as usize];
        if n == 0 {
            continue;
        }
        let req = requested[*k as usize];
        let req = if history::is_allocation(*k) { bytes(req) } else { String::new() };
        let _ = writeln!(o, "  {:<16} {n:>9}   {req}", k.name());
    }
    let total: u64 = requested.iter().fold(0u64, |t, v| t.saturating_add(*v));
    let _ = writeln!(o, "  requested in all: {total} bytes");
    let _ = writeln!(o, "\nkernel calls (by ptalloc)");
    let kernel_records: Vec<_> = all().filter(|r| r.kind.is_kernel()).collect();
    for k in Kind::ALL.iter().filter(|k| k.is_kernel()) {
        let rs: Vec<_> = kernel_records.iter().copied().filter(|r| r.kind == *k).collect();
        if rs.is_empty() {
            continue;
        }
        let failed = rs.iter().filter(|r| kernel_failed(r)).count();
        let ok = || rs.iter().filter(|r| !kernel_failed(r));
        let what = match k {
            Kind::Sbrk => {
                let grown: u64 = ok().filter(|r| (r.args[0] as i64) > 0).map(|r| r.args[0]).sum();
                let shrunk: u64 =
                    ok().filter(|r| (r.args[0] as i64) < 0).map(|r| (r.args[0] as i64).unsigned_abs()).sum();
                format!("+{} -{}", bytes(grown), bytes(shrunk))
            }
            Kind::Mmap => bytes(ok().map(|r| r.args[0]).sum()),
            Kind::Munmap | Kind::Mprotect | Kind::Madvise => bytes(ok().map(|r| r.args[1]).sum()),
            Kind::Mremap => {
                let grown: u64 = ok().map(|r| r.args[2].saturating_sub(r.args[1])).sum();
                let shrunk: u64 = ok().map(|r| r.args[1].saturating_sub(r.args[2])).sum();
                format!("+{} -{}", bytes(grown), bytes(shrunk))
            }
            _ => String::new(),
        };
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        let _ = writeln!(o, "  {:<10} {:>7} calls  {what}{failed}", k.name(), rs.len());
    }

    // Sizes: powers of two.
    let mut classes = [0u64; 65];
    for r in all().filter(|r| history::is_allocation(r.kind) && history::result(r) != 0) {
        let s = history::request(r);
        classes[if s <= 1 { 0 } else { 64 - (s - 1).leading_zeros() as usize }] += 1;
    }
    let max = classes.iter().copied().max().unwrap_or(0);
    let _ = writeln!(o, "\nrequested sizes      count (allocations that succeeded)");
    for (c, n) in classes.iter().enumerate().filter(|(_, n)| **n > 0) {
        let hi = 1u128 << c;
        let label = if c == 0 {
            "0-1 B".to_string()
        } else {
            format!("{}-{}", bytes((hi / 2) as u64 + 1), bytes(hi as u64))
        };
        let _ = writeln!(o, "  {label:<18} {n:>9}  {}", bar(*n, max));
    }

    // Lifetimes, by decade.
    let mut decades = [0u64; 11];
    let mut never = (0u64, 0u64);
    for b in &h.blocks {
        match b.free_time {
            Some(f) => {
                let l = f.saturating_sub(b.alloc_time).max(1);
                decades[((l as f64).log10() as usize).min(10)] += 1;
            }
            None => {
                never.0 += 1;
                never.1 += b.size;
            }
        }
    }
    let labels = [
        "< 10 ns", "< 100 ns", "< 1 us", "< 10 us", "< 100 us", "< 1 ms", "< 10 ms", "< 100 ms", "< 1 s",
        "< 10 s", ">= 10 s",
    ];
    let max = decades.iter().copied().max().unwrap_or(0);
    let _ = writeln!(o, "\nlifetimes            blocks");
    for (i, n) in decades.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(o, "  {:<18} {n:>9}  {}", labels[i], bar(*n, max));
    }
    let _ = writeln!(o, "  {:<18} {:>9}  ({} live at the end)", "never freed", never.0, bytes(never.1));

    let _ = writeln!(
        o,
        "\nlive bytes: peak {} ({} bytes) at {}; {} at the end",
        bytes(h.peak_live),
        h.peak_live,
        duration(h.peak_live_time),
        bytes(h.live_at_end)
    );
    let rss_peak = h.rss_series.iter().map(|p| p.1).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "memory from the kernel: peak {} (break and accessible mappings); resident: peak {} of the samples",
        bytes(h.peak_heap),
        bytes(rss_peak)
    );

    // Threads.
    let _ = writeln!(o, "\nthreads: {}", trace.threads.len());
    let mut busiest: Vec<_> = trace.threads.iter().map(|t| (t.records.len(), t.thread, t.tid)).collect();
    busiest.sort_by(|a, b| b.cmp(a));
    for (n, thread, tid) in busiest.iter().take(8) {
        let _ = writeln!(o, "  thread {thread:<4} (tid {tid:<7}) {n:>9} records");
    }
    if busiest.len() > 8 {
        let _ = writeln!(o, "  ... and {} more", busiest.len() - 8);
    }
    let cross: u64 = h.cross_thread.values().sum();
    let _ = writeln!(o, "cross-thread frees: {cross}");
    let mut pairs: Vec<_> = h.cross_thread.iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(a.1));
    for ((from, to), n) in pairs.iter().take(8) {
        let _ = writeln!(o, "  allocated by thread {from}, freed by thread {to}: {n}");
    }

    // The largest blocks.
    let mut big: Vec<usize> = (0..h.blocks.len()).collect();
    big.sort_by(|a, b| h.blocks[*b].max_size.cmp(&h.blocks[*a].max_size));
    let _ = writeln!(o, "\nlargest blocks");
    for &i in big.iter().take(largest) {
        let b = &h.blocks[i];
        let life = match b.free_time {
            Some(f) => format!("freed after {}", duration(f.saturating_sub(b.alloc_time))),
            None => "never freed".to_string(),
        };
        let _ = writeln!(
            o,
            "  {:>12}  thread {}, at {}, {life}{}",
            bytes(b.max_size),
            b.alloc_thread,
            duration(b.alloc_time),
            if b.reallocs > 0 { format!(", {} reallocs", b.reallocs) } else { String::new() }
        );
    }
    let _ = writeln!(
        o,
        "\nfree(NULL): {}; frees of addresses the trace never returned: {}; allocations that failed: {}",
        h.free_null, h.unknown_frees, h.failed
    );
    if h.overlaps > 0 {
        let _ =
            writeln!(o, "addresses returned while a block was still there (unseen frees): {}", h.overlaps);
    }
    o
}

fn kernel_failed(r: &tracefile::Record) -> bool {
    let res = match r.kind {
        Kind::Sbrk => r.args[1],
        Kind::Mmap | Kind::Munmap => r.args[2],
        Kind::Mprotect | Kind::Madvise => r.args[3],
        Kind::Mremap => r.args[4],
        _ => 0,
    };
    crate::trace::is_errno(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_units() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_300_000 * 1_000_000_000), "2026-12-03 12:13:20 UTC");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(duration(1500), "1.5 us");
    }
}
