use std::process::ExitCode;

use clerk_sync::cli::{parse_with_secret_files, run, ChildExit, Cli, Found, EXIT_FOUND};

fn main() -> ExitCode {
    let cli = match parse_with_secret_files() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main(cli: Cli) -> ExitCode {
    let telemetry = clerk_sync::logging::init(cli.log_format, cli.command.role());
    let result = run(cli).await;
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ChildExit>().is_some() => {
            let code = e.downcast_ref::<ChildExit>().map_or(1, |c| c.0);
            ExitCode::from(code)
        }
        Err(e) if e.downcast_ref::<Found>().is_some() => {
            eprintln!("found: {e}");
            ExitCode::from(EXIT_FOUND)
        }
        Err(e) => {
            // One line naming what is wrong, with its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
