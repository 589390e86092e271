//! `cordon explain`: every provider serving a model for one tenant (and
//! project), eligible or not, with each failed rule in plain words.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::policy::{Date, Explanation};

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
    let ex = match cfg.table.explain(
        &args.tenant,
        args.project.as_deref(),
        &args.model,
        args.at,
        None,
    ) {
        Ok(ex) => ex,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        writeln!(out, "{:#}", to_json(&ex))?;
    } else {
        write_text(&ex, args.at, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON shape shared with `POST /admin/explain`.
pub fn to_json(ex: &Explanation) -> serde_json::Value {
    json!({
        "tenant": ex.tenant,
        "model": ex.model,
        "project": ex.project,
        "policy_version": ex.version.map(|v| v.to_string()),
        "eligible": ex.eligible,
        "providers": ex.providers.iter().map(|v| json!({
            "id": v.id,
            "eligible": v.eligible,
            "failed_rules": v.failed_rules.iter().map(|f| json!({
                "rule": f.rule.as_str(),
                "layer": f.layer.map_or("provider", |l| l.as_str()),
                "detail": f.detail,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
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
