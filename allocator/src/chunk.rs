//! Chunks: the unit of memory the allocator hands out, with boundary tags.
//!
//! ```text
//!  chunk ->  +-------------------------------+
//!            | prev_size (if previous free)  |   borrowed by the previous chunk's user data
//!            +-------------------------------+   while that chunk is in use
//!            | size                  |N|M|P|   N: NON_MAIN_ARENA  M: IS_MMAPPED  P: PREV_INUSE
//!  mem   ->  +-------------------------------+
//!            | fd  (free chunks only)        |
//!            | bk                            |
//!            | fd_nextsize (large free only) |
//!            | bk_nextsize                   |
//!            | ...                           |
//!  next  ->  | prev_size = size (when free)  |   the boundary tag
//!            +-------------------------------+
//! ```
//!
//! A [`Chunk`] is the address of a chunk header. Its accessors read and write the header
//! words with raw pointer operations, so they never create Rust references into memory the
//! program may also be touching, and they are `unsafe fn`s: a chunk address proves nothing
//! about the memory behind it (see the header rule on [`Chunk`]).
//!
//! ARCHITECTURE.md, "The structures and what each keeps true", lists the chunk invariants.

use core::num::NonZeroUsize;

/// Bytes in a size field.
pub(crate) const SIZE_SZ: usize = core::mem::size_of::<usize>();
/// Alignment of every pointer returned to the program.
pub(crate) const MALLOC_ALIGNMENT: usize = 2 * SIZE_SZ;
pub(crate) const MALLOC_ALIGN_MASK: usize = MALLOC_ALIGNMENT - 1;
/// The two header words in front of the user data.
pub(crate) const CHUNK_HDR_SZ: usize = 2 * SIZE_SZ;
/// The smallest chunk: header plus the two free-list links.
pub(crate) const MINSIZE: usize = 32;

pub(crate) const PREV_INUSE: usize = 0x1;
pub(crate) const IS_MMAPPED: usize = 0x2;
pub(crate) const NON_MAIN_ARENA: usize = 0x4;
pub(crate) const SIZE_BITS: usize = PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA;

/// The largest request that can succeed (glibc refuses anything above `PTRDIFF_MAX`).
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize;

/// Chunk size for a request of `req` bytes: the request plus the size word, rounded up to
/// the alignment, at least [`MINSIZE`]. The in-use chunk borrows the next chunk's
/// `prev_size` word, which is why only one word of overhead is added.
#[inline(always)]
pub(crate) const fn request2size(req: usize) -> usize {
    if req + SIZE_SZ + MALLOC_ALIGN_MASK < MINSIZE {
        MINSIZE
    } else {
        (req + SIZE_SZ + MALLOC_ALIGN_MASK) & !MALLOC_ALIGN_MASK
    }
}

/// [`request2size`], or `None` for requests above `PTRDIFF_MAX` (which fail with `ENOMEM`).
#[inline(always)]
pub(crate) const fn checked_request2size(req: usize) -> Option<usize> {
    if req > MAX_REQUEST {
        None
    } else {
        Some(request2size(req))
    }
}

#[inline(always)]
pub(crate) const fn aligned_ok(addr: usize) -> bool {
    addr & MALLOC_ALIGN_MASK == 0
}

#[inline(always)]
pub(crate) const fn align_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}

#[inline(always)]
pub(crate) const fn align_down(value: usize, align: usize) -> usize {
    value & !(align - 1)
}

/// The address of a chunk header: never zero (so `Option<Chunk>` is one word, `None` where
/// a list ends or there is no chunk), and otherwise as free of promises as a raw pointer.
///
/// # Safety
///
/// Computing a chunk's address is safe; touching its memory is not. Every method that reads
/// or writes header words or links is an `unsafe fn` whose caller promises the *header
/// rule*: `self` is the header of a chunk (or a bin's fake chunk inside an arena) in memory
/// this allocator holds mapped read-write, and no other thread changes those words meanwhile
/// — the chunk's arena is held, or the chunk is this thread's alone (in use by the caller,
/// in its thread cache, or in a mapping of its own). Methods that step to a neighbour
/// (`next`, `prev`, `plus`, `minus`) promise less: only that the result is not zero, which
/// holds for any address inside a heap or mapping of ours.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(transparent)]
pub(crate) struct Chunk(NonZeroUsize);

// `None` is the zero word: bins, links and the arena layout rely on it.
const _: () = assert!(core::mem::size_of::<Option<Chunk>>() == SIZE_SZ);

impl Chunk {
    /// The chunk whose header is at `addr`, or `None` for address 0 (the end of a list).
    #[inline(always)]
    pub(crate) const fn new(addr: usize) -> Option<Chunk> {
        match NonZeroUsize::new(addr) {
            Some(a) => Some(Chunk(a)),
            None => None,
        }
    }

    /// The chunk whose header is at `addr`.
    ///
    /// # Safety
    /// `addr` is not zero.
    #[inline(always)]
    pub(crate) const unsafe fn at(addr: usize) -> Chunk {
        // SAFETY: the caller promises a non-zero address.
        Chunk(unsafe { NonZeroUsize::new_unchecked(addr) })
    }

    /// The chunk holding the user pointer `mem` (glibc's `mem2chunk`).
    ///
    /// # Safety
    /// `mem` is a pointer this allocator returned (so it lies above its 16-byte header).
    #[inline(always)]
    pub(crate) unsafe fn from_mem(mem: *mut u8) -> Chunk {
        // SAFETY: a returned pointer has its header below it, at a non-zero address.
        unsafe { Chunk::at((mem as usize).wrapping_sub(CHUNK_HDR_SZ)) }
    }

    #[inline(always)]
    pub(crate) const fn addr(self) -> usize {
        self.0.get()
    }

    /// The user pointer (glibc's `chunk2mem`).
    #[inline(always)]
    pub(crate) const fn mem(self) -> *mut u8 {
        (self.0.get() + CHUNK_HDR_SZ) as *mut u8
    }

    /// Address of the `fd` word, the position safe-linking mixes into the link.
    #[inline(always)]
    pub(crate) const fn fd_addr(self) -> usize {
        self.0.get() + 2 * SIZE_SZ
    }

    /// The chunk `delta` bytes above this one (glibc's `chunk_at_offset`).
    ///
    /// # Safety
    /// The result is not zero (it lies inside the same heap or mapping).
    #[inline(always)]
    pub(crate) const unsafe fn plus(self, delta: usize) -> Chunk {
        // SAFETY: the caller promises a non-zero result.
        unsafe { Chunk::at(self.0.get().wrapping_add(delta)) }
    }

    /// The chunk `delta` bytes below this one.
    ///
    /// # Safety
    /// As for [`Chunk::plus`].
    #[inline(always)]
    pub(crate) const unsafe fn minus(self, delta: usize) -> Chunk {
        // SAFETY: the caller promises a non-zero result.
        unsafe { Chunk::at(self.0.get().wrapping_sub(delta)) }
    }

    /// Words are read and written unaligned: the checks that reject a misaligned pointer a
    /// program passed to `free` or `realloc` read its header first, as glibc's do, and on
    /// x86-64 and AArch64 an unaligned access is the same instruction.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]) for the word at `offset`.
    #[inline(always)]
    unsafe fn read(self, offset: usize) -> usize {
        // SAFETY: the caller promises the word is ours to read.
        unsafe { core::ptr::read_unaligned((self.0.get() + offset) as *const usize) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]) for the word at `offset`.
    #[inline(always)]
    unsafe fn write(self, offset: usize, value: usize) {
        // SAFETY: the caller promises the word is ours to write.
        unsafe { core::ptr::write_unaligned((self.0.get() + offset) as *mut usize, value) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn prev_size(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.read(0) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_prev_size(self, value: usize) {
        // SAFETY: forwarded.
        unsafe { self.write(0, value) }
    }

    /// The size word with its flag bits (glibc's `chunksize_nomask`).
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn head(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.read(SIZE_SZ) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_head(self, value: usize) {
        // SAFETY: forwarded.
        unsafe { self.write(SIZE_SZ, value) }
    }

    /// Size in bytes, without the flag bits.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn size(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.head() & !SIZE_BITS }
    }

    /// Set the size, keeping the `PREV_INUSE` bit (glibc's `set_head_size`).
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_head_size(self, size: usize) {
        // SAFETY: forwarded.
        unsafe { self.set_head((self.head() & PREV_INUSE) | size) }
    }

    /// Write the boundary tag: the size into the next chunk's `prev_size` (glibc's `set_foot`).
    ///
    /// # Safety
    /// The header rule for the chunk `size` bytes above this one.
    #[inline(always)]
    pub(crate) unsafe fn set_foot(self, size: usize) {
        // SAFETY: forwarded.
        unsafe { self.plus(size).set_prev_size(size) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn prev_inuse(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.head() & PREV_INUSE != 0 }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn is_mmapped(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.head() & IS_MMAPPED != 0 }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn non_main_arena(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.head() & NON_MAIN_ARENA != 0 }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_non_main_arena(self) {
        // SAFETY: forwarded.
        unsafe { self.set_head(self.head() | NON_MAIN_ARENA) }
    }

    /// The physically next chunk.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]) for this chunk, whose size leads inside the heap.
    #[inline(always)]
    pub(crate) unsafe fn next(self) -> Chunk {
        // SAFETY: a chunk's size never reaches past its heap's end, so the sum is not zero.
        unsafe { self.plus(self.size()) }
    }

    /// The physically previous chunk.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]), and `!self.prev_inuse()`: only then does `prev_size`
    /// hold the previous chunk's size.
    #[inline(always)]
    pub(crate) unsafe fn prev(self) -> Chunk {
        // SAFETY: a free previous chunk's size leads to its header, inside the heap.
        unsafe { self.minus(self.prev_size()) }
    }

    /// Whether this chunk is in use, as recorded in the next chunk's `PREV_INUSE`.
    ///
    /// # Safety
    /// The header rule for this chunk and the next.
    #[inline(always)]
    pub(crate) unsafe fn inuse(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.next().prev_inuse() }
    }

    /// # Safety
    /// The header rule for the chunk `offset` bytes above this one.
    #[inline(always)]
    pub(crate) unsafe fn inuse_bit_at_offset(self, offset: usize) -> bool {
        // SAFETY: forwarded.
        unsafe { self.plus(offset).prev_inuse() }
    }

    /// # Safety
    /// The header rule for the chunk `offset` bytes above this one.
    #[inline(always)]
    pub(crate) unsafe fn set_inuse_bit_at_offset(self, offset: usize) {
        // SAFETY: forwarded.
        unsafe {
            let c = self.plus(offset);
            c.set_head(c.head() | PREV_INUSE)
        }
    }

    /// # Safety
    /// The header rule for the chunk `offset` bytes above this one.
    #[inline(always)]
    pub(crate) unsafe fn clear_inuse_bit_at_offset(self, offset: usize) {
        // SAFETY: forwarded.
        unsafe {
            let c = self.plus(offset);
            c.set_head(c.head() & !PREV_INUSE)
        }
    }

    // Free-list links, stored in the user area of free chunks.

    /// The next chunk of a doubly linked bin (never null there: bins are circular). A zero
    /// link — a use-after-free that cleared it — aborts in glibc's words rather than become
    /// a chunk at address 0.
    ///
    /// # Safety
    /// The header rule, and the chunk is in a bin (or is a bin's fake chunk).
    #[inline(always)]
    pub(crate) unsafe fn fd(self) -> Chunk {
        // SAFETY: forwarded.
        link_or_abort(unsafe { self.read(2 * SIZE_SZ) })
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_fd(self, c: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.write(2 * SIZE_SZ, c.addr()) }
    }

    /// The previous chunk of a doubly linked bin.
    ///
    /// # Safety
    /// As for [`Chunk::fd`].
    #[inline(always)]
    pub(crate) unsafe fn bk(self) -> Chunk {
        // SAFETY: forwarded.
        link_or_abort(unsafe { self.read(3 * SIZE_SZ) })
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_bk(self, c: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.write(3 * SIZE_SZ, c.addr()) }
    }

    /// The next larger size in a largebin's skip list; `None` for a chunk that is not on it
    /// (a follower of an equal-sized chunk).
    ///
    /// # Safety
    /// The header rule, and the chunk is a free large chunk.
    #[inline(always)]
    pub(crate) unsafe fn fd_nextsize(self) -> Option<Chunk> {
        // SAFETY: forwarded.
        Chunk::new(unsafe { self.read(4 * SIZE_SZ) })
    }

    /// # Safety
    /// The header rule, and the chunk is at least `MIN_LARGE_SIZE` bytes (the skip-list
    /// words lie in its user area).
    #[inline(always)]
    pub(crate) unsafe fn set_fd_nextsize(self, c: Option<Chunk>) {
        // SAFETY: forwarded.
        unsafe { self.write(4 * SIZE_SZ, c.map_or(0, Chunk::addr)) }
    }

    /// The previous size in a largebin's skip list (see [`Chunk::fd_nextsize`]).
    ///
    /// # Safety
    /// As for [`Chunk::fd_nextsize`].
    #[inline(always)]
    pub(crate) unsafe fn bk_nextsize(self) -> Option<Chunk> {
        // SAFETY: forwarded.
        Chunk::new(unsafe { self.read(5 * SIZE_SZ) })
    }

    /// # Safety
    /// As for [`Chunk::set_fd_nextsize`].
    #[inline(always)]
    pub(crate) unsafe fn set_bk_nextsize(self, c: Option<Chunk>) {
        // SAFETY: forwarded.
        unsafe { self.write(5 * SIZE_SZ, c.map_or(0, Chunk::addr)) }
    }

    /// The raw `fd` word, for singly linked lists whose links are mangled (safe-linking).
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn fd_word(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.read(2 * SIZE_SZ) }
    }

    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_fd_word(self, value: usize) {
        // SAFETY: forwarded.
        unsafe { self.write(2 * SIZE_SZ, value) }
    }

    /// The next chunk of a safe-linked singly linked list (fastbin, deferred stack), or
    /// `None` at its end. The address is not checked: callers test its alignment.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn fd_revealed(self) -> Option<Chunk> {
        // SAFETY: forwarded.
        Chunk::new(reveal_ptr(self.fd_addr(), unsafe { self.fd_word() }))
    }

    /// Link this chunk in front of `next` in a safe-linked singly linked list.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_fd_protected(self, next: Option<Chunk>) {
        // SAFETY: forwarded.
        unsafe { self.set_fd_word(protect_ptr(self.fd_addr(), next.map_or(0, Chunk::addr))) }
    }

    /// Set the raw `bk` word: where a cached or deferred chunk keeps the tcache key.
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn set_bk_word(self, value: usize) {
        // SAFETY: forwarded.
        unsafe { self.write(3 * SIZE_SZ, value) }
    }

    /// Bytes of user data an in-use chunk holds (glibc's `memsize`).
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]).
    #[inline(always)]
    pub(crate) unsafe fn usable(self) -> usize {
        // SAFETY: forwarded.
        unsafe {
            if self.is_mmapped() {
                self.size() - CHUNK_HDR_SZ
            } else {
                self.size() - SIZE_SZ
            }
        }
    }
}

/// A doubly linked bin's link as a chunk; a zero word (the list was overwritten) aborts.
#[inline(always)]
fn link_or_abort(word: usize) -> Chunk {
    match Chunk::new(word) {
        Some(c) => c,
        None => crate::printerr::malloc_printerr("corrupted double-linked list"),
    }
}

/// Safe-linking: mix the address of the link into the pointer stored there, so a
/// corrupted singly linked list points somewhere unaligned (and is caught) rather than at
/// an attacker's choice. Same transform both ways.
#[inline(always)]
pub(crate) const fn protect_ptr(pos: usize, ptr: usize) -> usize {
    (pos >> 12) ^ ptr
}

#[inline(always)]
pub(crate) const fn reveal_ptr(pos: usize, stored: usize) -> usize {
    (pos >> 12) ^ stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request2size_matches_glibc() {
        // Requests up to 24 bytes fit the 32-byte minimum chunk (8 bytes of header, 24 of
        // data, the last 8 borrowed from the next chunk's prev_size).
        assert_eq!(request2size(0), 32);
        assert_eq!(request2size(24), 32);
        assert_eq!(request2size(25), 48);
        assert_eq!(request2size(40), 48);
        assert_eq!(request2size(41), 64);
        assert_eq!(request2size(1032), 1040);
        assert_eq!(request2size(128 * 1024), 128 * 1024 + 16);
        for n in 0..5000 {
            let s = request2size(n);
            assert!(s >= MINSIZE && s.is_multiple_of(16) && s - SIZE_SZ >= n);
            assert!(s == MINSIZE || s - SIZE_SZ - n < 16);
        }
    }

    #[test]
    fn checked_request2size_refuses_above_ptrdiff_max() {
        assert_eq!(checked_request2size(MAX_REQUEST + 1), None);
        assert_eq!(checked_request2size(usize::MAX), None);
        assert!(checked_request2size(MAX_REQUEST).is_some());
    }

    #[test]
    fn header_words_and_flags() {
        let mut buf = [0usize; 16];
        let base = buf.as_mut_ptr() as usize;
        // SAFETY: the buffer is ours, not zero, and large enough for two chunk headers; all
        // accesses below stay inside it.
        unsafe {
            let c = Chunk::at(base);
            c.set_head(48 | PREV_INUSE | NON_MAIN_ARENA);
            assert_eq!(c.size(), 48);
            assert!(c.prev_inuse() && c.non_main_arena() && !c.is_mmapped());
            assert_eq!(c.next().addr(), base + 48);
            c.next().set_head(32 | PREV_INUSE);
            assert!(c.inuse());
            c.clear_inuse_bit_at_offset(48);
            assert!(!c.inuse());
            c.set_foot(48);
            assert_eq!(c.next().prev_size(), 48);
            assert_eq!(c.next().prev(), c);
            c.set_head_size(64);
            assert_eq!(c.head(), 64 | PREV_INUSE);
            assert_eq!(c.mem() as usize, base + 16);
            assert_eq!(Chunk::from_mem(c.mem()), c);
        }
    }

    #[test]
    fn safe_linking_round_trips() {
        let pos = 0x5555_5555_9010;
        let ptr = 0x5555_5555_a2c0;
        let stored = protect_ptr(pos, ptr);
        assert_ne!(stored, ptr);
        assert_eq!(reveal_ptr(pos, stored), ptr);
        assert_eq!(reveal_ptr(pos, protect_ptr(pos, 0)), 0);
    }
}
