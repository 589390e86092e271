//! One check per rule. Each returns whether the provider passes; anything
//! missing or unknown fails. Details (plain words for `explain` and the 403
//! message) are built separately, only when someone asks for them.

use std::fmt;

use super::terms::{Certification, Date, Layer, LayerKind, Provider, Region, Rules};

/// Every reason a provider can be ineligible. Reports list a provider's layer
/// rules first (floor, tenant, project, request, each in this enum's order from
/// `Excluded` on), then the date rules of its own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    StaleTerms,
    NotYetEffective,
    Excluded,
    ModelNotAllowed,
    ProcessingIn,
    JurisdictionIn,
    Dpa,
    NoTraining,
    MaxRetentionDays,
    Certifications,
    Transfer,
    /// Not a policy rule: the gateway holds no credential for the provider,
    /// so it cannot be sent anything. Judged by the caller from what is
    /// running (see `Table::explain_with`), never by the policy engine.
    Credential,
}

/// When to evaluate: on a given day, or ignoring dates (the compiler computes
/// each candidate's date window separately, see [`window`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Day(Date),
    AnyDay,
}

/// One failed rule, and where it came from (`None`: the provider's own terms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub rule: Rule,
    pub layer: Option<LayerKind>,
    pub detail: String,
}

/// The days on which a provider that passes every undated rule is eligible:
/// from `effective_from` through the earliest of `review_by` and the expiry
/// of every certification a layer requires, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub from: Option<Date>,
    pub until: Option<Date>,
}

// === impl Rule ===

impl Rule {
    /// Every rule the policy engine judges (all but [`Rule::Credential`]).
    pub const ALL: [Rule; 11] = [
        Rule::StaleTerms,
        Rule::NotYetEffective,
        Rule::Excluded,
        Rule::ModelNotAllowed,
        Rule::ProcessingIn,
        Rule::JurisdictionIn,
        Rule::Dpa,
        Rule::NoTraining,
        Rule::MaxRetentionDays,
        Rule::Certifications,
        Rule::Transfer,
    ];

    /// The rule's name as written in policies, explain output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::StaleTerms => "stale_terms",
            Rule::NotYetEffective => "not_yet_effective",
            Rule::Excluded => "excluded",
            Rule::ModelNotAllowed => "model_not_allowed",
            Rule::ProcessingIn => "processing_in",
            Rule::JurisdictionIn => "jurisdiction_in",
            Rule::Dpa => "dpa",
            Rule::NoTraining => "no_training",
            Rule::MaxRetentionDays => "max_retention_days",
            Rule::Certifications => "certifications",
            Rule::Transfer => "transfer",
            Rule::Credential => "credential",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Window ===

impl Window {
    pub fn contains(&self, day: Date) -> bool {
        self.from.is_none_or(|f| f <= day) && self.until.is_none_or(|u| day <= u)
    }
}

/// The date window of `p` under `layers` (see [`Window`]).
pub fn window<'a>(p: &Provider, layers: impl IntoIterator<Item = &'a Layer>) -> Window {
    let mut until = p.terms.review_by;
    for layer in layers {
        for cert in &layer.rules.certifications {
            if let Some(Some(exp)) = p.terms.certifications.get(cert) {
                until = Some(until.map_or(*exp, |u| u.min(*exp)));
            }
        }
    }
    Window {
        from: p.terms.effective_from,
        until,
    }
}

/// Provider-level date rules: stale terms, then not yet effective.
pub fn dated_failures(p: &Provider, at: At) -> impl Iterator<Item = Rule> {
    let (stale, early) = match at {
        At::AnyDay => (false, false),
        At::Day(day) => (
            p.terms.review_by.is_some_and(|r| day > r),
            p.terms.effective_from.is_some_and(|f| day < f),
        ),
    };
    [(stale, Rule::StaleTerms), (early, Rule::NotYetEffective)]
        .into_iter()
        .filter_map(|(failed, rule)| failed.then_some(rule))
}

/// The rules of `layer` that `p` fails for `model`, in report order.
pub fn layer_failures(
    layer: &Layer,
    p: &Provider,
    model: &str,
    at: At,
) -> impl Iterator<Item = Rule> + use<> {
    let excluded = layer.rules.exclude_providers.contains(&p.id);
    let not_allowed = !layer.allows_model(model);
    [
        (excluded, Rule::Excluded),
        (not_allowed, Rule::ModelNotAllowed),
    ]
    .into_iter()
    .filter_map(|(failed, rule)| failed.then_some(rule))
    .chain(data_failures(&layer.rules, p, at))
}

/// The data rules of `r` (everything but exclusion and models) that `p` fails.
pub fn data_failures(r: &Rules, p: &Provider, at: At) -> impl Iterator<Item = Rule> + use<> {
    let t = &p.terms;
    let processing_known = !t.processing.is_empty();
    let within = |allowed: &Region| {
        processing_known && t.processing.iter().all(|c| allowed.set.contains(*c))
    };
    let holds = |c: &Certification| match (t.certifications.get(c), at) {
        (None, _) => false,
        (Some(Some(expiry)), At::Day(day)) => day <= *expiry,
        (Some(_), _) => true,
    };
    let inside_eea = || processing_known && t.processing.iter().all(|c| c.in_eea());
    let checks = [
        (
            Rule::ProcessingIn,
            r.processing_in.as_ref().is_none_or(within),
        ),
        (
            Rule::JurisdictionIn,
            r.jurisdiction_in
                .as_ref()
                .is_none_or(|ok| t.jurisdiction.is_some_and(|c| ok.set.contains(c))),
        ),
        (
            Rule::Dpa,
            r.dpa
                .as_ref()
                .is_none_or(|ok| t.dpa.is_some_and(|d| ok.contains(&d))),
        ),
        (
            Rule::NoTraining,
            !r.no_training || t.trains_on_data == Some(false),
        ),
        (
            Rule::MaxRetentionDays,
            r.max_retention_days
                .is_none_or(|max| t.retention_days.is_some_and(|d| d <= max)),
        ),
        (Rule::Certifications, r.certifications.iter().all(holds)),
        (
            Rule::Transfer,
            r.transfer
                .as_ref()
                .is_none_or(|ok| inside_eea() || t.transfer.is_some_and(|x| ok.contains(&x))),
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(rule, passed)| (!passed).then_some(rule))
}

/// Plain words for why `p` fails `rule` (of `layer`, or of its own terms).
pub fn detail(rule: Rule, layer: Option<&Layer>, p: &Provider, model: &str, at: At) -> String {
    let t = &p.terms;
    let r = layer.map(|l| &l.rules);
    let who = layer.map_or("provider", |l| l.kind.as_str());
    let list = |items: &mut dyn Iterator<Item = String>| {
        let v: Vec<String> = items.collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let unknown = "unknown";
    match rule {
        Rule::StaleTerms => format!(
            "data terms were due for review by {}; until they are reviewed the provider satisfies no rule",
            fmt_opt(t.review_by)
        ),
        Rule::NotYetEffective => format!("data terms take effect on {}", fmt_opt(t.effective_from)),
        Rule::Excluded => format!("the {who} policy excludes provider `{}`", p.id),
        Rule::ModelNotAllowed => {
            let globs = layer
                .and_then(|l| l.models.as_ref())
                .map(|g| list(&mut g.iter().map(|p| p.as_str().to_owned())))
                .unwrap_or_default();
            format!("model `{model}` is not in the {who} policy's models.allow ({globs})")
        }
        Rule::ProcessingIn => {
            let allowed = r.and_then(|r| r.processing_in.as_ref());
            if t.processing.is_empty() {
                "the provider does not declare where it processes data".to_owned()
            } else {
                let outside = list(
                    &mut t
                        .processing
                        .iter()
                        .filter(|c| allowed.is_some_and(|a| !a.set.contains(**c)))
                        .map(|c| c.to_string()),
                );
                format!(
                    "processes data in {outside}, outside {}",
                    allowed.map(|a| a.names.join(", ")).unwrap_or_default()
                )
            }
        }
        Rule::JurisdictionIn => format!(
            "jurisdiction {} is not within {}",
            t.jurisdiction.map_or(unknown.to_owned(), |c| c.to_string()),
            r.and_then(|r| r.jurisdiction_in.as_ref())
                .map(|a| a.names.join(", "))
                .unwrap_or_default()
        ),
        Rule::Dpa => format!(
            "DPA is {}; accepted: {}",
            t.dpa.map_or(unknown, |d| d.as_str()),
            list(
                &mut r
                    .and_then(|r| r.dpa.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|d| d.as_str().to_owned())
            )
        ),
        Rule::NoTraining => match t.trains_on_data {
            Some(true) => "the provider trains on customer data".to_owned(),
            _ => "the provider does not state that it does not train on customer data".to_owned(),
        },
        Rule::MaxRetentionDays => format!(
            "retains data for {} days; at most {} allowed",
            t.retention_days
                .map_or(unknown.to_owned(), |d| d.to_string()),
            r.and_then(|r| r.max_retention_days)
                .map_or(unknown.to_owned(), |d| d.to_string())
        ),
        Rule::Certifications => {
            let missing = list(
                &mut r
                    .into_iter()
                    .flat_map(|r| r.certifications.iter())
                    .filter_map(|c| match (t.certifications.get(c), at) {
                        (None, _) => Some(format!("{c} (not held)")),
                        (Some(Some(exp)), At::Day(day)) if day > *exp => {
                            Some(format!("{c} (expired {exp})"))
                        }
                        _ => None,
                    }),
            );
            format!("missing certification: {missing}")
        }
        Rule::Credential => "the gateway has no credential for this provider".to_owned(),
        Rule::Transfer => {
            let outside = list(
                &mut t
                    .processing
                    .iter()
                    .filter(|c| !c.in_eea())
                    .map(|c| c.to_string()),
            );
            let outside = if t.processing.is_empty() {
                unknown.to_owned()
            } else {
                outside
            };
            format!(
                "processing outside the EEA ({outside}) relies on {}; accepted: {}",
                t.transfer.map_or("no declared safeguard", |x| x.as_str()),
                list(
                    &mut r
                        .and_then(|r| r.transfer.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|x| x.as_str().to_owned())
                )
            )
        }
    }
}

fn fmt_opt(d: Option<Date>) -> String {
    d.map_or_else(|| "an unknown date".to_owned(), |d| d.to_string())
}
