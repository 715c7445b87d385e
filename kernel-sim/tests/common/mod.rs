//! What the tests that fork simulated processes share: one-byte messages through pipes
//! between a parent and its children.

/// A pipe: (write end, read end).
pub fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: creating a pipe into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[1], fds[0])
}

pub fn send(fd: i32, v: u8) {
    // SAFETY: writing one byte from a local.
    assert_eq!(unsafe { libc::write(fd, (&v as *const u8).cast(), 1) }, 1);
}

/// One byte from `fd`; a process waiting longer than 30 s, or whose peer is gone (its
/// peer failed), ends itself, so no child outlives a failed test holding the harness's
/// output open and no parent waits for a dead child.
pub fn recv(fd: i32) -> u8 {
    let mut v = 0u8;
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: polling one descriptor of ours.
        let r = unsafe { libc::poll(&mut pfd, 1, 30_000) };
        if r == 1 {
            break;
        }
        // A TLB shootdown's signal interrupts the wait: wait on.
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // SAFETY: ending this process.
        unsafe { libc::_exit(98) };
    }
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(fd, (&mut v as *mut u8).cast(), 1) };
    if n != 1 {
        // SAFETY: the other side is gone; end this process (it may be the child).
        unsafe { libc::_exit(99) };
    }
    v
}
