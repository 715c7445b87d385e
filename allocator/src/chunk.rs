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
//! program may also be touching. The type's invariant — every `Chunk` points into memory
//! this allocator obtained from its kernel (or at a bin header inside an arena) — is
//! established by the unsafe constructor [`Chunk::at`]; neighbours derived through sizes
//! inherit it as long as the heap metadata is intact, which the corruption checks guard.

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

/// The address of a chunk header. See the module documentation for its invariant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(transparent)]
pub(crate) struct Chunk(usize);

impl Chunk {
    /// No chunk: ends singly linked lists.
    pub(crate) const NULL: Chunk = Chunk(0);

    /// The chunk whose header is at `addr`.
    ///
    /// # Safety
    /// `addr` must be the header of a chunk in memory this allocator owns (or a bin header),
    /// and stay so while the returned value is used.
    #[inline(always)]
    pub(crate) const unsafe fn at(addr: usize) -> Chunk {
        Chunk(addr)
    }

    /// The chunk holding the user pointer `mem` (glibc's `mem2chunk`).
    ///
    /// # Safety
    /// As for [`Chunk::at`]: `mem` must be a pointer this allocator returned.
    #[inline(always)]
    pub(crate) unsafe fn from_mem(mem: *mut u8) -> Chunk {
        Chunk((mem as usize).wrapping_sub(CHUNK_HDR_SZ))
    }

    #[inline(always)]
    pub(crate) const fn addr(self) -> usize {
        self.0
    }

    #[inline(always)]
    pub(crate) const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The user pointer (glibc's `chunk2mem`).
    #[inline(always)]
    pub(crate) const fn mem(self) -> *mut u8 {
        (self.0 + CHUNK_HDR_SZ) as *mut u8
    }

    #[inline(always)]
    fn read(self, offset: usize) -> usize {
        // SAFETY: by the type invariant the header words at these offsets are owned memory.
        unsafe { core::ptr::read((self.0 + offset) as *const usize) }
    }

    #[inline(always)]
    fn write(self, offset: usize, value: usize) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write((self.0 + offset) as *mut usize, value) }
    }

    #[inline(always)]
    pub(crate) fn prev_size(self) -> usize {
        self.read(0)
    }

    #[inline(always)]
    pub(crate) fn set_prev_size(self, value: usize) {
        self.write(0, value)
    }

    /// The size word with its flag bits (glibc's `chunksize_nomask`).
    #[inline(always)]
    pub(crate) fn head(self) -> usize {
        self.read(SIZE_SZ)
    }

    #[inline(always)]
    pub(crate) fn set_head(self, value: usize) {
        self.write(SIZE_SZ, value)
    }

    /// Size in bytes, without the flag bits.
    #[inline(always)]
    pub(crate) fn size(self) -> usize {
        self.head() & !SIZE_BITS
    }

    /// Set the size, keeping the `PREV_INUSE` bit (glibc's `set_head_size`).
    #[inline(always)]
    pub(crate) fn set_head_size(self, size: usize) {
        self.set_head((self.head() & PREV_INUSE) | size)
    }

    /// Write the boundary tag: the size into the next chunk's `prev_size` (glibc's `set_foot`).
    #[inline(always)]
    pub(crate) fn set_foot(self, size: usize) {
        self.plus(size).set_prev_size(size)
    }

    #[inline(always)]
    pub(crate) fn prev_inuse(self) -> bool {
        self.head() & PREV_INUSE != 0
    }

    #[inline(always)]
    pub(crate) fn is_mmapped(self) -> bool {
        self.head() & IS_MMAPPED != 0
    }

    #[inline(always)]
    pub(crate) fn non_main_arena(self) -> bool {
        self.head() & NON_MAIN_ARENA != 0
    }

    #[inline(always)]
    pub(crate) fn set_non_main_arena(self) {
        self.set_head(self.head() | NON_MAIN_ARENA)
    }

    /// The chunk `delta` bytes above this one (glibc's `chunk_at_offset`).
    #[inline(always)]
    pub(crate) const fn plus(self, delta: usize) -> Chunk {
        Chunk(self.0.wrapping_add(delta))
    }

    /// The chunk `delta` bytes below this one.
    #[inline(always)]
    pub(crate) const fn minus(self, delta: usize) -> Chunk {
        Chunk(self.0.wrapping_sub(delta))
    }

    /// The physically next chunk.
    #[inline(always)]
    pub(crate) fn next(self) -> Chunk {
        self.plus(self.size())
    }

    /// The physically previous chunk; meaningful only when `!prev_inuse()`.
    #[inline(always)]
    pub(crate) fn prev(self) -> Chunk {
        self.minus(self.prev_size())
    }

    /// Whether this chunk is in use, as recorded in the next chunk's `PREV_INUSE`.
    #[inline(always)]
    pub(crate) fn inuse(self) -> bool {
        self.next().prev_inuse()
    }

    #[inline(always)]
    pub(crate) fn inuse_bit_at_offset(self, offset: usize) -> bool {
        self.plus(offset).prev_inuse()
    }

    #[inline(always)]
    pub(crate) fn set_inuse_bit_at_offset(self, offset: usize) {
        let c = self.plus(offset);
        c.set_head(c.head() | PREV_INUSE)
    }

    #[inline(always)]
    pub(crate) fn clear_inuse_bit_at_offset(self, offset: usize) {
        let c = self.plus(offset);
        c.set_head(c.head() & !PREV_INUSE)
    }

    // Free-list links, stored in the user area of free chunks.

    #[inline(always)]
    pub(crate) fn fd(self) -> Chunk {
        Chunk(self.read(2 * SIZE_SZ))
    }

    #[inline(always)]
    pub(crate) fn set_fd(self, c: Chunk) {
        self.write(2 * SIZE_SZ, c.0)
    }

    #[inline(always)]
    pub(crate) fn bk(self) -> Chunk {
        Chunk(self.read(3 * SIZE_SZ))
    }

    #[inline(always)]
    pub(crate) fn set_bk(self, c: Chunk) {
        self.write(3 * SIZE_SZ, c.0)
    }

    #[inline(always)]
    pub(crate) fn fd_nextsize(self) -> Chunk {
        Chunk(self.read(4 * SIZE_SZ))
    }

    #[inline(always)]
    pub(crate) fn set_fd_nextsize(self, c: Chunk) {
        self.write(4 * SIZE_SZ, c.0)
    }

    #[inline(always)]
    pub(crate) fn bk_nextsize(self) -> Chunk {
        Chunk(self.read(5 * SIZE_SZ))
    }

    #[inline(always)]
    pub(crate) fn set_bk_nextsize(self, c: Chunk) {
        self.write(5 * SIZE_SZ, c.0)
    }

    /// The raw `fd` word, for singly linked lists whose links are mangled (safe-linking).
    #[inline(always)]
    pub(crate) fn fd_word(self) -> usize {
        self.read(2 * SIZE_SZ)
    }

    #[inline(always)]
    pub(crate) fn set_fd_word(self, value: usize) {
        self.write(2 * SIZE_SZ, value)
    }

    /// The raw `bk` word: where a cached or deferred chunk keeps the tcache key.
    #[inline(always)]
    pub(crate) fn set_bk_word(self, value: usize) {
        self.write(3 * SIZE_SZ, value)
    }

    /// Address of the `fd` word, the position safe-linking mixes into the link.
    #[inline(always)]
    pub(crate) const fn fd_addr(self) -> usize {
        self.0 + 2 * SIZE_SZ
    }

    /// Bytes of user data an in-use, non-mmapped chunk holds (glibc's `memsize`).
    #[inline(always)]
    pub(crate) fn usable(self) -> usize {
        if self.is_mmapped() {
            self.size() - CHUNK_HDR_SZ
        } else {
            self.size() - SIZE_SZ
        }
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
        // SAFETY: the buffer is ours and large enough for two chunk headers.
        let c = unsafe { Chunk::at(base) };
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
        // SAFETY: mem was derived from c.
        assert_eq!(unsafe { Chunk::from_mem(c.mem()) }, c);
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
