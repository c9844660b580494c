//! `cairn`: run the proxy, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A transaction-stateful SIP proxy and load balancer.
#[derive(Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    /// The configuration file (TOML) to run with.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file: names the key and the problem, exits 0 when valid.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Run the proxy (the same as `cairn --config FILE`).
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => return check_config(&file),
        (Some(Command::Run { config }), _) | (None, Some(config)) => config,
        (None, None) => {
            eprintln!("cairn: no configuration: run `cairn --config FILE` (see `cairn --help`)");
            return ExitCode::from(2);
        }
    };
    let cfg = match cairn::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cairn::logging::init(&cfg.log) {
        eprintln!("cairn: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cairn::driver::run(cfg, path, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match cairn::config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} listener(s), {} rule(s), {} destination set(s))",
                file.display(),
                cfg.listen.len(),
                cfg.routing.rules().len(),
                cfg.routing.destination_sets().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
