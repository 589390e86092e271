//! The typed, already validated inputs of the engine: a provider's data terms
//! and the rule layers (floor, tenant, project, request) that constrain them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use time::Date;

use super::region::{Country, RegionSet};

/// The certification names cordon knows; anything else must start with `x-`.
pub const KNOWN_CERTIFICATIONS: [&str; 11] = [
    "iso27001",
    "iso27017",
    "iso27018",
    "iso42001",
    "soc2-type1",
    "soc2-type2",
    "hds",
    "secnumcloud",
    "c5",
    "pci-dss",
    "hipaa-baa",
];

/// A provider's stable id, as used in policies, logs and metrics.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderId(Arc<str>);

/// The status of the data-processing agreement with a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dpa {
    Signed,
    ByReference,
    Pending,
    None,
}

/// The safeguard under which a provider processes data outside the EEA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transfer {
    Adequacy,
    Dpf,
    Scc,
    Bcr,
    None,
}

/// A certification name from the known vocabulary, or a custom `x-` name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Certification(Box<str>);

/// A value that is not one of an enumeration's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of {expected}")]
pub struct UnknownName {
    pub value: String,
    pub expected: &'static str,
}

/// A provider's data terms, as published in its DPA. Every attribute may be
/// missing; a missing attribute never satisfies a rule about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub entity: Option<String>,
    pub jurisdiction: Option<Country>,
    /// Every country where request content may be processed; empty = unknown.
    pub processing: Vec<Country>,
    pub dpa: Option<Dpa>,
    pub trains_on_data: Option<bool>,
    pub retention_days: Option<u32>,
    /// Certifications held, each with its expiry date if one was given.
    pub certifications: BTreeMap<Certification, Option<Date>>,
    pub transfer: Option<Transfer>,
    pub purpose: Option<String>,
    pub evidence: Option<String>,
    pub effective_from: Option<Date>,
    pub review_by: Option<Date>,
}

/// What the engine needs to know about a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub id: ProviderId,
    /// Lower is preferred when a policy gives no order.
    pub priority: i64,
    /// Public model names this provider serves.
    pub models: Vec<String>,
    pub terms: Terms,
}

/// The data rules of one layer. Absent rules are unconstrained, except
/// `no_training`, which each layer defaults to `true` on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub processing_in: Option<Region>,
    pub jurisdiction_in: Option<Region>,
    pub dpa: Option<Vec<Dpa>>,
    pub no_training: bool,
    pub max_retention_days: Option<u32>,
    pub certifications: Vec<Certification>,
    pub transfer: Option<Vec<Transfer>>,
    pub exclude_providers: Vec<ProviderId>,
}

/// A resolved region list that remembers how it was written, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub names: Vec<String>,
    pub set: RegionSet,
}

/// Which layer a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerKind {
    Floor,
    Tenant,
    Project,
    Request,
}

/// One layer of policy: data rules plus an optional model allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub kind: LayerKind,
    pub rules: Rules,
    /// Globs over public model names; `None` allows every model.
    pub models: Option<Vec<glob::Pattern>>,
}

/// A tenant's policy with its projects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPolicy {
    pub tenant: String,
    pub description: Option<String>,
    pub layer: Layer,
    /// Preferred providers among the compliant ones, in order.
    pub order: Vec<ProviderId>,
    pub failover: bool,
    pub limits: Limits,
    pub projects: BTreeMap<String, Layer>,
}

/// A tenant's rate limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

// === impl ProviderId ===

impl ProviderId {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string (usage records hold it without a copy).
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

// === impl Dpa ===

impl Dpa {
    pub const ALL: [Dpa; 4] = [Dpa::Signed, Dpa::ByReference, Dpa::Pending, Dpa::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Dpa::Signed => "signed",
            Dpa::ByReference => "by-reference",
            Dpa::Pending => "pending",
            Dpa::None => "none",
        }
    }
}

impl FromStr for Dpa {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dpa::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownName {
                value: s.to_owned(),
                expected: "signed, by-reference, pending, none",
            })
    }
}

// === impl Transfer ===

impl Transfer {
    pub const ALL: [Transfer; 5] = [
        Transfer::Adequacy,
        Transfer::Dpf,
        Transfer::Scc,
        Transfer::Bcr,
        Transfer::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::Adequacy => "adequacy",
            Transfer::Dpf => "dpf",
            Transfer::Scc => "scc",
            Transfer::Bcr => "bcr",
            Transfer::None => "none",
        }
    }
}

impl FromStr for Transfer {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transfer::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName {
                value: s.to_owned(),
                expected: "adequacy, dpf, scc, bcr, none",
            })
    }
}

// === impl Certification ===

impl Certification {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Certification {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let custom = s.len() > 2
            && s.starts_with("x-")
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if KNOWN_CERTIFICATIONS.contains(&s) || custom {
            Ok(Self(s.into()))
        } else {
            Err(UnknownName {
                value: s.to_owned(),
                expected: "iso27001, iso27017, iso27018, iso42001, soc2-type1, soc2-type2, hds, \
                           secnumcloud, c5, pci-dss, hipaa-baa, or a custom name starting with `x-`",
            })
        }
    }
}

impl fmt::Display for Certification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Certification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

// === impl Rules ===

impl Default for Rules {
    /// A layer that says nothing: only the `no_training = true` default.
    fn default() -> Self {
        Self {
            processing_in: None,
            jurisdiction_in: None,
            dpa: None,
            no_training: true,
            max_retention_days: None,
            certifications: Vec::new(),
            transfer: None,
            exclude_providers: Vec::new(),
        }
    }
}

impl Rules {
    /// No constraint at all, not even `no_training`: the base of the request layer.
    pub fn unconstrained() -> Self {
        Self {
            no_training: false,
            ..Self::default()
        }
    }
}

// === impl LayerKind ===

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Floor => "floor",
            LayerKind::Tenant => "tenant",
            LayerKind::Project => "project",
            LayerKind::Request => "request",
        }
    }
}

// === impl Layer ===

impl Layer {
    /// A layer with the defaults of a policy file and every model allowed.
    pub fn empty(kind: LayerKind) -> Self {
        Self {
            kind,
            rules: Rules::default(),
            models: None,
        }
    }

    /// A canonical text of this layer, stable across releases and toolchains,
    /// for hashing into the policy version. Sets are written sorted.
    pub fn canonical(&self) -> String {
        use std::fmt::Write;
        let r = &self.rules;
        let mut out = format!("layer={};", self.kind.as_str());
        let region = |out: &mut String, name: &str, reg: &Option<Region>| {
            if let Some(reg) = reg {
                let _ = write!(out, "{name}=");
                for w in reg.set.words() {
                    let _ = write!(out, "{w:016x}");
                }
                out.push(';');
            }
        };
        region(&mut out, "processing_in", &r.processing_in);
        region(&mut out, "jurisdiction_in", &r.jurisdiction_in);
        let sorted = |mut v: Vec<&str>| {
            v.sort_unstable();
            v.dedup();
            v.join(",")
        };
        if let Some(d) = &r.dpa {
            let _ = write!(
                out,
                "dpa={};",
                sorted(d.iter().map(|d| d.as_str()).collect())
            );
        }
        let _ = write!(out, "no_training={};", r.no_training);
        if let Some(m) = r.max_retention_days {
            let _ = write!(out, "max_retention_days={m};");
        }
        let certs = sorted(r.certifications.iter().map(|c| c.as_str()).collect());
        let _ = write!(out, "certifications={certs};");
        if let Some(t) = &r.transfer {
            let _ = write!(
                out,
                "transfer={};",
                sorted(t.iter().map(|t| t.as_str()).collect())
            );
        }
        let excluded = sorted(r.exclude_providers.iter().map(|p| p.as_str()).collect());
        let _ = write!(out, "exclude_providers={excluded};");
        if let Some(globs) = &self.models {
            let _ = write!(
                out,
                "models={};",
                sorted(globs.iter().map(|g| g.as_str()).collect())
            );
        }
        out
    }

    /// Whether this layer's allow-list admits `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(globs) => globs.iter().any(|g| g.matches(model)),
        }
    }
}
