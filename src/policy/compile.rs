//! Compiles providers, the floor and tenant policies into a [`Table`]: for each
//! (tenant, project, model) the providers that pass every undated rule, in
//! routing order, each with the window of days on which it is eligible. The
//! request path then answers "who may serve this" with two hash lookups and a
//! date comparison per candidate.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::region::Regions;
use super::rules::{self, At, Window};
use super::terms::{Layer, Provider, ProviderId, TenantPolicy};

/// The compiled policy of every tenant. Immutable; reloads build a new one.
#[derive(Debug)]
pub struct Table {
    pub(super) providers: Box<[Provider]>,
    pub(super) models: HashMap<Box<str>, usize>,
    pub(super) model_names: Box<[Box<str>]>,
    /// For each model index, the indexes of the providers serving it, by (priority, id).
    pub(super) serving: Box<[Box<[u32]>]>,
    pub(super) floor: Option<Layer>,
    pub(super) tenants: HashMap<Box<str>, Tenant>,
    pub(super) regions: Regions,
}

/// One tenant: its policy (for explain) and a scope for itself and each project.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) policy: TenantPolicy,
    pub(super) base: Scope,
    pub(super) projects: HashMap<Box<str>, Scope>,
}

/// The routes of one (tenant, project), indexed by model.
#[derive(Debug)]
pub(super) struct Scope {
    pub(super) version: PolicyVersion,
    pub(super) routes: Box<[Route]>,
}

#[derive(Debug, Clone)]
pub(super) enum Route {
    /// Some layer's `models.allow` excludes the model.
    NotAllowed,
    /// Providers passing every undated rule, in routing order (may be empty).
    Candidates(Arc<[Candidate]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Candidate {
    pub(super) provider: u32,
    pub(super) window: Window,
}

/// A short hash of the effective policy (floor, tenant, project, routing order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyVersion([u8; 6]);

// === impl Table ===

impl Table {
    /// Compiles validated inputs. References to unknown providers (in
    /// `exclude_providers` or `routing.order`) simply match nothing; the
    /// configuration loader rejects them before this point.
    pub fn compile(
        providers: Vec<Provider>,
        floor: Option<Layer>,
        tenants: Vec<TenantPolicy>,
        regions: Regions,
    ) -> Table {
        let mut providers = providers;
        providers.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));

        let mut models: HashMap<Box<str>, usize> = HashMap::new();
        let mut model_names: Vec<Box<str>> = Vec::new();
        let mut serving: Vec<Vec<u32>> = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            for m in &p.models {
                let idx = *models.entry(m.as_str().into()).or_insert_with(|| {
                    model_names.push(m.as_str().into());
                    serving.push(Vec::new());
                    model_names.len() - 1
                });
                if serving[idx].last() != Some(&(i as u32)) {
                    serving[idx].push(i as u32);
                }
            }
        }

        let mut table = Table {
            providers: providers.into(),
            models,
            model_names: model_names.into(),
            serving: serving.into_iter().map(Into::into).collect(),
            floor,
            tenants: HashMap::new(),
            regions,
        };
        let mut interner = Interner::default();
        for policy in tenants {
            let base = table.compile_scope(&policy, None, &mut interner);
            let projects = policy
                .projects
                .iter()
                .map(|(name, layer)| {
                    let scope = table.compile_scope(&policy, Some(layer), &mut interner);
                    (name.as_str().into(), scope)
                })
                .collect();
            let tenant = Tenant {
                policy,
                base,
                projects,
            };
            table
                .tenants
                .insert(tenant.policy.tenant.as_str().into(), tenant);
        }
        table
    }

    fn compile_scope(
        &self,
        policy: &TenantPolicy,
        project: Option<&Layer>,
        interner: &mut Interner,
    ) -> Scope {
        let layers: Vec<&Layer> = self
            .floor
            .iter()
            .chain(Some(&policy.layer))
            .chain(project)
            .collect();

        // Model-independent: which providers pass every data rule and exclusion.
        let windows: Vec<Option<Window>> = self
            .providers
            .iter()
            .map(|p| {
                let passes = layers.iter().all(|l| {
                    !l.rules.exclude_providers.contains(&p.id)
                        && rules::data_failures(&l.rules, p, At::AnyDay)
                            .next()
                            .is_none()
                });
                passes.then(|| rules::window(p, layers.iter().copied()))
            })
            .collect();

        // Routing order: the tenant's `routing.order` first, then (priority, id),
        // which is the order of `self.providers`.
        let rank = |idx: u32| -> (usize, u32) {
            let id = &self.providers[idx as usize].id;
            let pos = policy.order.iter().position(|o| o == id);
            (pos.unwrap_or(usize::MAX), idx)
        };

        let routes = self
            .model_names
            .iter()
            .zip(self.serving.iter())
            .map(|(model, serving)| {
                if !layers.iter().all(|l| l.allows_model(model)) {
                    return Route::NotAllowed;
                }
                let mut cands: Vec<Candidate> = serving
                    .iter()
                    .filter_map(|&i| {
                        windows[i as usize].map(|window| Candidate {
                            provider: i,
                            window,
                        })
                    })
                    .collect();
                cands.sort_by_key(|c| rank(c.provider));
                Route::Candidates(interner.intern(cands))
            })
            .collect();

        Scope {
            version: PolicyVersion::of(&layers, &policy.order),
            routes,
        }
    }

    /// Every provider, by (priority, id).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Looks a provider up by id.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id.as_str() == id)
    }

    /// Every public model name served by at least one provider, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.model_names.iter().map(|m| &**m).collect();
        v.sort_unstable();
        v
    }

    /// Every tenant's policy, sorted by tenant name.
    pub fn tenants(&self) -> Vec<&TenantPolicy> {
        let mut v: Vec<&TenantPolicy> = self.tenants.values().map(|t| &t.policy).collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    /// One tenant's policy.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantPolicy> {
        self.tenants.get(tenant).map(|t| &t.policy)
    }

    /// Whether any provider serves this public model name.
    pub fn serves(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// The platform floor, if there is one.
    pub fn floor(&self) -> Option<&Layer> {
        self.floor.as_ref()
    }

    /// The region groups known to this table (for parsing request layers).
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// Whether any provider has this id (for validating request layers).
    pub fn has_provider(&self, id: &str) -> bool {
        self.provider(id).is_some()
    }
}

// === impl Interner ===

/// Shares identical candidate lists: many tenants compile to the same ones.
#[derive(Default)]
struct Interner {
    lists: HashMap<Vec<Candidate>, Arc<[Candidate]>>,
}

impl Interner {
    fn intern(&mut self, cands: Vec<Candidate>) -> Arc<[Candidate]> {
        if let Some(shared) = self.lists.get(&cands) {
            return shared.clone();
        }
        let shared: Arc<[Candidate]> = cands.as_slice().into();
        self.lists.insert(cands, shared.clone());
        shared
    }
}

// === impl PolicyVersion ===

impl PolicyVersion {
    fn of(layers: &[&Layer], order: &[ProviderId]) -> Self {
        let mut h = Sha256::new();
        for l in layers {
            h.update(l.canonical().as_bytes());
            h.update(b"\n");
        }
        h.update(b"order=");
        for id in order {
            h.update(id.as_str().as_bytes());
            h.update(b",");
        }
        let digest = h.finalize();
        let mut v = [0u8; 6];
        v.copy_from_slice(&digest[..6]);
        Self(v)
    }

    /// Folds a per-request layer into the version, so that a narrowed request
    /// reports a version of its own.
    pub fn with(self, extra: &Layer) -> Self {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(extra.canonical().as_bytes());
        let digest = h.finalize();
        let mut v = [0u8; 6];
        v.copy_from_slice(&digest[..6]);
        Self(v)
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyVersion({self})")
    }
}
