use std::process::ExitCode;

use clap::Parser;
use clerk_sync::cli::{load_secret_files, run, Cli};

fn main() -> ExitCode {
    // Before the runtime starts any thread: it may set environment variables.
    if let Err(e) = load_secret_files() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = clerk_sync::logging::init(cli.log_format, cli.command.role());
    let result = run(cli).await;
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming what is wrong, with its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
