//! A picture of a machine as SVG: each process's address space (a row of boxes, one per
//! VMA, widths on a log scale so a page and a gigabyte both show, with bars for how much of
//! it is resident and how much of that it shares) and physical memory (each zone's frames in
//! buckets, coloured by how many are free, with a row marking the frames mapped more than
//! once: shared between processes or mappings).
//!
//! Like the other views it is not a system-call path: it copies what it needs under the lock
//! and writes to any `fmt::Write`.

use core::fmt::{self, Write};

use crate::buddy::MAX_NR_ZONES;
use crate::machine::Machine;
use crate::mm::{VM_EXEC, VM_SHARED, VM_WRITE};
use crate::page::{PAGE_SIZE, PG_BUDDY};
use crate::proc::VmaInfo;

const WIDTH: f64 = 1200.0;
const BUCKETS: usize = 256;

fn colour(v: &VmaInfo) -> &'static str {
    if v.name == "[heap]" {
        "#e6a23c"
    } else if v.name == "[stack]" {
        "#909399"
    } else if v.flags & VM_SHARED != 0 {
        "#9b59b6"
    } else if v.flags & 7 == 0 {
        "#dcdfe6"
    } else if v.flags & VM_EXEC != 0 {
        "#67c23a"
    } else if v.flags & VM_WRITE != 0 {
        "#409eff"
    } else {
        "#a0cfff"
    }
}

impl Machine {
    /// Write the picture.
    pub fn write_svg(&self, w: &mut dyn Write) -> fmt::Result {
        let (pids, n) = self.pids();
        let mut rows: Vec<(u32, Vec<VmaInfo>)> = Vec::new();
        for &pid in &pids[..n] {
            let mut vmas = Vec::new();
            if self.as_process(pid, || self.for_each_vma(|v| vmas.push(*v))).is_ok() {
                rows.push((pid, vmas));
            }
        }
        // Free frames per bucket of each zone, counted from mem_map under the lock into fixed
        // arrays (nothing may allocate while the lock is held).
        let mut zones = [("", 0usize, 0usize, 0usize, [0u32; BUCKETS], [0u32; BUCKETS]); MAX_NR_ZONES];
        let mut nzones = 0;
        {
            let st = self.lock();
            let pm = &st.phys;
            for zone in pm.zones.iter().filter(|z| z.populated()) {
                let (start, span) = (zone.zone_start_pfn, zone.spanned_pages);
                let per = span.div_ceil(BUCKETS).max(1);
                let mut free = [0u32; BUCKETS];
                let mut shared = [0u32; BUCKETS];
                let mut pfn = start;
                while pfn < start + span {
                    let p = pm.page(pfn);
                    if p.has(PG_BUDDY) {
                        let n = 1usize << p.order.get();
                        for f in pfn..(pfn + n).min(start + span) {
                            free[(f - start) / per] += 1;
                        }
                        pfn += n;
                    } else {
                        if p.mapcount.get() >= 2 {
                            shared[(pfn - start) / per] += 1;
                        }
                        pfn += 1;
                    }
                }
                zones[nzones] = (zone.name, zone.free_pages, zone.managed_pages, per, free, shared);
                nzones += 1;
            }
        }
        let zones = &zones[..nzones];
        const ROW: usize = 90;
        let top = 20 + ROW * rows.len();
        let height = top + 20 + 60 * zones.len();
        writeln!(
            w,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">"#
        )?;
        let weight = |v: &VmaInfo| ((v.end - v.start) / PAGE_SIZE) as f64;
        for (k, (pid, vmas)) in rows.iter().enumerate() {
            let y0 = 14 + ROW * k;
            writeln!(
                w,
                r#"<text x="4" y="{y0}">process {pid}: {} VMAs (width ~ log2 of size; black: resident, purple: shared)</text>"#,
                vmas.len()
            )?;
            let total: f64 = vmas.iter().map(|v| 1.0 + weight(v).log2()).sum::<f64>().max(1.0);
            let mut x = 4.0;
            for v in vmas {
                let wd = (WIDTH - 8.0) * (1.0 + weight(v).log2()) / total;
                let size = (v.end - v.start) as f64;
                let resident = v.stats.resident as f64 / size;
                let shared = (v.stats.shared_clean + v.stats.shared_dirty) as f64 / size;
                writeln!(
                    w,
                    r#"<rect x="{x:.1}" y="{}" width="{wd:.1}" height="40" fill="{}" stroke="white"><title>{:x}-{:x} {} {} ({} KiB resident, {} KiB shared)</title></rect>"#,
                    y0 + 10,
                    colour(v),
                    v.start,
                    v.end,
                    v.perms_str(),
                    v.name,
                    v.stats.resident >> 10,
                    (v.stats.shared_clean + v.stats.shared_dirty) >> 10
                )?;
                writeln!(
                    w,
                    r#"<rect x="{x:.1}" y="{}" width="{:.1}" height="8" fill="black"/>"#,
                    y0 + 50,
                    wd * resident
                )?;
                writeln!(
                    w,
                    r##"<rect x="{x:.1}" y="{}" width="{:.1}" height="8" fill="#8e44ad"/>"##,
                    y0 + 58,
                    wd * shared
                )?;
                x += wd;
            }
        }
        let mut y = top + 10;
        for (name, free, managed, per, buckets, shared) in zones {
            writeln!(
                w,
                r#"<text x="4" y="{y}">zone {name}: {free} of {managed} frames free (green: free; purple below: mapped more than once)</text>"#
            )?;
            let bw = (WIDTH - 8.0) / BUCKETS as f64;
            for (i, &n) in buckets.iter().enumerate() {
                let f = n as f64 / *per as f64;
                let g = (80.0 + 175.0 * f) as u8;
                let r = (200.0 * (1.0 - f)) as u8;
                writeln!(
                    w,
                    r##"<rect x="{:.1}" y="{}" width="{:.1}" height="18" fill="#{r:02x}{g:02x}40"/>"##,
                    4.0 + i as f64 * bw,
                    y + 6,
                    bw
                )?;
                let s = shared[i] as f64 / *per as f64;
                if s > 0.0 {
                    writeln!(
                        w,
                        r##"<rect x="{:.1}" y="{}" width="{:.1}" height="8" fill="#8e44ad" fill-opacity="{:.2}"/>"##,
                        4.0 + i as f64 * bw,
                        y + 26,
                        bw,
                        0.3 + 0.7 * s
                    )?;
                }
            }
            y += 60;
        }
        writeln!(w, "</svg>")
    }
}
