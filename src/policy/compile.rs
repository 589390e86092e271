//! Compiles providers, the floor and tenant policies into a [`Table`]: for each
//! (tenant, project, model) the providers that pass every undated rule, in
//! routing order, each with the window of days on which it is eligible. The
//! request path then answers "who may serve this" with two hash lookups
//! (tenant, model), a binary search for a project, and a date comparison per
//! candidate. The layout keeps that to two or three cache misses however many
//! tenants there are: short names and each scope's route row pointer sit in
//! the hash bucket, and all candidate lists share one array.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::region::Regions;
use super::rules::{self, At, Window};
use super::terms::{Layer, Provider, ProviderId, TenantPolicy};

/// The compiled policy of every tenant. Immutable; reloads build a new one.
#[derive(Debug)]
pub struct Table {
    pub(super) providers: Box<[Provider]>,
    pub(super) models: HashMap<Box<str>, usize>,
    pub(super) model_names: Box<[std::sync::Arc<str>]>,
    /// For each model index, the indexes of the providers serving it, by (priority, id).
    pub(super) serving: Box<[Box<[u32]>]>,
    pub(super) floor: Option<Layer>,
    pub(super) tenants: HashMap<Name, Tenant>,
    /// Every distinct candidate list, end to end: a [`Route`] is a range of it.
    pub(super) candidates: Box<[Candidate]>,
    pub(super) regions: Regions,
}

/// One tenant: a scope for itself and each project, and its policy (for
/// explain). What a lookup reads comes first and stays small, so that the
/// hash bucket holds it: the policy is boxed.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) base: Scope,
    /// Sorted by name.
    pub(super) projects: Box<[(Name, Scope)]>,
    pub(super) policy: Box<TenantPolicy>,
}

/// The routes of one (tenant, project), indexed by model.
#[derive(Debug)]
pub(super) struct Scope {
    pub(super) routes: Box<[Route]>,
    pub(super) version: PolicyVersion,
}

/// The providers passing every undated rule for one model, in routing order
/// (may be none), as a range of `Table::candidates`; or, when some layer's
/// `models.allow` excludes the model, [`Route::NOT_ALLOWED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Route {
    start: u32,
    len: u32,
}

/// A tenant or project name: up to 24 bytes (most names) are kept inline, in
/// the hash bucket or the project list, so that a lookup compares them
/// without following a pointer to somewhere else in memory.
pub(super) type Name = compact_str::CompactString;

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
        let mut model_names: Vec<std::sync::Arc<str>> = Vec::new();
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
            tenants: HashMap::with_capacity(tenants.len()),
            candidates: Box::default(),
            regions,
        };
        let mut interner = Interner::default();
        for policy in tenants {
            let base = table.compile_scope(&policy, None, &mut interner);
            // `policy.projects` is a BTreeMap: already sorted by name.
            let projects = policy
                .projects
                .iter()
                .map(|(name, layer)| {
                    let scope = table.compile_scope(&policy, Some(layer), &mut interner);
                    (Name::new(name.as_str()), scope)
                })
                .collect();
            let tenant = Tenant {
                base,
                projects,
                policy: Box::new(policy),
            };
            table
                .tenants
                .insert(Name::new(tenant.policy.tenant.as_str()), tenant);
        }
        table.candidates = interner.arena.into();
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

        let mut cands: Vec<Candidate> = Vec::new();
        let routes = self
            .model_names
            .iter()
            .zip(self.serving.iter())
            .map(|(model, serving)| {
                if !layers.iter().all(|l| l.allows_model(model)) {
                    return Route::NOT_ALLOWED;
                }
                cands.clear();
                cands.extend(serving.iter().filter_map(|&i| {
                    windows[i as usize].map(|window| Candidate {
                        provider: i,
                        window,
                    })
                }));
                cands.sort_by_key(|c| rank(c.provider));
                interner.intern(&cands)
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
        let mut v: Vec<&TenantPolicy> = self.tenants.values().map(|t| &*t.policy).collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    /// One tenant's policy.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantPolicy> {
        self.tenants.get(tenant).map(|t| &*t.policy)
    }

    /// The configured name of a model some provider serves, shared (usage
    /// records and labels hold it without a copy); `None` if none does.
    pub fn served_model(&self, model: &str) -> Option<&std::sync::Arc<str>> {
        self.models.get(model).map(|&i| &self.model_names[i])
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

// === impl Route ===

impl Route {
    /// Some layer's `models.allow` excludes the model.
    pub(super) const NOT_ALLOWED: Route = Route {
        start: u32::MAX,
        len: 0,
    };

    /// The candidates, in routing order, or `None` when the model is not allowed.
    pub(super) fn candidates(self, all: &[Candidate]) -> Option<&[Candidate]> {
        if self == Self::NOT_ALLOWED {
            return None;
        }
        let start = self.start as usize;
        all.get(start..start + self.len as usize)
    }
}

// === impl Interner ===

/// Stores each distinct candidate list once: many scopes compile to the same
/// ones, and one array keeps them close together.
#[derive(Default)]
struct Interner {
    arena: Vec<Candidate>,
    lists: HashMap<Box<[Candidate]>, Route>,
}

impl Interner {
    fn intern(&mut self, cands: &[Candidate]) -> Route {
        if let Some(&route) = self.lists.get(cands) {
            return route;
        }
        let (Ok(start), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(cands.len()))
        else {
            // Past 4 billion candidates (48 GB of them) a range no longer
            // fits: deny (no candidate) rather than point at a wrong list.
            return Route { start: 0, len: 0 };
        };
        let route = Route { start, len };
        self.arena.extend_from_slice(cands);
        self.lists.insert(cands.into(), route);
        route
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

    /// The 12 hex digits, written on the stack.
    fn hex(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        // 6 bytes always fit 12 digits.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }

    /// The version as a shared string, made with one allocation (for the
    /// exchange, its response header and its usage record).
    pub fn shared(&self) -> std::sync::Arc<str> {
        let hex = self.hex();
        std::str::from_utf8(&hex).map_or_else(|_| "".into(), std::sync::Arc::from)
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyVersion({self})")
    }
}
