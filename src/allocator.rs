//! The process allocator: mimalloc, tuned for a long-running server that is idle most
//! of the time.
//!
//! Rendering and JSON handling allocate many small strings and maps; mimalloc cut the
//! render's allocator share (a quarter of a render under glibc malloc, by profile). Its
//! defaults suit a busy batch process, not a mostly idle server: each arena is
//! committed up front (and backed by transparent huge pages), and freed memory goes
//! back to the OS only a second later, checked on a later allocation — which an idle
//! server may never make. On Linux this module sets mimalloc, as the program loads,
//! to commit arena memory on demand and purge freed memory after 10 ms: idle RSS of
//! `storeplane serve` fell from 50 MiB to about 30 MiB, with the same API latency
//! under load. Purging at once (0 ms) saved 2 MiB more but made a render up to twice
//! as slow (page faults on re-used memory); both are in bench/RESULTS.md.

#[cfg(target_os = "linux")]
use libmimalloc_sys::{mi_option_set, mi_option_t};

/// Declared here, so that the binary, the tests and the benchmarks all run on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Option numbers from mimalloc.h (v3, `mi_option_e`); libmimalloc-sys does not name
// these two.
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: mi_option_t = 4;
#[cfg(target_os = "linux")]
const PURGE_DELAY: mi_option_t = 15;

/// Runs [`tune`] as the program loads, before the Rust runtime's first allocation
/// reserves an arena (from `main`, the first arena would already be committed). Other
/// platforms keep mimalloc's defaults.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_AT_LOAD: extern "C" fn() = {
    extern "C" fn tune_at_load() {
        tune();
    }
    tune_at_load
};

/// The server settings. A `MIMALLOC_ARENA_EAGER_COMMIT` or `MIMALLOC_PURGE_DELAY` in
/// the environment still wins.
#[cfg(target_os = "linux")]
fn tune() {
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 10),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mi_option_set stores a value in mimalloc's option table; any
            // value is valid for these options, and it may be called at any time.
            unsafe { mi_option_set(option, value) };
        }
    }
}
