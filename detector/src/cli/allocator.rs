//! The binary's memory allocator: mimalloc, set to give freed memory back at once.
//!
//! Replay hands what workers allocate (gate candidates, detached records) to the thread that
//! keeps state, which frees it: glibc's malloc then locks the worker's arena for every free,
//! and alerts on two threads were no faster than on one. mimalloc frees across threads without
//! a lock (measured in docs/PERFORMANCE.md, "The allocator").

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t`, which libmimalloc-sys does not name
/// (mimalloc keeps the numbering: deprecated options hold their places).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purges freed memory at once instead of a second later: a table that grows frees its old
/// half, and with the delay 1,000,000 correlation keys peaked at 91 MiB instead of 62.
pub(crate) fn tune() {
    // SAFETY: a setter of a process-wide option, called before any other thread is started.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}
