#[tokio::main]
async fn main() -> std::process::ExitCode {
    match zapis::cli::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("error: {}", zapis::secrets::installed().scrub(&text));
            std::process::ExitCode::FAILURE
        }
    }
}
