//! Open files: the descriptor table (`files_struct`), `struct file`, and the system calls on
//! descriptors — `open`, `close`, `pread`, `pwrite`, `ftruncate`, `fsync`, `fdatasync`,
//! `posix_fadvise` (Linux's `fs/open.c`, `fs/read_write.c`, `fs/sync.c`, `mm/fadvise.c`).
//!
//! The simulated kernel's files are the host's: `open` opens the host file and finds or
//! makes its inode (`shmem::INODE_REG` for regular files), one per host `(st_dev, st_ino)`
//! on the machine's `SuperBlock`, so every descriptor and mapping of a file shares one page
//! cache. The host file is the disk: pages are read from it on a cache miss (`filemap`) and
//! written back to it (`page_writeback`); `read` and `write` go through the cache as
//! Linux's buffered I/O does, so what a mapping sees and what `pread` returns agree before
//! anything is written back. Simulated descriptors are numbered from 3 in their own table;
//! they are not host descriptors.

use core::ffi::CStr;

use crate::machine::State;
use crate::page::{PAGE_SHIFT, PAGE_SIZE};
use crate::shmem::Inode;
use crate::shmem::{InodePtr, INODE_DIR, INODE_REG, INODE_SPECIAL, NAME_MAX_BYTES};
use crate::slab::CACHE_NAMES;
use crate::Errno;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// Descriptors a process may have open (its `RLIMIT_NOFILE`, fixed).
pub const NR_OPEN: usize = 256;
/// The first descriptor handed out: 0, 1 and 2 stay the host's standard streams.
pub const FIRST_FD: usize = 3;

pub const FMODE_READ: u32 = 1;
pub const FMODE_WRITE: u32 = 2;

/// `struct file`: an open of an inode, with its access mode and `O_*` flags.
#[derive(Clone, Copy, Debug)]
pub struct File {
    pub inode: InodePtr,
    pub f_mode: u32,
    pub f_flags: i32,
}

/// The descriptor table.
pub struct FdTable {
    fds: [Option<File>; NR_OPEN],
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable { fds: [None; NR_OPEN] }
    }
}

impl FdTable {
    /// The file behind `fd` (`fdget`): `EBADF` if there is none.
    pub fn get(&self, fd: i32) -> Result<File, Errno> {
        usize::try_from(fd).ok().and_then(|i| self.fds.get(i).copied().flatten()).ok_or(Errno::EBADF)
    }

    fn install(&mut self, file: File) -> Result<i32, Errno> {
        let i = (FIRST_FD..NR_OPEN).find(|&i| self.fds[i].is_none()).ok_or(Errno(libc::EMFILE))?;
        self.fds[i] = Some(file);
        Ok(i as i32)
    }

    fn take(&mut self, fd: i32) -> Result<File, Errno> {
        let f = self.get(fd)?;
        self.fds[fd as usize] = None;
        Ok(f)
    }

    /// A copy for a forked child: the same files, each inode referenced once more.
    pub fn duplicate(&self) -> FdTable {
        for f in self.fds.iter().flatten() {
            f.inode.refcount.set(f.inode.refcount.get() + 1);
            f.inode.nr_open.set(f.inode.nr_open.get() + 1);
        }
        FdTable { fds: self.fds }
    }

    /// Every open file, for teardown.
    pub fn take_all(&mut self) -> impl Iterator<Item = File> + '_ {
        self.fds.iter_mut().filter_map(Option::take)
    }
}

/// Host `fstat`.
fn host_fstat(fd: i32) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct fstat fills in.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `sb` is a live, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut sb) } != 0 {
        return Err(Errno(ptalloc::errno()));
    }
    Ok(sb)
}

/// The name the host kernel resolves `fd` to (its `/proc/self/fd` link), NUL-terminated
/// into `buf`; `ENAMETOOLONG` if it does not fit a `names_cache` object.
fn host_fd_path(fd: i32, given: &CStr, buf: &mut [u8; NAME_MAX_BYTES]) -> Result<usize, Errno> {
    let mut link = crate::util::StackWriter::<32>::new();
    let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{fd}\0"));
    // SAFETY: `link` is NUL-terminated and `buf` is writable for its length.
    let n = unsafe { libc::readlink(link.as_bytes().as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = if n > 0 {
        n as usize
    } else {
        // No /proc on the host: the name as given.
        let b = given.to_bytes();
        let l = b.len().min(buf.len());
        buf[..l].copy_from_slice(&b[..l]);
        b.len()
    };
    if len >= buf.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    buf[len] = 0;
    Ok(len)
}

/// One host process's descriptors for one host inode of a machine. Host descriptors belong
/// to a host process, while the inode is shared by every process of the machine: each
/// process keeps its own (inherited ones included), and opens one by the inode's name when
/// it has none for what it must do (a read-back, a write-back).
struct HostFds {
    inode: AtomicUsize,
    dev: AtomicU64,
    ino: AtomicU64,
    rfd: AtomicI32,
    wfd: AtomicI32,
}

const NR_HOST_FDS: usize = 1024;

/// This host process's table (process-private memory: a forked child has a copy, with the
/// descriptors it inherited).
static HOST_FDS: [HostFds; NR_HOST_FDS] = [const {
    HostFds {
        inode: AtomicUsize::new(0),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        rfd: AtomicI32::new(-1),
        wfd: AtomicI32::new(-1),
    }
}; NR_HOST_FDS];

fn close_fd(fd: i32) {
    if fd >= 0 {
        // SAFETY: a descriptor of this process's table, which it owns.
        unsafe { libc::close(fd) };
    }
}

/// This process's entry for `inode`, claimed if `create` (an entry of an inode that went
/// away, found by a different file at the same address, is emptied first).
fn host_entry(inode: &Inode, create: bool) -> Option<&'static HostFds> {
    let addr = inode as *const Inode as usize;
    let (dev, ino) = (inode.dev.get(), inode.ino.get());
    for e in &HOST_FDS {
        let a = e.inode.load(Ordering::Acquire);
        if a == addr {
            if e.dev.load(Ordering::Relaxed) == dev && e.ino.load(Ordering::Relaxed) == ino {
                return Some(e);
            }
            // A stale entry of a freed inode whose slab object this one reuses.
            close_fd(e.rfd.swap(-1, Ordering::Relaxed));
            close_fd(e.wfd.swap(-1, Ordering::Relaxed));
            e.dev.store(dev, Ordering::Relaxed);
            e.ino.store(ino, Ordering::Relaxed);
            return Some(e);
        }
    }
    if !create {
        return None;
    }
    for e in HOST_FDS.iter().filter(|e| e.inode.load(Ordering::Relaxed) == 0) {
        if e.inode.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            e.dev.store(dev, Ordering::Relaxed);
            e.ino.store(ino, Ordering::Relaxed);
            e.rfd.store(-1, Ordering::Relaxed);
            e.wfd.store(-1, Ordering::Relaxed);
            return Some(e);
        }
    }
    None
}

/// Open `inode`'s file by its name with `flags` (a descriptor this process lacks).
fn reopen(inode: &Inode, flags: i32) -> i32 {
    let name = inode.name.get();
    if name == 0 {
        return -1;
    }
    // SAFETY: the inode's names_cache object: NUL-terminated within NAME_MAX_BYTES.
    unsafe { libc::open(name as *const libc::c_char, flags | libc::O_CLOEXEC) }
}

/// A descriptor of this process to read `inode`'s file, or -1.
pub(crate) fn host_read_fd(inode: &Inode) -> i32 {
    host_fd(inode, false)
}

/// A descriptor of this process to write `inode`'s file, or -1.
pub(crate) fn host_write_fd(inode: &Inode) -> i32 {
    host_fd(inode, true)
}

/// This process's descriptor for reading or writing `inode`'s file, opened by its name if
/// it has none yet; -1 if that fails.
fn host_fd(inode: &Inode, write: bool) -> i32 {
    let Some(e) = host_entry(inode, true) else { return -1 };
    let (slot, flags) = if write { (&e.wfd, libc::O_WRONLY) } else { (&e.rfd, libc::O_RDONLY) };
    let fd = slot.load(Ordering::Relaxed);
    if fd >= 0 {
        return fd;
    }
    let fd = reopen(inode, flags);
    slot.store(fd, Ordering::Relaxed);
    fd
}

/// Close this process's descriptors for `inode` (it goes).
pub(crate) fn release_host_fds(inode: &Inode) {
    if let Some(e) = host_entry(inode, false) {
        let (r, w) = (e.rfd.swap(-1, Ordering::Relaxed), e.wfd.swap(-1, Ordering::Relaxed));
        close_fd(r);
        if w != r {
            close_fd(w);
        }
        e.inode.store(0, Ordering::Release);
    }
}

/// A new inode for host file `fd` with stat `sb`, put on the superblock, holding one
/// reference (the opener's). The opener's descriptor is given to this process's table by
/// `adopt_host_fd`.
fn new_host_inode(st: &mut State, fd: i32, sb: &libc::stat, given: &CStr) -> Result<InodePtr, Errno> {
    let mut name = [0u8; NAME_MAX_BYTES];
    host_fd_path(fd, given, &mut name)?;
    let kind = match sb.st_mode & libc::S_IFMT {
        libc::S_IFREG => INODE_REG,
        libc::S_IFDIR => INODE_DIR,
        _ => INODE_SPECIAL,
    };
    let name_obj = st.slab.alloc(&mut st.phys, CACHE_NAMES)?;
    // SAFETY: a fresh names_cache object of NAME_MAX_BYTES bytes in the direct map.
    unsafe { core::ptr::copy_nonoverlapping(name.as_ptr(), name_obj as *mut u8, NAME_MAX_BYTES) };
    let inode = match crate::shmem::new_inode(&mut st.slab, &mut st.phys, kind, sb.st_ino, 0) {
        Ok(i) => i,
        Err(e) => {
            // SAFETY: the object just allocated, which nothing else knows of.
            unsafe { st.slab.free(&mut st.phys, CACHE_NAMES, name_obj) };
            return Err(e);
        }
    };
    // new_inode's reference becomes the file's.
    inode.dev.set(sb.st_dev);
    inode.mode.set(sb.st_mode);
    inode.name.set(name_obj);
    inode.set_size_bytes(sb.st_size.max(0) as u64);
    st.sb.add(inode);
    Ok(inode)
}

/// Give host descriptor `fd`, opened with `accmode`, to this process's table for `inode`
/// if it lacks one for that access, else close it.
fn adopt_host_fd(inode: InodePtr, fd: i32, accmode: i32) {
    let mut used = false;
    if let Some(e) = host_entry(&inode, true) {
        if accmode != libc::O_WRONLY && e.rfd.load(Ordering::Relaxed) < 0 {
            e.rfd.store(fd, Ordering::Relaxed);
            used = true;
        }
        if accmode != libc::O_RDONLY && e.wfd.load(Ordering::Relaxed) < 0 {
            e.wfd.store(fd, Ordering::Relaxed);
            used = true;
        }
    }
    if !used {
        close_fd(fd);
    }
}

/// `open(2)` (`do_sys_open`): the host opens the file, the machine installs a descriptor.
pub(crate) fn sys_open(st: &mut State, path: &CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    let accmode = flags & libc::O_ACCMODE;
    if accmode == libc::O_ACCMODE {
        return Err(Errno::EINVAL);
    }
    // Non-blocking, so that a FIFO without a peer does not hold the machine lock (a writer
    // with no reader is ENXIO here, where Linux would wait); cleared again below.
    // SAFETY: `path` is NUL-terminated; the host checks everything else.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NONBLOCK, mode) };
    if fd < 0 {
        return Err(Errno(ptalloc::errno()));
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: changing the status flags of the descriptor just opened.
        unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFL,
                flags & !(libc::O_NONBLOCK | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC),
            )
        };
    }
    let close = |e: Errno| {
        // SAFETY: the descriptor just opened, which nothing else holds.
        unsafe { libc::close(fd) };
        e
    };
    let sb = host_fstat(fd).map_err(close)?;
    let (inode, fresh) = match st.sb.find(sb.st_dev, sb.st_ino) {
        Some(i) => {
            i.refcount.set(i.refcount.get() + 1);
            (i, false)
        }
        None => (new_host_inode(st, fd, &sb, path).map_err(close)?, true),
    };
    inode.nr_open.set(inode.nr_open.get() + 1);
    let f_mode = match accmode {
        libc::O_RDONLY => FMODE_READ,
        libc::O_WRONLY => FMODE_WRITE,
        _ => FMODE_READ | FMODE_WRITE,
    };
    let file = File { inode, f_mode, f_flags: flags };
    match st.files.install(file) {
        Ok(n) => {
            adopt_host_fd(inode, fd, accmode);
            if !fresh && flags & libc::O_TRUNC != 0 && inode.is_reg() {
                // The host truncated the file; the cache follows.
                crate::truncate::truncate_setsize(st, inode, 0);
            }
            Ok(n)
        }
        Err(e) => {
            adopt_host_fd(inode, fd, accmode);
            // SAFETY: the reference taken above; no KPtr to the inode is kept here.
            unsafe { fput(st, inode) };
            Err(e)
        }
    }
}

/// Drop an open file's reference to its inode.
///
/// # Safety
/// The free rule (see `kptr`) for the inode if this was its last reference.
unsafe fn fput(st: &mut State, inode: InodePtr) {
    inode.nr_open.set(inode.nr_open.get() - 1);
    let (_, mut env) = st.vma_env();
    // SAFETY: the caller's promise.
    unsafe { crate::vma::inode_put(&mut env, inode) };
}

/// Open `path` for exec (`open_exec`): a regular file the caller may execute. Returns its
/// inode with a reference that `put_exec_inode` drops.
pub(crate) fn open_exec(st: &mut State, path: &CStr) -> Result<InodePtr, Errno> {
    // Only regular files are executed: look before opening, so a FIFO is not waited on.
    // SAFETY: an all-zero stat is a valid value of the plain C struct stat fills in.
    let mut pre: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `pre` a live buffer.
    if unsafe { libc::stat(path.as_ptr(), &mut pre) } != 0 {
        return Err(Errno(ptalloc::errno()));
    }
    if pre.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EACCES);
    }
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(Errno(ptalloc::errno()));
    }
    let close = |e: Errno| {
        // SAFETY: the descriptor just opened, which nothing else holds.
        unsafe { libc::close(fd) };
        e
    };
    let sb = host_fstat(fd).map_err(close)?;
    if sb.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(close(Errno::EACCES));
    }
    // SAFETY: `path` is NUL-terminated.
    if unsafe { libc::access(path.as_ptr(), libc::X_OK) } != 0 {
        return Err(close(Errno(ptalloc::errno())));
    }
    let inode = match st.sb.find(sb.st_dev, sb.st_ino) {
        Some(i) => {
            i.refcount.set(i.refcount.get() + 1);
            i
        }
        None => new_host_inode(st, fd, &sb, path).map_err(close)?,
    };
    inode.nr_open.set(inode.nr_open.get() + 1);
    adopt_host_fd(inode, fd, libc::O_RDONLY);
    Ok(inode)
}

/// Drop the reference `open_exec` took.
///
/// # Safety
/// The free rule (see `kptr`) for the inode if this was its last reference.
pub(crate) unsafe fn put_exec_inode(st: &mut State, inode: InodePtr) {
    // SAFETY: the caller's promise.
    unsafe { fput(st, inode) };
}

/// `close(2)`.
pub(crate) fn sys_close(st: &mut State, fd: i32) -> Result<(), Errno> {
    let f = st.files.take(fd)?;
    // SAFETY: system calls keep no KPtr past their return, and this one uses none after.
    unsafe { fput(st, f.inode) };
    Ok(())
}

/// Close the descriptors opened with `O_CLOEXEC` (at exec).
pub(crate) fn close_on_exec(st: &mut State) {
    for fd in FIRST_FD..NR_OPEN {
        if st.files.get(fd as i32).is_ok_and(|f| f.f_flags & libc::O_CLOEXEC != 0) {
            let _ = sys_close(st, fd as i32);
        }
    }
}

/// Close every descriptor (process exit, machine shutdown).
pub(crate) fn close_all(st: &mut State) {
    let mut files = [None; NR_OPEN];
    for (slot, f) in files.iter_mut().zip(st.files.take_all()) {
        *slot = Some(f);
    }
    for f in files.into_iter().flatten() {
        // SAFETY: as in `sys_close`.
        unsafe { fput(st, f.inode) };
    }
}

/// The file behind `fd` if it is a regular file open with `mode`; the errors are
/// `read`/`write`'s: `EBADF` for a bad descriptor or the wrong mode, `EISDIR` for a
/// directory, `EINVAL` for what the simulation cannot read (devices, pipes).
fn rw_file(st: &State, fd: i32, mode: u32) -> Result<File, Errno> {
    let f = st.files.get(fd)?;
    if f.f_mode & mode == 0 {
        return Err(Errno::EBADF);
    }
    match f.inode.kind.get() {
        INODE_REG => Ok(f),
        INODE_DIR => Err(Errno(libc::EISDIR)),
        _ if f.inode.mode.get() & libc::S_IFMT == libc::S_IFIFO => Err(Errno(libc::ESPIPE)),
        _ => Err(Errno::EINVAL),
    }
}

/// Make the user pages under a buffer present (`fault_in_pages`), so that copying to or
/// from it under the machine lock cannot fault. Buffers outside the user range are host
/// memory and need nothing.
fn fault_in_buffer(st: &mut State, addr: usize, len: usize, write: bool) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let (base, end) = (st.host.base(), st.host.end());
    let last = addr + len - 1;
    if last < base || addr >= end {
        return Ok(());
    }
    // Twice: reclaim during the first pass may take back a page faulted in before; the
    // second, which may not reclaim, brings such pages back and maps every page in the
    // host view again.
    let mut r = Ok(());
    for pass in 0..2 {
        st.phys.reclaim_disabled = pass == 1;
        let mut a = addr.max(base) & crate::page::PAGE_MASK;
        while a <= last.min(end - 1) {
            if crate::fault::fault_in(st, a, write).is_err() {
                r = Err(Errno::EFAULT);
                break;
            }
            a += PAGE_SIZE;
        }
        if r.is_err() {
            break;
        }
    }
    st.phys.reclaim_disabled = false;
    r
}

/// `pread(2)` through the page cache (`filemap_read`): bytes up to the end of the file.
pub(crate) fn sys_pread(st: &mut State, fd: i32, buf: &mut [u8], pos: i64) -> Result<usize, Errno> {
    if pos < 0 {
        return Err(Errno::EINVAL);
    }
    let f = rw_file(st, fd, FMODE_READ)?;
    let mut done = 0;
    while done < buf.len() {
        let end = (done + IO_CHUNK).min(buf.len());
        let chunk = &mut buf[done..end];
        let n = chunk.len();
        // Reclaim first, for the chunk's buffer pages and its cache pages: once the buffer
        // is faulted in, nothing may take its pages until it is copied.
        crate::vmscan::reclaim_for(st, 2 * (IO_CHUNK >> PAGE_SHIFT) + 4);
        if let Err(e) = fault_in_buffer(st, chunk.as_ptr() as usize, n, true) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        let got = match kernel_read(st, f.inode, chunk, pos as u64 + done as u64) {
            Ok(got) => got,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += got;
        if got < n {
            break;
        }
    }
    Ok(done)
}

/// How much of a `pread` or `pwrite` buffer is faulted in and copied at a time.
const IO_CHUNK: usize = 64 * PAGE_SIZE;

/// Read from `inode` at `pos` through its page cache into `buf` (kernel memory, or a user
/// buffer already faulted in): the bytes up to the end of the file (`kernel_read`).
pub(crate) fn kernel_read(st: &mut State, inode: InodePtr, buf: &mut [u8], pos: u64) -> Result<usize, Errno> {
    let size = inode.size_bytes.get();
    if pos >= size {
        return Ok(0);
    }
    let len = buf.len().min((size - pos) as usize);
    let mut done = 0;
    while done < len {
        let at = pos + done as u64;
        let index = (at >> PAGE_SHIFT) as usize;
        let off = (at as usize) & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - off).min(len - done);
        let pfn = match crate::filemap::filemap_get_page(st, inode, index, 1) {
            Ok((pfn, _)) => pfn,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        st.phys.mark_page_accessed(pfn);
        // SAFETY: `n` bytes at `off` lie inside frame `pfn`, a page-cache page (never user
        // memory mapped at `buf`: `buf` is a Rust slice this call borrows exclusively, and
        // its user pages, if any, were made present above).
        unsafe {
            core::ptr::copy_nonoverlapping(st.phys.frame(pfn).add(off), buf[done..].as_mut_ptr(), n);
        }
        done += n;
    }
    Ok(done)
}

/// `pwrite(2)` into the page cache (`generic_perform_write`): the pages become dirty and
/// the file grows to cover them; the host file gets them at writeback. With `O_APPEND` the
/// bytes go at the end whatever `pos` says, as Linux does.
pub(crate) fn sys_pwrite(st: &mut State, fd: i32, buf: &[u8], pos: i64) -> Result<usize, Errno> {
    if pos < 0 {
        return Err(Errno::EINVAL);
    }
    let f = rw_file(st, fd, FMODE_WRITE)?;
    let inode = f.inode;
    let pos = if f.f_flags & libc::O_APPEND != 0 { inode.size_bytes.get() } else { pos as u64 };
    let max = (crate::shmem::MAX_INODE_PAGES as u64) << PAGE_SHIFT;
    if pos >= max && !buf.is_empty() {
        return Err(Errno(libc::EFBIG));
    }
    let len = buf.len().min((max - pos) as usize);
    let mut done = 0;
    let mut faulted_to = 0;
    while done < len {
        if done >= faulted_to {
            // As in `sys_pread`: reclaim, then fault the next chunk of the buffer in.
            crate::vmscan::reclaim_for(st, 2 * (IO_CHUNK >> PAGE_SHIFT) + 4);
            let n = IO_CHUNK.min(len - done);
            if let Err(e) = fault_in_buffer(st, buf[done..].as_ptr() as usize, n, false) {
                return if done == 0 { Err(e) } else { Ok(done) };
            }
            faulted_to = done + n;
        }
        let at = pos + done as u64;
        let index = (at >> PAGE_SHIFT) as usize;
        let off = (at as usize) & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - off).min(len - done);
        // A page written whole need not be read first.
        let got = if n == PAGE_SIZE {
            match crate::shmem::find_page(&st.phys, &inode, index) {
                Some(p) => Ok(p),
                None => crate::shmem::add_to_page_cache(&mut st.phys, &inode, index),
            }
        } else {
            crate::filemap::filemap_get_page(st, inode, index, 1).map(|(p, _)| p)
        };
        let pfn = match got {
            Ok(p) => p,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        st.phys.mark_page_accessed(pfn);
        // SAFETY: as in `sys_pread`, the other way.
        unsafe { core::ptr::copy_nonoverlapping(buf[done..].as_ptr(), st.phys.frame(pfn).add(off), n) };
        crate::page_writeback::set_page_dirty(&mut st.phys, &inode, pfn);
        done += n;
        let end = pos + done as u64;
        if end > inode.size_bytes.get() {
            inode.set_size_bytes(end);
        }
    }
    Ok(done)
}

/// `ftruncate(2)`: the host file and the cache take the new size; pages wholly beyond it
/// leave every mapping (their next touch is `SIGBUS`) and the cache, and the part of the
/// last page beyond it reads zero.
pub(crate) fn sys_ftruncate(st: &mut State, fd: i32, length: i64) -> Result<(), Errno> {
    if length < 0 {
        return Err(Errno::EINVAL);
    }
    let f = st.files.get(fd)?;
    if !f.inode.is_reg() || f.f_mode & FMODE_WRITE == 0 {
        return Err(Errno::EINVAL);
    }
    if length as u64 > (crate::shmem::MAX_INODE_PAGES as u64) << PAGE_SHIFT {
        return Err(Errno(libc::EFBIG));
    }
    // SAFETY: plain system call on the inode's writable host descriptor.
    if unsafe { libc::ftruncate(host_write_fd(&f.inode), length) } != 0 {
        return Err(Errno(ptalloc::errno()));
    }
    crate::truncate::truncate_setsize(st, f.inode, length as u64);
    Ok(())
}

/// `fsync(2)` and `fdatasync(2)`: write back the file's dirty pages (there is no metadata
/// apart from the size, which a write-back carries). `EIO` if the host refused a write.
pub(crate) fn sys_fsync(st: &mut State, fd: i32) -> Result<(), Errno> {
    let f = st.files.get(fd)?;
    match f.inode.kind.get() {
        INODE_REG => crate::page_writeback::writeback_range(st, f.inode, 0, crate::shmem::MAX_INODE_PAGES),
        INODE_DIR => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// `posix_fadvise(2)` (returns the error instead of setting errno, as the call does).
/// `POSIX_FADV_DONTNEED` writes the range's dirty pages back and drops its clean, unmapped
/// pages from the cache (`invalidate_mapping_pages`); `POSIX_FADV_WILLNEED` reads the range
/// in; the others only set read-ahead hints, which the simulation keeps per mapping
/// (`madvise`), not per file.
pub(crate) fn sys_fadvise(st: &mut State, fd: i32, offset: i64, len: i64, advice: i32) -> Result<(), Errno> {
    let f = st.files.get(fd)?;
    if f.inode.kind.get() == INODE_SPECIAL && f.inode.mode.get() & libc::S_IFMT == libc::S_IFIFO {
        return Err(Errno(libc::ESPIPE));
    }
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    match advice {
        libc::POSIX_FADV_NORMAL
        | libc::POSIX_FADV_RANDOM
        | libc::POSIX_FADV_SEQUENTIAL
        | libc::POSIX_FADV_NOREUSE => return Ok(()),
        libc::POSIX_FADV_WILLNEED | libc::POSIX_FADV_DONTNEED => {}
        _ => return Err(Errno::EINVAL),
    }
    if !f.inode.is_reg() {
        return Ok(());
    }
    let inode = f.inode;
    let offset = offset.max(0) as u64;
    let endbyte = if len == 0 { u64::MAX } else { offset.saturating_add(len as u64 - 1) };
    let max = crate::shmem::MAX_INODE_PAGES as u64;
    if advice == libc::POSIX_FADV_WILLNEED {
        let start = (offset >> PAGE_SHIFT).min(max) as usize;
        let end = ((endbyte >> PAGE_SHIFT) + 1).min(inode.size_pages.get() as u64) as usize;
        // Read-ahead errors are not the caller's (Linux ignores them too).
        for index in start..end {
            let _ = crate::filemap::filemap_get_page(st, inode, index, 1);
        }
        return Ok(());
    }
    let first = (offset >> PAGE_SHIFT).min(max) as usize;
    let last = ((endbyte >> PAGE_SHIFT) + 1).min(max) as usize;
    // Write back what is dirty first (Linux starts the I/O and drops what is clean by the
    // end; here the writes are done when they return).
    let _ = crate::page_writeback::writeback_range(st, inode, first, last);
    // Only whole pages are dropped.
    let start = (offset.div_ceil(PAGE_SIZE as u64)).min(max) as usize;
    let mut end = ((endbyte >> PAGE_SHIFT) + 1).min(max) as usize;
    // A partial last page stays, unless the range reaches the end of the file.
    let to_eof = endbyte == u64::MAX || endbyte + 1 >= inode.size_bytes.get();
    if !to_eof && (endbyte + 1) % PAGE_SIZE as u64 != 0 {
        end = end.saturating_sub(1);
    }
    crate::truncate::invalidate_mapping_pages(&mut st.phys, &inode, start, end);
    Ok(())
}
