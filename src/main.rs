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

/// glibc gives threads that allocate at once arenas of their own, up to eight per core, and
/// keeps what each arena once held: with the runtime's workers and a thread per SQLite
/// connection that is megabytes of resident memory for no speed a bot needs. Set before the
/// runtime starts its threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages of freed memory back to the system once a second. glibc returns only the
/// top of its main heap on its own: what a burst of turns freed elsewhere stayed resident
/// until the process ended (55–62 MiB after a thousand chats at once, ~40 with the trim; the
/// bot bench saw no change in CPU per update, `docs/benchmarks.md`).
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
