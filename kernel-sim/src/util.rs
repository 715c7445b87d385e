//! Small helpers for code that may not allocate: formatting into a stack buffer, writing to
//! standard error with `write(2)`, and stopping the process when the simulation's own
//! invariants are broken.

use core::fmt;

/// A `fmt::Write` into a fixed buffer; output that does not fit is cut off.
pub struct StackWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackWriter<N> {
    pub const fn new() -> StackWriter<N> {
        StackWriter { buf: [0; N], len: 0 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Write what has been formatted to standard error in one `write(2)`.
    pub fn emit(&self) {
        write_stderr(self.as_bytes());
    }
}

impl<const N: usize> Default for StackWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `write(2)` to file descriptor 2, ignoring errors (there is nowhere to report them).
pub fn write_stderr(bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writing from a live slice; write(2) is async-signal-safe.
        let n = unsafe { libc::write(2, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            return;
        }
        done += n as usize;
    }
}

/// The simulation found its own state inconsistent: say so on stderr and abort. Never
/// unwinds, so it is usable inside the fault handler.
#[cold]
#[inline(never)]
pub fn bug(what: &str, a: usize, b: usize) -> ! {
    use fmt::Write;
    let mut w = StackWriter::<256>::new();
    let _ = writeln!(w, "kernel-sim: BUG: {what} ({a:#x}, {b:#x})");
    w.emit();
    // SAFETY: abort() does not return and is async-signal-safe.
    unsafe { libc::abort() }
}
