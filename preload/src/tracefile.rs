//! Reading a trace written by `ptalloc record` (layout in `trace.rs`): every complete
//! record, each thread's in the order the thread made its calls.
//!
//! What cannot be a trace is refused with one line saying why (an empty file, another
//! format, another version, a block or record that is not of this format); what a killed
//! program or a cut copy leaves — a block never written, a record cut short, a file that
//! ends mid-block — is read up to its last complete record, and said so.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::trace::{
    split_head, BlockHeader, FileHeader, Kind, BLOCK_HEADER_SIZE, BLOCK_MAGIC, BLOCK_SIZE, FILE_HEADER_SIZE,
    MAGIC, VERSION,
};

/// One call, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The thread's number in the process (from 1).
    pub thread: u32,
    pub kind: Kind,
    /// Nanoseconds since recording began: the end of a call that returns a block, the start
    /// of one that only frees.
    pub time: u64,
    /// The words after the first, as `trace::Kind` lists them (unused ones zero).
    pub args: [u64; 5],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub thread: u32,
    pub tid: u32,
    /// Its records, in the order it made the calls.
    pub records: Vec<Record>,
}

#[derive(Debug)]
pub struct Trace {
    pub path: PathBuf,
    pub header: FileHeader,
    /// The recorded program's command line.
    pub cmdline: Vec<String>,
    /// By thread number.
    pub threads: Vec<ThreadInfo>,
    /// The file ends inside a block, or a record was cut short: the program was killed,
    /// or the file is an incomplete copy. Everything before is read.
    pub truncated: bool,
}

impl Trace {
    pub fn records(&self) -> usize {
        self.threads.iter().map(|t| t.records.len()).sum()
    }
}

/// Read the trace at `path`; the error is one line, naming the file.
pub fn read(path: &Path) -> Result<Trace, String> {
    let name = path.display();
    let file = File::open(path).map_err(|e| format!("cannot open {name}: {}", io_reason(&e)))?;
    let len = file.metadata().map_err(|e| format!("cannot read {name}: {}", io_reason(&e)))?.len();
    if len == 0 {
        return Err(format!("{name} is empty, not a ptalloc trace"));
    }
    // SAFETY: the mapping is read-only and private to this process; a trace being written
    // by a running program may change under it, which the parser tolerates (it checks every
    // value it reads), but it is never shrunk by the recorder.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot read {name}: {}", io_reason(&e)))?;
    parse(path, &map)
}

fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    // "No such file or directory (os error 2)" -> "no such file or directory"
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

/// Parse a whole trace held in memory.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Trace, String> {
    // (thread, seq, records) per block, then each thread's blocks in order.
    let mut blocks: Vec<(BlockHeader, Vec<Record>)> = Vec::new();
    let (header, cmdline, truncated) = scan(path, bytes, &mut |h, r| match blocks.last_mut() {
        Some((last, records)) if *last == h => records.push(r),
        _ => blocks.push((h, vec![r])),
    })?;
    blocks.sort_by_key(|(h, _)| (h.thread, h.seq));
    let mut threads: Vec<ThreadInfo> = Vec::new();
    for (h, records) in blocks {
        match threads.last_mut() {
            Some(t) if t.thread == h.thread => t.records.extend(records),
            _ => threads.push(ThreadInfo { thread: h.thread, tid: h.tid, records }),
        }
    }
    Ok(Trace { path: path.to_path_buf(), header, cmdline, threads, truncated })
}

/// The number of complete records in the trace at `path`, without keeping them.
pub fn count(path: &Path) -> Result<usize, String> {
    let name = path.display();
    let file = File::open(path).map_err(|e| format!("cannot open {name}: {}", io_reason(&e)))?;
    if file.metadata().map_err(|e| format!("cannot read {name}: {}", io_reason(&e)))?.len() == 0 {
        return Err(format!("{name} is empty, not a ptalloc trace"));
    }
    // SAFETY: as in `read`.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot read {name}: {}", io_reason(&e)))?;
    let mut n = 0;
    scan(path, &map, &mut |_, _| n += 1)?;
    Ok(n)
}

/// Check the header and hand every complete record to `sink` with its block's header, in
/// file order; returns the header, the command line, and whether the trace ends mid-way.
fn scan(
    path: &Path,
    bytes: &[u8],
    sink: &mut dyn FnMut(BlockHeader, Record),
) -> Result<(FileHeader, Vec<String>, bool), String> {
    let name = path.display();
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(format!("{name} is truncated: it ends inside the trace's header"));
        }
        return Err(format!("{name} is not a ptalloc trace (it does not start with {:?})", "PTALLOCT"));
    }
    if bytes.len() < FILE_HEADER_SIZE {
        return Err(format!("{name} is truncated: it ends inside the trace's header"));
    }
    let header = FileHeader::from_bytes(bytes[..FILE_HEADER_SIZE].try_into().unwrap());
    if header.version != VERSION {
        return Err(format!(
            "{name} is a trace of format version {}; this ptalloc reads version {VERSION}",
            header.version
        ));
    }
    if header.block_size as usize != BLOCK_SIZE {
        return Err(format!("{name}: corrupt header (block size {}, not {BLOCK_SIZE})", header.block_size));
    }
    let cmd_end = FILE_HEADER_SIZE + header.cmdline_len as usize;
    if cmd_end > BLOCK_SIZE {
        return Err(format!("{name}: corrupt header (a command line of {} bytes)", header.cmdline_len));
    }
    let mut truncated = false;
    let cmdline = match bytes.get(FILE_HEADER_SIZE..cmd_end) {
        Some(c) => c
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        None => {
            truncated = true;
            Vec::new()
        }
    };
    let nblocks = bytes.len().div_ceil(BLOCK_SIZE);
    if !bytes.len().is_multiple_of(BLOCK_SIZE) {
        truncated = true;
    }
    for b in 1..nblocks {
        let start = b * BLOCK_SIZE;
        let block = &bytes[start..bytes.len().min(start + BLOCK_SIZE)];
        let words = block.len() / 8;
        if words < BLOCK_HEADER_SIZE / 8 {
            continue;
        }
        let h = BlockHeader::from_words([word(block, 0), word(block, 1)]);
        if h.magic == 0 {
            // Claimed by a thread that died (or was killed) before writing it.
            continue;
        }
        if h.magic != BLOCK_MAGIC || h.thread == 0 {
            return Err(format!("{name}: corrupt trace (block {b} at offset {start} has no block header)"));
        }
        let mut i = BLOCK_HEADER_SIZE / 8;
        while i < words {
            let w = word(block, i);
            if w == 0 {
                break;
            }
            let (k, time) = split_head(w);
            let Some(kind) = Kind::from_u8(k) else {
                return Err(format!(
                    "{name}: corrupt trace (unknown record kind {k} at offset {})",
                    start + i * 8
                ));
            };
            let n = kind.args();
            if i + 1 + n > words {
                truncated = true;
                break;
            }
            let mut args = [0u64; 5];
            for (j, a) in args.iter_mut().enumerate().take(n) {
                *a = word(block, i + 1 + j);
            }
            sink(h, Record { thread: h.thread, kind, time, args });
            i += 1 + n;
        }
    }
    Ok((header, cmdline, truncated))
}

/// The files of one recording: `path` and its children's `path.PID` of the same session,
/// by process id.
pub fn session_files(path: &Path) -> Vec<PathBuf> {
    let Ok(first) = read_header(path) else { return Vec::new() };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Vec::new() };
    let mut children: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let pid: u32 = n.strip_prefix(&base)?.strip_prefix('.')?.parse().ok()?;
            let p = dir.join(&n);
            let h = read_header(&p).ok()?;
            (h.session == first.session && h.session != 0).then_some((pid, p))
        })
        .collect();
    children.sort();
    std::iter::once(path.to_path_buf()).chain(children.into_iter().map(|(_, p)| p)).collect()
}

/// Just the header of a trace.
pub fn read_header(path: &Path) -> Result<FileHeader, String> {
    use std::io::Read;
    let mut b = [0u8; FILE_HEADER_SIZE];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    let h = FileHeader::from_bytes(&b);
    if h.magic != MAGIC {
        return Err(format!("{} is not a ptalloc trace", path.display()));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::head;

    /// A trace of one thread's records, as the recorder lays it out.
    fn build(records: &[(Kind, u64, &[u64])]) -> Vec<u8> {
        let mut f = vec![0u8; 2 * BLOCK_SIZE];
        let h = FileHeader {
            magic: MAGIC,
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            cmdline_len: 5,
            ..Default::default()
        };
        f[..FILE_HEADER_SIZE].copy_from_slice(&h.to_bytes());
        f[FILE_HEADER_SIZE..FILE_HEADER_SIZE + 5].copy_from_slice(b"ls\0-l\0"[..5].as_ref());
        let mut words = BlockHeader { magic: BLOCK_MAGIC, thread: 1, tid: 77, seq: 0 }.to_words().to_vec();
        for (k, t, args) in records {
            words.push(head(*k, *t));
            words.extend_from_slice(args);
        }
        for (i, w) in words.iter().enumerate() {
            f[BLOCK_SIZE + i * 8..BLOCK_SIZE + i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        f
    }

    #[test]
    fn reads_records_and_stops_at_a_cut() {
        let f = build(&[(Kind::Malloc, 10, &[32, 0x1000]), (Kind::Free, 20, &[0x1000])]);
        let t = parse(Path::new("t"), &f).unwrap();
        assert_eq!(t.cmdline, ["ls", "-l"]);
        assert_eq!(t.threads.len(), 1);
        assert_eq!(t.threads[0].tid, 77);
        assert_eq!(t.records(), 2);
        assert!(!t.truncated);
        assert_eq!(
            t.threads[0].records[1],
            Record { thread: 1, kind: Kind::Free, time: 20, args: [0x1000, 0, 0, 0, 0] }
        );
        // Cut inside the second record's only argument: one record, truncated.
        let cut = &f[..BLOCK_SIZE + 16 + 24 + 12];
        let t = parse(Path::new("t"), cut).unwrap();
        assert_eq!(t.records(), 1);
        assert!(t.truncated);
    }

    #[test]
    fn refuses_what_is_not_a_trace() {
        let p = Path::new("x");
        assert!(parse(p, b"garbage that is long enough to be a header of sixty-four bytes...")
            .unwrap_err()
            .contains("not a ptalloc trace"));
        assert!(parse(p, b"PTAL").unwrap_err().contains("truncated"));
        let mut f = build(&[]);
        f[8] = 9;
        assert!(parse(p, &f).unwrap_err().contains("version 9"));
        let mut f = build(&[(Kind::Malloc, 1, &[1, 2])]);
        f[BLOCK_SIZE + 16] = 200;
        assert!(parse(p, &f).unwrap_err().contains("unknown record kind 200"));
        let mut f = build(&[]);
        f[BLOCK_SIZE] = 1;
        assert!(parse(p, &f).unwrap_err().contains("no block header"));
    }
}
