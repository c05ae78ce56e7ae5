/// The binary's own allocations go to jemalloc: a chat turn makes a few hundred small ones
/// (parsed updates, rendered screens, request bodies), and under glibc's malloc they took a
/// fifth of the bot's CPU (`docs/benchmarks.md`). SQLite, being C, keeps glibc's malloc.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` runs; `_RJEM_MALLOC_CONF` in the environment is
/// read after them, so an operator can still override any. Its defaults are made for servers
/// with many cores and gigabytes: these keep a bot's resident memory where glibc's malloc kept
/// it. One arena (a bot has a handful of threads), per-thread caches for small sizes only,
/// freed pages handed back within half a second without a second ("muzzy") stage, and a
/// background thread that does it while the process is idle, not only on its next allocation.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a C string literal is a 'static, NUL-terminated array of c_char.
    unsafe {
        &*c"narenas:1,tcache_max:1024,dirty_decay_ms:500,muzzy_decay_ms:0,background_thread:true"
            .as_ptr()
    },
);

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    give_back_freed_memory(&runtime);
    match runtime.block_on(zapis::cli::main()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("error: {}", zapis::secrets::installed().scrub(&text));
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc still serves SQLite. It gives threads that allocate at once arenas of their
/// own, up to eight per core, and keeps what each arena once held: with a thread per SQLite
/// connection that is resident memory for no speed a bot needs. Set before the runtime
/// starts its threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages glibc's malloc freed back to the system once a second. glibc returns only
/// the top of its main heap on its own: what a burst of turns freed elsewhere stayed resident
/// until the process ended (55–62 MiB after a thousand chats at once, ~40 with the trim, when
/// all of the bot's memory was glibc's; the bot bench saw no change in CPU per update,
/// `docs/benchmarks.md`). SQLite's page caches and statements are what it holds now.
fn give_back_freed_memory(runtime: &tokio::runtime::Runtime) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    runtime.spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // SAFETY: malloc_trim only returns free pages; it takes the allocator's own locks.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = runtime;
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use std::ffi::{CStr, c_void};

    /// One of jemalloc's options as it took it.
    fn option<T: Default>(name: &CStr) -> T {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `value` is a T of `len` bytes, as the option named reads back.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "mallctl {name:?}");
        value
    }

    #[test]
    fn the_allocator_runs_with_the_options_the_binary_sets() {
        assert_eq!(option::<u32>(c"opt.narenas"), 1);
        assert_eq!(option::<usize>(c"opt.tcache_max"), 1024);
        assert_eq!(option::<isize>(c"opt.dirty_decay_ms"), 500);
        assert_eq!(option::<isize>(c"opt.muzzy_decay_ms"), 0);
        assert!(option::<bool>(c"opt.background_thread"));
    }
}
