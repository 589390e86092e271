//! The per-request narrowing layer, from the `x-cordon-require` header:
//! `rule=value, rule=value`, list values separated by `|`
//! (e.g. `processing_in=FR|DE, max_retention_days=0`). It is one more layer
//! intersected with the others, so it can only narrow. Rules it does not name
//! are unconstrained, `no_training` included.

use super::compile::Table;
use super::terms::{Certification, Dpa, Layer, LayerKind, ProviderId, Region, Rules, Transfer};

/// Why a requirement header was refused (a 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequireError {
    #[error("x-cordon-require: `{0}` is not of the form rule=value")]
    Malformed(String),
    #[error(
        "x-cordon-require: unknown rule `{0}` (known: processing_in, jurisdiction_in, dpa, \
         no_training, max_retention_days, certifications, transfer, exclude_providers)"
    )]
    UnknownRule(String),
    #[error("x-cordon-require: rule `{0}` is given twice")]
    Duplicate(String),
    #[error("x-cordon-require: rule `{rule}`: {message}")]
    BadValue { rule: String, message: String },
}

/// Parses a header value into a request layer, validated against `table`
/// (region groups and provider ids).
pub fn parse_require(header: &str, table: &Table) -> Result<Layer, RequireError> {
    let mut rules = Rules::unconstrained();
    let mut seen: Vec<&str> = Vec::new();
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .map(|(n, v)| (n.trim(), v.trim()))
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| RequireError::Malformed(part.to_owned()))?;
        if seen.contains(&name) {
            return Err(RequireError::Duplicate(name.to_owned()));
        }
        let items: Vec<&str> = value.split('|').map(str::trim).collect();
        let bad = |message: String| RequireError::BadValue {
            rule: name.to_owned(),
            message,
        };
        match name {
            "processing_in" | "jurisdiction_in" => {
                let set = table
                    .regions()
                    .resolve_all(&items)
                    .map_err(|e| bad(e.to_string()))?;
                let region = Some(Region {
                    names: items.iter().map(|s| s.to_string()).collect(),
                    set,
                });
                if name == "processing_in" {
                    rules.processing_in = region;
                } else {
                    rules.jurisdiction_in = region;
                }
            }
            "dpa" => {
                let v: Result<Vec<Dpa>, _> = items.iter().map(|s| s.parse()).collect();
                rules.dpa = Some(v.map_err(|e| bad(e.to_string()))?);
            }
            "transfer" => {
                let v: Result<Vec<Transfer>, _> = items.iter().map(|s| s.parse()).collect();
                rules.transfer = Some(v.map_err(|e| bad(e.to_string()))?);
            }
            "certifications" => {
                let v: Result<Vec<Certification>, _> = items.iter().map(|s| s.parse()).collect();
                rules.certifications = v.map_err(|e| bad(e.to_string()))?;
            }
            "no_training" => {
                rules.no_training = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("`{value}` is not true or false"))),
                }
            }
            "max_retention_days" => {
                rules.max_retention_days = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a whole number of days")))?,
                );
            }
            "exclude_providers" => {
                for id in &items {
                    if !table.has_provider(id) {
                        return Err(bad(format!("unknown provider `{id}`")));
                    }
                    rules.exclude_providers.push(ProviderId::new(id));
                }
            }
            _ => return Err(RequireError::UnknownRule(name.to_owned())),
        }
        seen.push(name);
    }
    Ok(Layer {
        kind: LayerKind::Request,
        rules,
        models: None,
    })
}
