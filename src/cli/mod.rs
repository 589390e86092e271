//! The command line: `serve`, `check`, `explain`, `keys`, `admin-token`,
//! `usage`, `audit`, `demo`.

mod admin_token;
mod audit;
mod check;
mod credentials;
mod demo;
pub(crate) mod explain;
mod keys;
pub mod log_fields;
mod serve;
mod usage;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::token::Role;
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
    /// Run the gateway: the client API on `listen`, metrics and health on `admin_listen`.
    Serve {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: serve::LogFormat,
    },
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
    /// Create, list and revoke client API keys (stored as SHA-256 hashes only).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Create, list and revoke admin API tokens (stored as SHA-256 hashes only).
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Check the audit log's hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage tenants' own provider credentials (BYOK) in the store.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Print a tenant's request and token totals.
    Usage {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// Start of the period: a duration ago (1h, 7d) or a day (YYYY-MM-DD, UTC). Default: all time.
        #[arg(long, value_parser = usage::parse_when)]
        since: Option<usage::When>,
        /// End of the period, not included: a duration ago (1h, 7d) or a day (YYYY-MM-DD: up to its start, UTC). Default: no end.
        #[arg(long, value_parser = usage::parse_when)]
        until: Option<usage::When>,
        /// Break the totals down by provider, model, key, project (none: `(none)`) or UTC day.
        #[arg(long, value_enum)]
        by: Option<usage::By>,
        /// Output: an aligned table with a total row, a JSON array of objects, or CSV with a header row.
        #[arg(long, value_enum, default_value = "table")]
        format: usage::Format,
    },
    /// Start a complete gateway on SIMULATED local providers, with demo keys and commands to try.
    Demo {
        /// Where the client API listens (`127.0.0.1:0`: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; the raw key is printed once, on stdout, and never stored.
    Create {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// A tenant defined in the policies directory.
        #[arg(long)]
        tenant: String,
        /// A label shown in listings.
        #[arg(long)]
        name: Option<String>,
        /// Bind the key to one of the tenant's projects.
        #[arg(long)]
        project: Option<String>,
        /// Lifetime: 30m, 12h, 90d, 2w. Default: no expiry.
        #[arg(long, value_parser = keys::parse_duration_ms)]
        expires_in: Option<i64>,
        /// Limit the key to models matching this glob (repeatable). Default: every model the policy allows.
        #[arg(long = "model", value_name = "GLOB")]
        models: Vec<String>,
        /// Requests per minute for this key alone. Default: no per-key limit.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rpm: Option<u32>,
    },
    /// List a tenant's keys (never their secrets or hashes).
    List {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id; gateways refuse it within seconds.
    Revoke {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// The key id shown by `keys create` and `keys list`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Create a token; the raw token is printed once, on stdout, and never stored.
    Create {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// platform-admin, tenant-admin, viewer or auditor.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The tenant of a tenant-admin or viewer token (refused for the other roles).
        #[arg(long)]
        tenant: Option<String>,
        /// A label shown in listings.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime: 30m, 12h, 90d, 2w. Default: no expiry.
        #[arg(long, value_parser = keys::parse_duration_ms)]
        expires_in: Option<i64>,
    },
    /// List every admin token (never its secret or hash).
    List {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
    },
    /// Revoke an admin token by id.
    Revoke {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// The token id shown by `admin-token create` and `admin-token list`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Re-seal every BYOK credential under a new master key, in one transaction. The key in
    /// use comes from CORDON_MASTER_KEY or CORDON_MASTER_KEY_FILE; the new one from a file.
    RotateMaster {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
        /// A file holding the new master key as 64 hex characters.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every entry's hash and link; print the newest hash (record it elsewhere).
    Verify {
        #[arg(long, default_value = "cordon.toml")]
        config: PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Not locked: `serve` logs to stderr from other threads while it runs.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let result = match cli.command {
        Command::Serve { config, log_format } => {
            serve::run(&config, log_format, &mut out, &mut err)
        }
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
        Command::Keys { command } => match command {
            KeysCommand::Create {
                config,
                tenant,
                name,
                project,
                expires_in,
                models,
                rpm,
            } => {
                let args = keys::CreateArgs {
                    tenant,
                    name,
                    project,
                    expires_in_ms: expires_in,
                    models,
                    rpm,
                };
                keys::create(&config, &args, &mut out, &mut err)
            }
            KeysCommand::List { config, tenant } => {
                keys::list(&config, &tenant, &mut out, &mut err)
            }
            KeysCommand::Revoke { config, id } => keys::revoke(&config, &id, &mut out, &mut err),
        },
        Command::AdminToken { command } => match command {
            AdminTokenCommand::Create {
                config,
                role,
                tenant,
                name,
                expires_in,
            } => {
                let args = admin_token::CreateArgs {
                    role,
                    tenant,
                    name,
                    expires_in_ms: expires_in,
                };
                admin_token::create(&config, &args, &mut out, &mut err)
            }
            AdminTokenCommand::List { config } => admin_token::list(&config, &mut out, &mut err),
            AdminTokenCommand::Revoke { config, id } => {
                admin_token::revoke(&config, &id, &mut out, &mut err)
            }
        },
        Command::Credentials { command } => match command {
            CredentialsCommand::RotateMaster {
                config,
                new_key_file,
            } => credentials::rotate_master(&config, &new_key_file, &mut out, &mut err),
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { config } => audit::verify(&config, &mut out, &mut err),
        },
        Command::Usage {
            config,
            tenant,
            since,
            until,
            by,
            format,
        } => {
            let args = usage::Args {
                tenant,
                since,
                until,
                by,
                format,
            };
            usage::run(&config, &args, &mut out, &mut err)
        }
        Command::Demo { listen } => demo::run(listen, &mut out, &mut err),
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

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: crate::auth::token::UnknownRole| e.to_string())
}

fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).map_err(|_| format!("`{s}` is not a date of the form YYYY-MM-DD"))
}
