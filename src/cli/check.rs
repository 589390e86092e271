//! `cordon check`: validate everything; on success print, for each tenant and
//! project, which providers serve each model in routing order, or why none can,
//! and warn (on stderr, exit code unchanged) of each provider whose credential
//! cannot be read here.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::ProcessEnv;
use crate::policy::{Date, Decision, Table};

pub fn run(
    config: &Path,
    today: Date,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let table = &cfg.table;
    let tenants = table.tenants();
    writeln!(
        out,
        "{}: valid — {} providers, {} models, {} tenants{}; routes as of {today}",
        config.display(),
        table.providers().len(),
        table.models().len(),
        tenants.len(),
        if table.floor().is_some() {
            ", floor"
        } else {
            ""
        }
    )?;
    print_routes(table, today, out)?;
    // Routes above are the policy's; a provider without a credential is
    // never sent a request, and `cordon explain` shows it as not eligible.
    for (id, why) in cfg.missing_credentials(&ProcessEnv) {
        writeln!(
            err,
            "warning: provider `{id}` has no credential ({why}); it will not be used"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant × model table, evaluated on `today`.
pub fn print_routes(table: &Table, today: Date, out: &mut dyn Write) -> io::Result<()> {
    let models = table.models();
    let width = models.iter().map(|m| m.len()).max().unwrap_or(0);
    for policy in table.tenants() {
        let scopes = std::iter::once(None).chain(policy.projects.keys().map(|p| Some(p.as_str())));
        for project in scopes {
            writeln!(out)?;
            match project {
                None => writeln!(out, "tenant {}", policy.tenant)?,
                Some(p) => writeln!(out, "tenant {} project {p}", policy.tenant)?,
            }
            for model in &models {
                let line = match table.decide(&policy.tenant, project, model, today, None) {
                    Decision::Route(routes) => {
                        let ids: Vec<&str> = routes.eligible().map(|p| p.id.as_str()).collect();
                        if ids.is_empty() {
                            let reasons: Vec<String> = routes
                                .denial_reasons(&policy.tenant, project)
                                .into_iter()
                                .map(|(id, f)| format!("{id}: {}", f.rule))
                                .collect();
                            format!("none ({})", reasons.join("; "))
                        } else {
                            ids.join(", ")
                        }
                    }
                    Decision::ModelNotAllowed => "not allowed (models.allow)".to_owned(),
                    Decision::ModelNotServed
                    | Decision::UnknownTenant
                    | Decision::UnknownProject => {
                        continue;
                    }
                };
                writeln!(out, "  {model:<width$}  {line}")?;
            }
        }
    }
    Ok(())
}
