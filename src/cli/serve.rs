//! `cordon serve`: run the gateway until SIGINT or SIGTERM.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::ProcessEnv;
use crate::server::Running;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(
    config: &Path,
    log_format: LogFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    init_tracing(log_format);
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: cannot start the runtime: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime.block_on(async {
        let running = match Running::start(cfg, &ProcessEnv).await {
            Ok(r) => r,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(ExitCode::FAILURE);
            }
        };
        // Tests and scripts read these two lines to find the ports.
        writeln!(out, "cordon listening on {}", running.addr)?;
        writeln!(out, "cordon admin listening on {}", running.admin_addr)?;
        out.flush()?;
        tracing::info!(addr = %running.addr, admin = %running.admin_addr, "serving");
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Logs go to stderr; level from `RUST_LOG` (default `info`).
pub(super) fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .fmt_fields(super::log_fields::PlainFields)
            .try_init(),
    };
}
