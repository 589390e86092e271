//! `cordon explain`: every provider serving a model for one tenant (and
//! project), eligible or not, with each failed rule in plain words. A
//! provider without a credential is not eligible (rule `credential`).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ProcessEnv};
use crate::policy::{Date, ExplainError, Explanation};

pub struct Args {
    pub tenant: String,
    pub model: String,
    pub project: Option<String>,
    pub at: Date,
    pub json: bool,
}

pub fn run(
    config: &Path,
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let unusable: HashMap<String, String> = cfg
        .missing_credentials(&ProcessEnv)
        .into_iter()
        .map(|(id, why)| (id, why.to_string()))
        .collect();
    let ex = match explain_usable(
        &cfg,
        &unusable,
        &args.tenant,
        args.project.as_deref(),
        &args.model,
        args.at,
    ) {
        Ok(ex) => ex,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        writeln!(out, "{:#}", ex.to_json())?;
    } else {
        write_text(&ex, args.at, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The explanation shared by `cordon explain` and `POST /admin/explain`:
/// the policy's verdicts, where each provider in `unusable` (provider id →
/// why it cannot be sent anything, e.g. "credential variable `X` is not
/// set") also fails the rule `credential` and is not eligible.
pub(crate) fn explain_usable(
    cfg: &Config,
    unusable: &HashMap<String, String>,
    tenant: &str,
    project: Option<&str>,
    model: &str,
    day: Date,
) -> Result<Explanation, ExplainError> {
    cfg.table
        .explain_with(tenant, project, model, day, None, &|id| {
            unusable.get(id.as_str()).cloned()
        })
}

fn write_text(ex: &Explanation, at: Date, out: &mut dyn Write) -> io::Result<()> {
    let scope = match &ex.project {
        Some(p) => format!("tenant {} project {p}", ex.tenant),
        None => format!("tenant {}", ex.tenant),
    };
    writeln!(out, "{scope}, model {}, on {at}", ex.model)?;
    if ex.providers.is_empty() {
        writeln!(out, "no provider serves model `{}`", ex.model)?;
        return Ok(());
    }
    if ex.eligible.is_empty() {
        writeln!(
            out,
            "eligible: none — requests are refused (403 policy_denied)"
        )?;
    } else {
        writeln!(
            out,
            "eligible, in routing order: {}",
            ex.eligible.join(", ")
        )?;
    }
    for v in &ex.providers {
        writeln!(out)?;
        writeln!(
            out,
            "{} — {}",
            v.id,
            if v.eligible {
                "eligible"
            } else {
                "not eligible"
            }
        )?;
        for f in &v.failed_rules {
            let layer = f.layer.map_or("provider", |l| l.as_str());
            writeln!(out, "  ✗ {} ({layer}): {}", f.rule, f.detail)?;
        }
    }
    Ok(())
}
