//! The trace file of `ptalloc record`: its layout, shared by the recorder inside
//! libptalloc.so (which writes it) and the `ptalloc` command (which reads it).
//!
//! A trace is a sequence of blocks of [`BLOCK_SIZE`] bytes. Block 0 holds the
//! [`FileHeader`] and the program's command line. Every other block belongs to one thread
//! of the process: a [`BlockHeader`] and then that thread's records, in the order it made
//! the calls, up to the first zero word (or the block's end). Threads claim blocks with one
//! atomic increment and write them through a shared mapping of the file, so the records are
//! in the file (the page cache) the moment they are written: a program killed by any signal
//! leaves every record it completed.
//!
//! A record is whole 64-bit little-endian words: first `kind | time << 8` (the time in
//! nanoseconds since [`FileHeader::start_ns`]), then the kind's arguments and results. The
//! recorder stores the first word last, so a record cut short by the program's death reads
//! as the end of its block. Times come from `CLOCK_MONOTONIC`, taken after a call that
//! returns a block and before one that frees it (`realloc`, which does both, has both): a
//! block handed to another thread is freed at a later time than it was allocated, and an
//! address freed by one thread and returned to another is freed earlier than it is returned,
//! so sorting by time tells which block an address is at every moment. While the process
//! has a single recording thread, only every 32nd time is a clock reading; those between
//! are the last reading plus one nanosecond each (see `recorder::now`).
//!
//! Files of child processes: a forked child starts a file of its own, `FILE.PID`, as does
//! any program the process executes (its library finds `FILE` taken); each header holds the
//! session number of the `ptalloc record` that started them all.

/// The first eight bytes of every trace.
pub const MAGIC: [u8; 8] = *b"PTALLOCT";
/// The layout described here. A reader refuses other versions.
pub const VERSION: u32 = 1;
/// The unit of the file: each block is written by one thread through one mapping.
pub const BLOCK_SIZE: usize = 64 * 1024;
/// The first word of a thread block's header.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"PTBK");
/// The longest record, in words (`mremap`, `reallocarray`).
pub const MAX_RECORD_WORDS: usize = 6;

/// Block 0, at offset 0 (all fields little-endian). The command line follows it, its
/// arguments each ending with a NUL, `cmdline_len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// [`BLOCK_SIZE`] when written.
    pub block_size: u32,
    pub pid: u32,
    pub ppid: u32,
    /// Set by `ptalloc record` for all the files of one recording.
    pub session: u64,
    /// `CLOCK_MONOTONIC` when recording began, in nanoseconds; records count from it.
    pub start_ns: u64,
    /// `CLOCK_REALTIME` at the same moment.
    pub start_realtime_ns: u64,
    pub page_size: u32,
    pub cmdline_len: u32,
    /// 1 when this file was started by a forked child (its parent's file is the parent's).
    pub forked: u32,
    /// Records the recorder could not write (made by a signal handler while the thread was
    /// starting a block, or by fork handlers), written at exit: 0 too when the program did
    /// not exit through `exit`.
    pub dropped: u32,
}

pub const FILE_HEADER_SIZE: usize = core::mem::size_of::<FileHeader>();
const _: () = assert!(FILE_HEADER_SIZE == 64);

/// At the start of every thread block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockHeader {
    pub magic: u32,
    /// The thread's number in this process, from 1 in the order threads first called.
    pub thread: u32,
    /// Its Linux thread id.
    pub tid: u32,
    /// The block's number among the thread's blocks, from 0.
    pub seq: u32,
}

pub const BLOCK_HEADER_SIZE: usize = core::mem::size_of::<BlockHeader>();
const _: () = assert!(BLOCK_HEADER_SIZE == 16);

/// What a record is, and the words that follow its first. Results of kernel calls that
/// failed are `-errno`; addresses returned by a failed allocation are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// size, result
    Malloc = 1,
    /// pointer
    Free = 2,
    /// count, size, result
    Calloc = 3,
    /// pointer, size, result, the call's start time (the first word's is its end)
    Realloc = 4,
    /// pointer, count, size, result, the call's start time
    Reallocarray = 5,
    /// alignment, size, result
    Memalign = 6,
    /// alignment, size, result, return value
    PosixMemalign = 7,
    /// alignment, size, result
    AlignedAlloc = 8,
    /// size, result
    Valloc = 9,
    /// size, result
    Pvalloc = 10,
    /// pad, return value
    MallocTrim = 11,
    /// increment (signed), the old break or -errno
    Sbrk = 32,
    /// length, `prot << 32 | flags`, address or -errno
    Mmap = 33,
    /// address, length, 0 or -errno
    Munmap = 34,
    /// address, old length, new length, flags, address or -errno
    Mremap = 35,
    /// address, length, protection, 0 or -errno
    Mprotect = 36,
    /// address, length, advice, 0 or -errno
    Madvise = 37,
    /// the process's resident bytes (`/proc/self/statm`), sampled as a thread starts a block
    Rss = 64,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::Malloc,
        Kind::Free,
        Kind::Calloc,
        Kind::Realloc,
        Kind::Reallocarray,
        Kind::Memalign,
        Kind::PosixMemalign,
        Kind::AlignedAlloc,
        Kind::Valloc,
        Kind::Pvalloc,
        Kind::MallocTrim,
        Kind::Sbrk,
        Kind::Mmap,
        Kind::Munmap,
        Kind::Mremap,
        Kind::Mprotect,
        Kind::Madvise,
        Kind::Rss,
    ];

    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| *k as u8 == v)
    }

    /// The words after the first.
    pub const fn args(self) -> usize {
        match self {
            Kind::Free | Kind::Rss => 1,
            Kind::Malloc | Kind::Valloc | Kind::Pvalloc | Kind::MallocTrim | Kind::Sbrk => 2,
            Kind::Calloc | Kind::Memalign | Kind::AlignedAlloc | Kind::Mmap | Kind::Munmap => 3,
            Kind::Realloc | Kind::PosixMemalign | Kind::Mprotect | Kind::Madvise => 4,
            Kind::Reallocarray | Kind::Mremap => 5,
        }
    }

    /// The C name of the call.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Malloc => "malloc",
            Kind::Free => "free",
            Kind::Calloc => "calloc",
            Kind::Realloc => "realloc",
            Kind::Reallocarray => "reallocarray",
            Kind::Memalign => "memalign",
            Kind::PosixMemalign => "posix_memalign",
            Kind::AlignedAlloc => "aligned_alloc",
            Kind::Valloc => "valloc",
            Kind::Pvalloc => "pvalloc",
            Kind::MallocTrim => "malloc_trim",
            Kind::Sbrk => "sbrk",
            Kind::Mmap => "mmap",
            Kind::Munmap => "munmap",
            Kind::Mremap => "mremap",
            Kind::Mprotect => "mprotect",
            Kind::Madvise => "madvise",
            Kind::Rss => "rss",
        }
    }

    /// A call the kernel answers (made by the allocator), not one the program made.
    pub const fn is_kernel(self) -> bool {
        matches!(self, Kind::Sbrk | Kind::Mmap | Kind::Munmap | Kind::Mremap | Kind::Mprotect | Kind::Madvise)
    }
}

const _: () = assert!(1 + Kind::Mremap.args() == MAX_RECORD_WORDS);

/// The calling process's resident bytes, from `/proc/self/statm` (0 if unreadable), read
/// into a buffer on the stack: the recorder and the replay's sampler both run beside an
/// allocator they must not call.
pub fn resident_bytes() -> u64 {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; a read into our buffer; the descriptor closed.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..n.max(0) as usize];
    // The second field: resident pages.
    let pages = text.split(|b| *b == b' ').nth(1).map_or(0, |f| {
        f.iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
    });
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// The first word of a record.
pub const fn head(kind: Kind, time_ns: u64) -> u64 {
    kind as u64 | time_ns << 8
}

/// The kind byte and the time of a record's first word.
pub const fn split_head(word: u64) -> (u8, u64) {
    (word as u8, word >> 8)
}

/// Whether a kernel call's recorded answer is `-errno` (Linux's errors are 1 to 4095).
pub fn is_errno(v: u64) -> bool {
    (-4095..0).contains(&(v as i64))
}

/// A value of the kernel's answer: the value itself, or `-errno`.
pub fn kernel_result(r: Result<usize, i32>) -> u64 {
    match r {
        Ok(v) => v as u64,
        Err(e) => (-(e as i64)) as u64,
    }
}

impl FileHeader {
    pub fn to_bytes(self) -> [u8; FILE_HEADER_SIZE] {
        let mut b = [0u8; FILE_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.magic);
        let words32 = [(8, self.version), (12, self.block_size), (16, self.pid), (20, self.ppid)];
        for (at, v) in words32 {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        for (at, v) in [(24, self.session), (32, self.start_ns), (40, self.start_realtime_ns)] {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        for (at, v) in [(48, self.page_size), (52, self.cmdline_len), (56, self.forked), (60, self.dropped)] {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; FILE_HEADER_SIZE]) -> FileHeader {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        FileHeader {
            magic,
            version: u32_at(8),
            block_size: u32_at(12),
            pid: u32_at(16),
            ppid: u32_at(20),
            session: u64_at(24),
            start_ns: u64_at(32),
            start_realtime_ns: u64_at(40),
            page_size: u32_at(48),
            cmdline_len: u32_at(52),
            forked: u32_at(56),
            dropped: u32_at(60),
        }
    }
}

impl BlockHeader {
    pub fn to_words(self) -> [u64; 2] {
        [self.magic as u64 | (self.thread as u64) << 32, self.tid as u64 | (self.seq as u64) << 32]
    }

    pub fn from_words(w: [u64; 2]) -> BlockHeader {
        BlockHeader {
            magic: w[0] as u32,
            thread: (w[0] >> 32) as u32,
            tid: w[1] as u32,
            seq: (w[1] >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = FileHeader {
            magic: MAGIC,
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            pid: 7,
            ppid: 1,
            session: 0x1234_5678_9abc,
            start_ns: 99,
            start_realtime_ns: 1 << 60,
            page_size: 4096,
            cmdline_len: 12,
            forked: 1,
            dropped: 2,
        };
        assert_eq!(FileHeader::from_bytes(&h.to_bytes()), h);
        let b = BlockHeader { magic: BLOCK_MAGIC, thread: 3, tid: 4242, seq: 9 };
        assert_eq!(BlockHeader::from_words(b.to_words()), b);
        for k in Kind::ALL {
            assert_eq!(Kind::from_u8(k as u8), Some(k));
            assert!(k.args() < MAX_RECORD_WORDS);
            assert_eq!(split_head(head(k, 123_456)), (k as u8, 123_456));
        }
        assert_eq!(Kind::from_u8(0), None);
    }
}
