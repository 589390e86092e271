//! Answers, for (tenant, project, model) on a given day and with an optional
//! per-request layer: which providers may serve, in which order, under which
//! policy version, or why none can.

use super::PolicyVersion;
use super::compile::{Candidate, Scope, Table, Tenant};
use super::rules::{self, At, Failure, Rule};
use super::terms::{Date, Layer, Provider, ProviderId};

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Decision<'a> {
    /// The model is served and allowed; `Routes::eligible` may still be empty
    /// (every provider fails some rule: a 403 `policy_denied`).
    Route(Routes<'a>),
    /// No provider serves the model (404).
    ModelNotServed,
    /// A layer's `models.allow` excludes the model (404).
    ModelNotAllowed,
    /// No policy exists for the tenant: nothing is allowed.
    UnknownTenant,
    /// The key names a project its tenant's policy does not define: nothing is allowed.
    UnknownProject,
}

/// The candidates of one (tenant, project, model), with the day and request
/// layer they are judged under.
#[derive(Debug, Clone, Copy)]
pub struct Routes<'a> {
    table: &'a Table,
    candidates: &'a [Candidate],
    version: PolicyVersion,
    model: &'a str,
    today: Date,
    extra: Option<&'a Layer>,
}

/// Every provider serving a model, with each failed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub tenant: String,
    pub model: String,
    pub project: Option<String>,
    pub version: Option<PolicyVersion>,
    /// Eligible provider ids, in routing order.
    pub eligible: Vec<String>,
    /// Every provider that serves the model: eligible ones first, in routing
    /// order, then the others by (priority, id).
    pub providers: Vec<Verdict>,
}

/// One provider's verdict in an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    pub eligible: bool,
    pub failed_rules: Vec<Failure>,
}

/// Why `explain` could not look at providers at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("no policy for tenant `{0}`")]
    UnknownTenant(String),
    #[error("tenant `{tenant}` has no project `{project}`")]
    UnknownProject { tenant: String, project: String },
}

// === impl Explanation ===

impl Explanation {
    /// The JSON shape of `cordon explain --json` and `POST /admin/explain`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tenant": self.tenant,
            "model": self.model,
            "project": self.project,
            "policy_version": self.version.map(|v| v.to_string()),
            "eligible": self.eligible,
            "providers": self.providers.iter().map(|v| serde_json::json!({
                "id": v.id,
                "eligible": v.eligible,
                "failed_rules": v.failed_rules.iter().map(|f| serde_json::json!({
                    "rule": f.rule.as_str(),
                    "layer": f.layer.map_or("provider", |l| l.as_str()),
                    "detail": f.detail,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

// === impl Table (lookups) ===

impl Table {
    /// Which providers may serve `model` for (tenant, project) on `today`,
    /// further narrowed by `extra` (the request's `x-cordon-require` layer).
    pub fn decide<'a>(
        &'a self,
        tenant: &str,
        project: Option<&str>,
        model: &'a str,
        today: Date,
        extra: Option<&'a Layer>,
    ) -> Decision<'a> {
        let scope = match self.scope(tenant, project) {
            Ok((_, scope)) => scope,
            Err(ExplainError::UnknownTenant(_)) => return Decision::UnknownTenant,
            Err(ExplainError::UnknownProject { .. }) => return Decision::UnknownProject,
        };
        let Some(&m) = self.models.get(model) else {
            return Decision::ModelNotServed;
        };
        match scope.routes[m].candidates(&self.candidates) {
            None => Decision::ModelNotAllowed,
            Some(candidates) => Decision::Route(Routes {
                table: self,
                candidates,
                version: scope.version,
                model,
                today,
                extra,
            }),
        }
    }

    fn scope(
        &self,
        tenant: &str,
        project: Option<&str>,
    ) -> Result<(&Tenant, &Scope), ExplainError> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| ExplainError::UnknownTenant(tenant.to_owned()))?;
        let scope = match project {
            None => &t.base,
            Some(p) => t
                .projects
                .binary_search_by(|(name, _)| name.as_str().cmp(p))
                .map(|i| &t.projects[i].1)
                .map_err(|_| ExplainError::UnknownProject {
                    tenant: tenant.to_owned(),
                    project: p.to_owned(),
                })?,
        };
        Ok((t, scope))
    }

    /// Every provider serving `model`, eligible or not, with every failed rule
    /// of every layer, evaluated directly (not from the compiled table).
    pub fn explain(
        &self,
        tenant: &str,
        project: Option<&str>,
        model: &str,
        today: Date,
        extra: Option<&Layer>,
    ) -> Result<Explanation, ExplainError> {
        self.explain_with(tenant, project, model, today, extra, &|_| None)
    }

    /// [`Table::explain`], where each provider for which `unusable` gives a
    /// reason also fails [`Rule::Credential`] (of the provider, with that
    /// reason as its detail), and so is not eligible. The caller says which
    /// providers cannot be sent anything (e.g. their credential is unset);
    /// the policy itself knows nothing of credentials.
    pub fn explain_with(
        &self,
        tenant: &str,
        project: Option<&str>,
        model: &str,
        today: Date,
        extra: Option<&Layer>,
        unusable: &dyn Fn(&ProviderId) -> Option<String>,
    ) -> Result<Explanation, ExplainError> {
        let (t, scope) = self.scope(tenant, project)?;
        let project_layer = project.and_then(|p| t.policy.projects.get(p));
        let layers: Vec<&Layer> = self
            .floor
            .iter()
            .chain(Some(&t.policy.layer))
            .chain(project_layer)
            .chain(extra)
            .collect();
        let at = At::Day(today);

        let mut verdicts: Vec<(Option<usize>, Verdict)> = self
            .providers
            .iter()
            .filter(|p| p.models.iter().any(|m| m == model))
            .map(|p| {
                let mut failed_rules = failures(p, &layers, model, at);
                if let Some(detail) = unusable(&p.id) {
                    failed_rules.push(Failure {
                        rule: Rule::Credential,
                        layer: None,
                        detail,
                    });
                }
                let eligible = failed_rules.is_empty();
                let pos = eligible.then(|| {
                    t.policy
                        .order
                        .iter()
                        .position(|o| *o == p.id)
                        .unwrap_or(usize::MAX)
                });
                let v = Verdict {
                    id: p.id.to_string(),
                    eligible,
                    failed_rules,
                };
                (pos, v)
            })
            .collect();
        // Eligible first by routing position, then the rest; the sort is stable
        // so ties keep the (priority, id) order of `self.providers`.
        verdicts.sort_by_key(|(pos, _)| (pos.is_none(), pos.unwrap_or(0)));
        let providers: Vec<Verdict> = verdicts.into_iter().map(|(_, v)| v).collect();
        Ok(Explanation {
            tenant: tenant.to_owned(),
            model: model.to_owned(),
            project: project.map(str::to_owned),
            version: Some(extra.map_or(scope.version, |e| scope.version.with(e))),
            eligible: providers
                .iter()
                .filter(|v| v.eligible)
                .map(|v| v.id.clone())
                .collect(),
            providers,
        })
    }
}

/// Every failed rule of `p` under `layers`, with details, in report order.
fn failures(p: &Provider, layers: &[&Layer], model: &str, at: At) -> Vec<Failure> {
    // Rules that no date will fix come first, so "the first rule it fails"
    // (the 403 message, `cordon check`) names a lasting reason when there is one.
    let mut out: Vec<Failure> = Vec::new();
    for l in layers {
        out.extend(rules::layer_failures(l, p, model, at).map(|rule| Failure {
            rule,
            layer: Some(l.kind),
            detail: rules::detail(rule, Some(l), p, model, at),
        }));
    }
    out.extend(rules::dated_failures(p, at).map(|rule| Failure {
        rule,
        layer: None,
        detail: rules::detail(rule, None, p, model, at),
    }));
    out
}

// === impl Routes ===

impl<'a> Routes<'a> {
    /// The eligible providers, in routing order. Allocates nothing.
    pub fn eligible(&self) -> impl Iterator<Item = &'a Provider> + 'a {
        self.eligible_indexed().map(|(_, p)| p)
    }

    /// The eligible providers with their index in `Table::providers()`.
    pub fn eligible_indexed(&self) -> impl Iterator<Item = (usize, &'a Provider)> + 'a {
        let Routes {
            table,
            candidates,
            model,
            today,
            extra,
            ..
        } = *self;
        candidates
            .iter()
            .filter(move |c| c.window.contains(today))
            .map(move |c| (c.provider as usize, &table.providers[c.provider as usize]))
            .filter(move |(_, p)| {
                extra.is_none_or(|l| {
                    rules::layer_failures(l, p, model, At::Day(today))
                        .next()
                        .is_none()
                })
            })
    }

    /// The version of the effective policy that decided this route (hashed
    /// with the request layer, if any, on each call: ask once per request).
    pub fn version(&self) -> PolicyVersion {
        self.extra.map_or(self.version, |e| self.version.with(e))
    }

    /// For a denial: each provider serving the model and the first rule it fails.
    pub fn denial_reasons(&self, tenant: &str, project: Option<&str>) -> Vec<(String, Failure)> {
        let Ok(ex) = self
            .table
            .explain(tenant, project, self.model, self.today, self.extra)
        else {
            return Vec::new();
        };
        ex.providers
            .into_iter()
            .filter_map(|v| {
                let first = v.failed_rules.into_iter().next()?;
                Some((v.id, first))
            })
            .collect()
    }
}
