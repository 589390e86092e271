//! The command line: `cordon check` and `cordon explain`.

mod check;
mod explain;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ProcessEnv};
use crate::policy::Date;

#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version,
    about = "An AI gateway that routes each request only to providers its tenant's data policy allows"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate cordon.toml and every policy; print which providers serve which model for each tenant.
    Check {
        /// The gateway file.
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// Evaluate routes on this day (YYYY-MM-DD) instead of today (UTC).
        #[arg(long, value_parser = parse_date)]
        at: Option<Date>,
    },
    /// Show, for one tenant and model, every provider and each rule it fails.
    Explain {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        project: Option<String>,
        /// Evaluate on this day (YYYY-MM-DD) instead of today (UTC).
        #[arg(long, value_parser = parse_date)]
        at: Option<Date>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let result = match cli.command {
        Command::Check { config, at } => {
            check::run(&config, at.unwrap_or_else(today), &mut out, &mut err)
        }
        Command::Explain {
            config,
            tenant,
            model,
            project,
            at,
            json,
        } => {
            let args = explain::Args {
                tenant,
                model,
                project,
                at: at.unwrap_or_else(today),
                json,
            };
            explain::run(&config, &args, &mut out, &mut err)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "cordon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration, printing every error to `err` on failure.
fn load_or_report(path: &std::path::Path, err: &mut dyn Write) -> std::io::Result<Option<Config>> {
    match config::load(path, &ProcessEnv) {
        Ok(c) => Ok(Some(c)),
        Err(errors) => {
            for e in &errors.0 {
                writeln!(err, "error: {e}")?;
            }
            let n = errors.0.len();
            writeln!(
                err,
                "{n} error{} in the configuration; nothing was loaded",
                if n == 1 { "" } else { "s" }
            )?;
            Ok(None)
        }
    }
}

/// Today in UTC: the only place the CLI reads the clock for policy dates.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).map_err(|_| format!("`{s}` is not a date of the form YYYY-MM-DD"))
}
