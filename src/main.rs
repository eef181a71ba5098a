//! The `inferwatch` binary: the command line of `cli`.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = inferwatch::cli::Cli::parse();
    let filter =
        EnvFilter::try_from_env("INFERWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = cli.log_format == inferwatch::cli::LogFormat::Json;
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("inferwatch: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(inferwatch::cli::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                let line = serde_json::json!({"level": "ERROR", "message": f.message, "exit_code": f.code});
                eprintln!("{line}");
            } else {
                eprintln!("inferwatch: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
