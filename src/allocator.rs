//! Process memory policy for glibc's allocator.
//!
//! glibc keeps freed memory in per-thread arenas. The cluster scraper parses
//! each response on whichever blocking thread is free, so every thread that
//! ever parsed a 1.7 GB `/jobs` stream keeps its own arena of freed pages and
//! the exporter's RSS ratchets up poll after poll. At 10k nodes / 100k jobs
//! (`cargo bench --bench cluster_scale -- rss`, VmHWM after four polls):
//! default 199 MiB, two arenas 154 MiB, one arena 130 MiB; trimming after each
//! poll alone took the default from 317 to ~220 MiB.

/// Returns memory freed since the last poll to the OS. Called after each
/// response is parsed and after each snapshot is published; one
/// `malloc_trim` costs about a millisecond.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes every thread allocate from one arena, unless `MALLOC_ARENA_MAX` is
/// set (the operator's choice wins). Call before any thread is started. The
/// scraper's allocations happen on a few threads at once per poll, so the
/// shared arena's lock costs little next to the memory it saves.
pub fn use_single_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX is a valid parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
