//! Reporting heap corruption the way glibc does: one line on standard error, then `abort()`.

/// Print `message` and a newline to file descriptor 2 with a single `write`, then abort.
/// Used when the heap's own metadata proves it has been corrupted (double free, overwritten
/// size fields...): carrying on would hand out memory twice.
#[cold]
#[inline(never)]
pub(crate) fn malloc_printerr(message: &str) -> ! {
    let mut line = [0u8; 256];
    let n = message.len().min(line.len() - 1);
    line[..n].copy_from_slice(&message.as_bytes()[..n]);
    line[n] = b'\n';
    crate::prim::write_fd(2, &line[..n + 1]);
    crate::prim::abort()
}
