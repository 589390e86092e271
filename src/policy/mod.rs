//! The policy engine. Pure: no I/O, no clock, no logging. The caller passes
//! the day; configuration loading lives in `config`, which builds these types.
//!
//! A provider is eligible for (tenant, project, model) on a day when it serves
//! the model, every layer (floor, tenant, project, request) allows the model,
//! no layer excludes it, its terms are in effect and not past review, and it
//! passes every data rule of every layer. Anything missing fails.

mod compile;
mod decision;
pub mod region;
mod require;
pub mod rules;
pub mod terms;

pub use compile::{PolicyVersion, Table};
pub use decision::{Decision, ExplainError, Explanation, Routes, Verdict};
pub use region::{Country, RegionError, RegionSet, Regions};
pub use require::{RequireError, parse_require};
pub use rules::{At, Failure, Rule, Window};
pub use terms::{
    Certification, Date, Dpa, Layer, LayerKind, Limits, Provider, ProviderId, Region, Rules,
    TenantPolicy, Terms, Transfer,
};

#[cfg(test)]
mod tests;
