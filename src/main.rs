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
