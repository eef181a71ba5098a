//! The `inferwatch` binary: the command line of `cli`.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. The allocator asks for them on
/// its arenas, and then the first touch of any 2 MiB region zeroes all of it: with
/// window buffers and decoded batches coming and going, that zeroing was 15–20 % of
/// a replay's CPU, and peak RSS was higher. Failing is harmless (only slower).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
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
    // The worker pool of the per-client pass, named for `top -H` and profilers; one
    // thread per core, as rayon's default.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("inferwatch-pass-{i}"))
        .build_global();
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
