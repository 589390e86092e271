//! Tests of the policy engine against SPEC §2.2, read to the letter.
//!
//! The first half checks each rule on hand-made providers, including every
//! fail-closed case (missing attributes, an empty processing list, both ends of
//! every date), in every layer a rule can come from, and the decision variants,
//! request layers and routing order.
//!
//! The second half generates random providers, floors, tenant policies,
//! projects, request headers and days, and checks the engine against
//! [`naive_failures`]: a deliberately simple evaluator written from the
//! specification alone. It shares no code with `rules.rs`: it resolves regions
//! from its own country lists, matches model globs itself and counts days as
//! plain integers.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use time::Month;

use super::*;

// ============================================================================
// Fixtures
// ============================================================================

const MODEL: &str = "gpt-4o";
const TODAY: u8 = 15;

/// A day of June 2026.
fn day(d: u8) -> Date {
    Date::from_calendar_date(2026, Month::June, d).unwrap()
}

fn country(code: &str) -> Country {
    Country::parse(code).unwrap()
}

fn countries(codes: &[&str]) -> Vec<Country> {
    codes.iter().map(|c| country(c)).collect()
}

/// The built-in region groups, built once: building them parses every code.
static REGIONS: LazyLock<Regions> = LazyLock::new(Regions::default);

fn regions() -> Regions {
    REGIONS.clone()
}

fn region<S: AsRef<str>>(names: &[S]) -> Region {
    Region {
        names: names.iter().map(|s| s.as_ref().to_owned()).collect(),
        set: REGIONS.resolve_all(names).unwrap(),
    }
}

fn cert(name: &str) -> Certification {
    name.parse().unwrap()
}

fn pid(id: &str) -> ProviderId {
    ProviderId::new(id)
}

fn globs(patterns: &[&str]) -> Option<Vec<glob::Pattern>> {
    Some(
        patterns
            .iter()
            .map(|p| glob::Pattern::new(p).unwrap())
            .collect(),
    )
}

/// A provider that passes every rule of [`strict`] on `TODAY`.
fn compliant(id: &str) -> Provider {
    Provider {
        id: pid(id),
        priority: 0,
        models: vec![MODEL.to_owned(), "gpt-4o-mini".to_owned()],
        terms: Terms {
            entity: Some("Example SAS".to_owned()),
            jurisdiction: Some(country("FR")),
            processing: countries(&["FR", "DE"]),
            dpa: Some(Dpa::Signed),
            trains_on_data: Some(false),
            retention_days: Some(0),
            certifications: BTreeMap::from([(cert("iso27001"), None)]),
            transfer: None,
            ..Terms::default()
        },
    }
}

/// Every data rule at once.
fn strict() -> Rules {
    Rules {
        processing_in: Some(region(&["EEA"])),
        jurisdiction_in: Some(region(&["EU"])),
        dpa: Some(vec![Dpa::Signed]),
        no_training: true,
        max_retention_days: Some(0),
        certifications: vec![cert("iso27001")],
        transfer: Some(vec![Transfer::Scc]),
        exclude_providers: vec![pid("someone-else")],
    }
}

fn open() -> Rules {
    Rules::unconstrained()
}

fn layer(kind: LayerKind, rules: Rules) -> Layer {
    Layer {
        kind,
        rules,
        models: None,
    }
}

fn policy(layer: Layer) -> TenantPolicy {
    TenantPolicy {
        tenant: "acme".to_owned(),
        description: None,
        layer,
        order: Vec::new(),
        failover: true,
        limits: Limits::default(),
        projects: BTreeMap::new(),
    }
}

const KINDS: [LayerKind; 4] = [
    LayerKind::Floor,
    LayerKind::Tenant,
    LayerKind::Project,
    LayerKind::Request,
];

/// A decision with the borrowed table left out, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Route(Vec<String>),
    ModelNotServed,
    ModelNotAllowed,
    UnknownTenant,
    UnknownProject,
}

fn outcome(d: Decision<'_>) -> Outcome {
    match d {
        Decision::Route(r) => Outcome::Route(r.eligible().map(|p| p.id.to_string()).collect()),
        Decision::ModelNotServed => Outcome::ModelNotServed,
        Decision::ModelNotAllowed => Outcome::ModelNotAllowed,
        Decision::UnknownTenant => Outcome::UnknownTenant,
        Decision::UnknownProject => Outcome::UnknownProject,
    }
}

fn route(ids: &[&str]) -> Outcome {
    Outcome::Route(ids.iter().map(|s| s.to_string()).collect())
}

/// Puts `layer` in the position of its kind (every other layer unconstrained),
/// judges `providers` for `model` on `today` with both `decide` and `explain`,
/// checks that they agree, and returns the decision and the explanation.
fn judge_all(
    providers: &[Provider],
    under_test: &Layer,
    model: &str,
    today: Date,
) -> (Outcome, Explanation) {
    let kind = under_test.kind;
    let pick = |k: LayerKind| {
        if k == kind {
            under_test.clone()
        } else {
            layer(k, open())
        }
    };
    let mut tenant = policy(pick(LayerKind::Tenant));
    let project = (kind == LayerKind::Project).then(|| {
        tenant.projects.insert("proj".to_owned(), pick(kind));
        "proj"
    });
    let extra = (kind == LayerKind::Request).then_some(under_test);
    let table = Table::compile(
        providers.to_vec(),
        Some(pick(LayerKind::Floor)),
        vec![tenant],
        regions(),
    );
    let decided = outcome(table.decide("acme", project, model, today, extra));
    let ex = table.explain("acme", project, model, today, extra).unwrap();
    for v in &ex.providers {
        assert_eq!(v.eligible, v.failed_rules.is_empty(), "{v:?}");
        for f in &v.failed_rules {
            assert!(!f.detail.is_empty(), "{f:?} has no detail");
        }
    }
    match &decided {
        Outcome::Route(ids) => assert_eq!(&ex.eligible, ids, "explain and decide disagree"),
        _ => assert!(ex.eligible.is_empty(), "{ex:?}"),
    }
    (decided, ex)
}

/// Judges the single provider `p` for `MODEL` under `rules` in a layer of
/// `kind`, and returns each failed rule with the layer it came from.
fn judge_in(
    kind: LayerKind,
    p: &Provider,
    rules: &Rules,
    today: Date,
) -> Vec<(Option<LayerKind>, Rule)> {
    let (decided, ex) = judge_all(
        std::slice::from_ref(p),
        &layer(kind, rules.clone()),
        MODEL,
        today,
    );
    let [v] = ex.providers.as_slice() else {
        panic!("expected one verdict: {ex:?}");
    };
    assert_eq!(v.id, p.id.as_str());
    let eligible = decided == route(&[p.id.as_str()]);
    assert!(eligible || decided == route(&[]), "{decided:?}");
    assert_eq!(v.eligible, eligible);
    v.failed_rules.iter().map(|f| (f.layer, f.rule)).collect()
}

/// The rules `p` fails under `rules` on `today`, which must be the same
/// whichever layer (floor, tenant, project, request) the rules are in; each
/// rule must be reported for that layer (dated rules for none).
fn fails_on(p: &Provider, rules: &Rules, today: Date) -> Vec<Rule> {
    let mut result: Option<Vec<Rule>> = None;
    for kind in KINDS {
        let mut failed = Vec::new();
        for (from, rule) in judge_in(kind, p, rules, today) {
            match rule {
                Rule::StaleTerms | Rule::NotYetEffective => assert_eq!(from, None, "{rule}"),
                _ => assert_eq!(from, Some(kind), "{rule} reported for the wrong layer"),
            }
            failed.push(rule);
        }
        if let Some(previous) = &result {
            assert_eq!(previous, &failed, "the {kind:?} layer judges differently");
        }
        result = Some(failed);
    }
    result.unwrap_or_default()
}

fn fails(p: &Provider, rules: &Rules) -> Vec<Rule> {
    fails_on(p, rules, day(TODAY))
}

// ============================================================================
// One rule at a time
// ============================================================================

#[test]
fn compliant_provider_passes_every_rule_in_every_layer() {
    let p = compliant("a");
    assert_eq!(fails(&p, &strict()), []);
    assert_eq!(fails(&p, &open()), []);
    assert_eq!(fails(&p, &Rules::default()), []);
}

#[test]
fn a_provider_that_declares_nothing_fails_every_data_rule() {
    let p = Provider {
        terms: Terms::default(),
        ..compliant("a")
    };
    assert_eq!(
        fails(&p, &strict()),
        [
            Rule::ProcessingIn,
            Rule::JurisdictionIn,
            Rule::Dpa,
            Rule::NoTraining,
            Rule::MaxRetentionDays,
            Rule::Certifications,
            Rule::Transfer,
        ]
    );
    // Absent rules are unconstrained: only `no_training` defaults to true.
    assert_eq!(fails(&p, &open()), []);
    assert_eq!(fails(&p, &Rules::default()), [Rule::NoTraining]);
}

#[test]
fn processing_in_requires_every_country_inside() {
    let eea = Rules {
        processing_in: Some(region(&["EEA"])),
        ..open()
    };
    let mut p = compliant("a");
    for (processing, passes) in [
        (&["FR", "DE"][..], true),
        (&["FR"], true),
        (&["NO", "IS", "LI"], true),
        (&["FR", "US"], false),
        (&["US", "FR"], false),
        (&["CH"], false),
        (&["GB", "US"], false),
    ] {
        p.terms.processing = countries(processing);
        let expected: &[Rule] = if passes { &[] } else { &[Rule::ProcessingIn] };
        assert_eq!(fails(&p, &eea), expected, "{processing:?}");
    }

    // Codes and groups mix; EU is narrower than EEA.
    let eu_and_ch = Rules {
        processing_in: Some(region(&["EU", "CH"])),
        ..open()
    };
    p.terms.processing = countries(&["FR", "CH"]);
    assert_eq!(fails(&p, &eu_and_ch), []);
    p.terms.processing = countries(&["FR", "NO"]);
    assert_eq!(fails(&p, &eu_and_ch), [Rule::ProcessingIn]);
    p.terms.processing = countries(&["GB"]);
    assert_eq!(fails(&p, &eu_and_ch), [Rule::ProcessingIn]);
    let adequate = Rules {
        processing_in: Some(region(&["ADEQUATE"])),
        ..open()
    };
    assert_eq!(fails(&p, &adequate), []);
    p.terms.processing = countries(&["GB", "US"]);
    assert_eq!(fails(&p, &adequate), [Rule::ProcessingIn]);
}

#[test]
fn processing_in_fails_on_an_empty_processing_list() {
    let mut p = compliant("a");
    p.terms.processing = Vec::new();
    let everywhere: Vec<String> = Country::all().map(|c| c.to_string()).collect();
    for allowed in [region(&["EEA"]), region(&["ADEQUATE"]), region(&everywhere)] {
        let rules = Rules {
            processing_in: Some(allowed),
            ..open()
        };
        assert_eq!(fails(&p, &rules), [Rule::ProcessingIn]);
    }
}

#[test]
fn jurisdiction_in_fails_when_unknown_or_outside() {
    let eu = Rules {
        jurisdiction_in: Some(region(&["EU"])),
        ..open()
    };
    let mut p = compliant("a");
    for (jurisdiction, passes) in [
        (Some("FR"), true),
        (Some("IE"), true),
        (Some("NO"), false),
        (Some("US"), false),
        (None, false),
    ] {
        p.terms.jurisdiction = jurisdiction.map(country);
        let expected: &[Rule] = if passes { &[] } else { &[Rule::JurisdictionIn] };
        assert_eq!(fails(&p, &eu), expected, "{jurisdiction:?}");
    }
    // Without the rule, an unknown jurisdiction is fine.
    assert_eq!(fails(&p, &open()), []);
}

#[test]
fn dpa_fails_when_unknown_or_not_accepted() {
    let accepted = Rules {
        dpa: Some(vec![Dpa::Signed, Dpa::ByReference]),
        ..open()
    };
    let mut p = compliant("a");
    for (dpa, passes) in [
        (Some(Dpa::Signed), true),
        (Some(Dpa::ByReference), true),
        (Some(Dpa::Pending), false),
        (Some(Dpa::None), false),
        (None, false),
    ] {
        p.terms.dpa = dpa;
        let expected: &[Rule] = if passes { &[] } else { &[Rule::Dpa] };
        assert_eq!(fails(&p, &accepted), expected, "{dpa:?}");
    }
    let nothing_accepted = Rules {
        dpa: Some(Vec::new()),
        ..open()
    };
    p.terms.dpa = Some(Dpa::Signed);
    assert_eq!(fails(&p, &nothing_accepted), [Rule::Dpa]);
    p.terms.dpa = None;
    assert_eq!(fails(&p, &open()), []);
}

#[test]
fn no_training_requires_a_declared_false() {
    let required = Rules {
        no_training: true,
        ..open()
    };
    let mut p = compliant("a");
    for (trains, passes) in [(Some(false), true), (Some(true), false), (None, false)] {
        p.terms.trains_on_data = trains;
        let expected: &[Rule] = if passes { &[] } else { &[Rule::NoTraining] };
        assert_eq!(fails(&p, &required), expected, "{trains:?}");
        // A layer that turns it off accepts anything.
        assert_eq!(fails(&p, &open()), [], "{trains:?}");
    }
}

#[test]
fn no_training_defaults_to_true_in_policy_layers_and_false_in_requests() {
    assert!(Rules::default().no_training);
    assert!(Layer::empty(LayerKind::Floor).rules.no_training);
    assert!(!Rules::unconstrained().no_training);

    let mut unknown = compliant("unknown");
    unknown.terms.trains_on_data = None;
    let mut trains = compliant("trains");
    trains.terms.trains_on_data = Some(true);
    let ok = compliant("ok");
    let providers = vec![unknown, trains, ok];

    // An empty floor or tenant policy still requires no training.
    let table = Table::compile(
        providers.clone(),
        Some(Layer::empty(LayerKind::Floor)),
        vec![policy(layer(LayerKind::Tenant, open()))],
        regions(),
    );
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), None)),
        route(&["ok"])
    );
    let ex = table
        .explain("acme", None, MODEL, day(TODAY), None)
        .unwrap();
    for v in ex.providers.iter().filter(|v| v.id != "ok") {
        let failed: Vec<_> = v.failed_rules.iter().map(|f| (f.layer, f.rule)).collect();
        assert_eq!(failed, [(Some(LayerKind::Floor), Rule::NoTraining)]);
    }

    // A request layer that does not mention it leaves it unconstrained...
    let table = Table::compile(
        providers,
        None,
        vec![policy(layer(LayerKind::Tenant, open()))],
        regions(),
    );
    let request = parse_require("max_retention_days=0", &table).unwrap();
    assert!(!request.rules.no_training);
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), Some(&request))),
        route(&["ok", "trains", "unknown"])
    );
    // ...and can turn it on.
    let request = parse_require("no_training=true", &table).unwrap();
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), Some(&request))),
        route(&["ok"])
    );
}

#[test]
fn max_retention_days_fails_when_unknown_or_longer() {
    let mut p = compliant("a");
    for (max, retention, passes) in [
        (30, Some(0), true),
        (30, Some(29), true),
        (30, Some(30), true),
        (30, Some(31), false),
        (30, None, false),
        (0, Some(0), true),
        (0, Some(1), false),
        (0, None, false),
    ] {
        let rules = Rules {
            max_retention_days: Some(max),
            ..open()
        };
        p.terms.retention_days = retention;
        let expected: &[Rule] = if passes {
            &[]
        } else {
            &[Rule::MaxRetentionDays]
        };
        assert_eq!(fails(&p, &rules), expected, "max {max}, {retention:?}");
    }
    p.terms.retention_days = None;
    assert_eq!(fails(&p, &open()), []);
}

#[test]
fn certifications_must_all_be_held() {
    let both = Rules {
        certifications: vec![cert("iso27001"), cert("hds")],
        ..open()
    };
    let mut p = compliant("a");
    p.terms.certifications.clear();
    assert_eq!(fails(&p, &both), [Rule::Certifications]);
    p.terms.certifications.insert(cert("iso27001"), None);
    assert_eq!(fails(&p, &both), [Rule::Certifications]);
    p.terms.certifications.insert(cert("hds"), None);
    assert_eq!(fails(&p, &both), []);
    // Extra certifications do no harm, custom names work like known ones.
    p.terms.certifications.insert(cert("x-internal"), None);
    assert_eq!(fails(&p, &both), []);
    let custom = Rules {
        certifications: vec![cert("x-internal"), cert("x-other")],
        ..open()
    };
    assert_eq!(fails(&p, &custom), [Rule::Certifications]);
}

#[test]
fn a_certification_counts_through_its_expiry_day_and_not_after() {
    let hds = Rules {
        certifications: vec![cert("hds")],
        ..open()
    };
    let mut p = compliant("a");
    p.terms.certifications.insert(cert("hds"), Some(day(TODAY)));
    assert_eq!(fails_on(&p, &hds, day(1)), []);
    assert_eq!(fails_on(&p, &hds, day(TODAY - 1)), []);
    assert_eq!(fails_on(&p, &hds, day(TODAY)), []);
    assert_eq!(fails_on(&p, &hds, day(TODAY + 1)), [Rule::Certifications]);
    assert_eq!(fails_on(&p, &hds, day(30)), [Rule::Certifications]);

    // An expired certification nobody requires changes nothing.
    let iso = Rules {
        certifications: vec![cert("iso27001")],
        ..open()
    };
    assert_eq!(fails_on(&p, &iso, day(30)), []);
    assert_eq!(fails_on(&p, &open(), day(30)), []);
}

#[test]
fn the_earliest_of_review_and_required_expiries_ends_eligibility() {
    let mut p = compliant("a");
    p.terms.review_by = Some(day(20));
    p.terms.certifications = BTreeMap::from([
        (cert("iso27001"), Some(day(12))),
        (cert("hds"), Some(day(25))),
        (cert("c5"), Some(day(3))),
    ]);
    let iso = Rules {
        certifications: vec![cert("iso27001")],
        ..open()
    };
    let hds = Rules {
        certifications: vec![cert("hds")],
        ..open()
    };
    assert_eq!(fails_on(&p, &iso, day(12)), []);
    assert_eq!(fails_on(&p, &iso, day(13)), [Rule::Certifications]);
    // c5 expired long ago but hds is the one required: review_by decides.
    assert_eq!(fails_on(&p, &hds, day(20)), []);
    assert_eq!(fails_on(&p, &hds, day(21)), [Rule::StaleTerms]);
    assert_eq!(
        fails_on(&p, &hds, day(26)),
        [Rule::Certifications, Rule::StaleTerms]
    );
}

#[test]
fn transfer_passes_inside_the_eea_or_with_an_accepted_safeguard() {
    let scc_or_bcr = Rules {
        transfer: Some(vec![Transfer::Scc, Transfer::Bcr]),
        ..open()
    };
    let mut p = compliant("a");
    for (processing, transfer, passes) in [
        (&["FR", "DE"][..], None, true),
        (&["NO", "IS", "LI"], None, true),
        (&["FR"], Some(Transfer::None), true),
        (&["FR", "US"], Some(Transfer::Scc), true),
        (&["FR", "US"], Some(Transfer::Bcr), true),
        (&["FR", "US"], Some(Transfer::Dpf), false),
        (&["FR", "US"], Some(Transfer::Adequacy), false),
        (&["FR", "US"], Some(Transfer::None), false),
        (&["FR", "US"], None, false),
        // Adequate is not the EEA: a safeguard must still be declared.
        (&["CH"], None, false),
        (&["CH"], Some(Transfer::Scc), true),
        // Unknown processing: only a declared, accepted safeguard passes.
        (&[], None, false),
        (&[], Some(Transfer::Dpf), false),
        (&[], Some(Transfer::Scc), true),
    ] {
        p.terms.processing = countries(processing);
        p.terms.transfer = transfer;
        let expected: &[Rule] = if passes { &[] } else { &[Rule::Transfer] };
        assert_eq!(
            fails(&p, &scc_or_bcr),
            expected,
            "{processing:?}, {transfer:?}"
        );
    }
}

#[test]
fn an_empty_processing_list_fails_processing_in_and_transfer() {
    let mut p = compliant("a");
    p.terms.processing = Vec::new();
    let rules = Rules {
        processing_in: Some(region(&["EEA"])),
        transfer: Some(vec![Transfer::Adequacy, Transfer::Scc]),
        ..open()
    };
    assert_eq!(fails(&p, &rules), [Rule::ProcessingIn, Rule::Transfer]);
}

#[test]
fn review_by_day_itself_is_valid_and_the_day_after_is_stale() {
    let mut p = compliant("a");
    p.terms.review_by = Some(day(TODAY));
    for rules in [open(), strict()] {
        assert_eq!(fails_on(&p, &rules, day(1)), []);
        assert_eq!(fails_on(&p, &rules, day(TODAY)), []);
        assert_eq!(fails_on(&p, &rules, day(TODAY + 1)), [Rule::StaleTerms]);
        assert_eq!(fails_on(&p, &rules, day(30)), [Rule::StaleTerms]);
    }
    // Stale terms are reported with anything else that fails, after the
    // reasons no date will fix.
    p.terms.dpa = None;
    assert_eq!(
        fails_on(&p, &strict(), day(TODAY + 1)),
        [Rule::Dpa, Rule::StaleTerms]
    );
}

#[test]
fn effective_from_day_itself_is_eligible_and_the_day_before_is_not() {
    let mut p = compliant("a");
    p.terms.effective_from = Some(day(TODAY));
    for rules in [open(), strict()] {
        assert_eq!(fails_on(&p, &rules, day(1)), [Rule::NotYetEffective]);
        assert_eq!(
            fails_on(&p, &rules, day(TODAY - 1)),
            [Rule::NotYetEffective]
        );
        assert_eq!(fails_on(&p, &rules, day(TODAY)), []);
        assert_eq!(fails_on(&p, &rules, day(TODAY + 1)), []);
    }
}

#[test]
fn effective_and_review_dates_bound_a_window() {
    let mut p = compliant("a");
    p.terms.effective_from = Some(day(10));
    p.terms.review_by = Some(day(12));
    assert_eq!(fails_on(&p, &open(), day(9)), [Rule::NotYetEffective]);
    for d in 10..=12 {
        assert_eq!(fails_on(&p, &open(), day(d)), [], "day {d}");
    }
    assert_eq!(fails_on(&p, &open(), day(13)), [Rule::StaleTerms]);

    // Review due before the terms take effect: never eligible.
    p.terms.effective_from = Some(day(12));
    p.terms.review_by = Some(day(10));
    assert_eq!(fails_on(&p, &open(), day(9)), [Rule::NotYetEffective]);
    assert_eq!(
        fails_on(&p, &open(), day(11)),
        [Rule::StaleTerms, Rule::NotYetEffective]
    );
    assert_eq!(fails_on(&p, &open(), day(13)), [Rule::StaleTerms]);
}

#[test]
fn window_contains_both_ends() {
    let w = Window {
        from: Some(day(10)),
        until: Some(day(12)),
    };
    assert!(!w.contains(day(9)));
    assert!(w.contains(day(10)));
    assert!(w.contains(day(12)));
    assert!(!w.contains(day(13)));
    let forever = Window {
        from: None,
        until: None,
    };
    assert!(forever.contains(day(1)) && forever.contains(day(30)));
}

#[test]
fn exclusion_applies_in_every_layer() {
    let p = compliant("a");
    let excluded = |ids: &[&str]| Rules {
        exclude_providers: ids.iter().map(|i| pid(i)).collect(),
        ..open()
    };
    assert_eq!(fails(&p, &excluded(&["a"])), [Rule::Excluded]);
    assert_eq!(fails(&p, &excluded(&["b", "a"])), [Rule::Excluded]);
    assert_eq!(fails(&p, &excluded(&["b"])), []);
    // Exclusion is reported first, and the other failures still follow.
    let mut q = compliant("a");
    q.terms.dpa = None;
    let rules = Rules {
        dpa: Some(vec![Dpa::Signed]),
        ..excluded(&["a"])
    };
    assert_eq!(fails(&q, &rules), [Rule::Excluded, Rule::Dpa]);
}

#[test]
fn model_globs_apply_in_every_layer() {
    let mut p = compliant("a");
    p.models = vec![
        "gpt-4o".to_owned(),
        "gpt-4o-mini".to_owned(),
        "claude-3".to_owned(),
    ];
    let cases: &[(&[&str], &str, bool)] = &[
        (&["gpt-*"], "gpt-4o", true),
        (&["gpt-*"], "gpt-4o-mini", true),
        (&["gpt-*"], "claude-3", false),
        (&["claude-*"], "gpt-4o", false),
        (&["gpt-4o"], "gpt-4o", true),
        (&["gpt-4o"], "gpt-4o-mini", false),
        (&["gpt-4o*"], "gpt-4o-mini", true),
        (&["claude-*", "gpt-4o-mini"], "gpt-4o-mini", true),
        (&["claude-*", "gpt-4o-mini"], "gpt-4o", false),
        (&["*"], "claude-3", true),
        (&[], "gpt-4o", false),
    ];
    for &(patterns, model, allowed) in cases {
        for kind in KINDS {
            let l = Layer {
                kind,
                rules: open(),
                models: globs(patterns),
            };
            let (decided, ex) = judge_all(std::slice::from_ref(&p), &l, model, day(TODAY));
            let what = format!("{patterns:?} {model} in the {kind:?} layer");
            if allowed {
                assert_eq!(decided, route(&["a"]), "{what}");
            } else {
                // Policy layers decide at compile time (a 404); the request
                // layer can only deny the route.
                let expected = if kind == LayerKind::Request {
                    route(&[])
                } else {
                    Outcome::ModelNotAllowed
                };
                assert_eq!(decided, expected, "{what}");
                let failed: Vec<_> = ex.providers[0]
                    .failed_rules
                    .iter()
                    .map(|f| (f.layer, f.rule))
                    .collect();
                assert_eq!(failed, [(Some(kind), Rule::ModelNotAllowed)], "{what}");
            }
        }
    }
}

#[test]
fn model_allow_lists_intersect_across_layers() {
    let mut p = compliant("a");
    p.models = vec![
        "gpt-4o".to_owned(),
        "gpt-4o-mini".to_owned(),
        "claude-3".to_owned(),
    ];
    let floor = Layer {
        models: globs(&["gpt-*"]),
        ..layer(LayerKind::Floor, open())
    };
    let mut tenant = policy(Layer {
        models: globs(&["gpt-4o*", "claude-*"]),
        ..layer(LayerKind::Tenant, open())
    });
    tenant.projects.insert(
        "narrow".to_owned(),
        Layer {
            models: globs(&["gpt-4o", "claude-*"]),
            ..layer(LayerKind::Project, open())
        },
    );
    tenant.projects.insert(
        "wide".to_owned(),
        Layer {
            models: globs(&["*"]),
            ..layer(LayerKind::Project, open())
        },
    );
    let table = Table::compile(vec![p], Some(floor), vec![tenant], regions());
    let decide = |project, model| outcome(table.decide("acme", project, model, day(TODAY), None));
    assert_eq!(decide(None, "gpt-4o"), route(&["a"]));
    assert_eq!(decide(None, "gpt-4o-mini"), route(&["a"]));
    // The tenant allows claude-*, the floor does not.
    assert_eq!(decide(None, "claude-3"), Outcome::ModelNotAllowed);
    assert_eq!(decide(Some("narrow"), "gpt-4o"), route(&["a"]));
    assert_eq!(
        decide(Some("narrow"), "gpt-4o-mini"),
        Outcome::ModelNotAllowed
    );
    assert_eq!(decide(Some("narrow"), "claude-3"), Outcome::ModelNotAllowed);
    // A project cannot widen its tenant or the floor.
    assert_eq!(decide(Some("wide"), "claude-3"), Outcome::ModelNotAllowed);
    assert_eq!(decide(Some("wide"), "gpt-4o-mini"), route(&["a"]));
}

// ============================================================================
// Layers narrowing each other
// ============================================================================

/// Three compliant providers processing in FR, DE and the US.
fn fr_de_us() -> Vec<Provider> {
    let mut fr = compliant("fr");
    fr.terms.processing = countries(&["FR"]);
    let mut de = compliant("de");
    de.terms.processing = countries(&["DE"]);
    de.terms.jurisdiction = Some(country("DE"));
    de.terms.dpa = Some(Dpa::ByReference);
    de.terms.retention_days = Some(30);
    let mut us = compliant("us");
    us.terms.processing = countries(&["US"]);
    us.terms.jurisdiction = Some(country("US"));
    us.terms.transfer = Some(Transfer::Scc);
    us.terms
        .certifications
        .insert(cert("soc2-type2"), Some(day(20)));
    vec![fr, de, us]
}

#[test]
fn a_project_narrows_its_tenant_and_never_widens_it() {
    let mut tenant = policy(layer(
        LayerKind::Tenant,
        Rules {
            processing_in: Some(region(&["EEA"])),
            ..Rules::default()
        },
    ));
    let project = |rules| layer(LayerKind::Project, rules);
    tenant.projects.insert(
        "research".to_owned(),
        project(Rules {
            processing_in: Some(region(&["FR"])),
            ..open()
        }),
    );
    tenant.projects.insert(
        "wider".to_owned(),
        project(Rules {
            processing_in: Some(region(&["EEA", "US"])),
            ..open()
        }),
    );
    tenant.projects.insert(
        "no-de".to_owned(),
        project(Rules {
            exclude_providers: vec![pid("de")],
            ..open()
        }),
    );
    tenant
        .projects
        .insert("empty".to_owned(), Layer::empty(LayerKind::Project));
    let table = Table::compile(fr_de_us(), None, vec![tenant], regions());
    let decide = |project| outcome(table.decide("acme", project, MODEL, day(TODAY), None));
    assert_eq!(decide(None), route(&["de", "fr"]));
    assert_eq!(decide(Some("research")), route(&["fr"]));
    assert_eq!(decide(Some("wider")), route(&["de", "fr"]));
    assert_eq!(decide(Some("no-de")), route(&["fr"]));
    assert_eq!(decide(Some("empty")), route(&["de", "fr"]));
    assert_eq!(decide(Some("nope")), Outcome::UnknownProject);
}

#[test]
fn the_floor_narrows_every_tenant_and_is_never_widened() {
    let floor = layer(
        LayerKind::Floor,
        Rules {
            processing_in: Some(region(&["EEA"])),
            ..Rules::default()
        },
    );
    let mut wide = policy(layer(
        LayerKind::Tenant,
        Rules {
            processing_in: Some(region(&["EEA", "US"])),
            no_training: false,
            ..open()
        },
    ));
    wide.tenant = "wide".to_owned();
    let mut silent = policy(layer(LayerKind::Tenant, open()));
    silent.tenant = "silent".to_owned();
    let mut narrow = policy(layer(
        LayerKind::Tenant,
        Rules {
            dpa: Some(vec![Dpa::Signed]),
            ..open()
        },
    ));
    narrow.tenant = "narrow".to_owned();
    let tenants = vec![wide, silent, narrow];

    let with = Table::compile(fr_de_us(), Some(floor), tenants.clone(), regions());
    let without = Table::compile(fr_de_us(), None, tenants, regions());
    let decide = |t: &Table, tenant| outcome(t.decide(tenant, None, MODEL, day(TODAY), None));
    assert_eq!(decide(&without, "wide"), route(&["de", "fr", "us"]));
    assert_eq!(decide(&with, "wide"), route(&["de", "fr"]));
    assert_eq!(decide(&without, "silent"), route(&["de", "fr", "us"]));
    assert_eq!(decide(&with, "silent"), route(&["de", "fr"]));
    assert_eq!(decide(&without, "narrow"), route(&["fr", "us"]));
    assert_eq!(decide(&with, "narrow"), route(&["fr"]));

    // A floor certification expiry bounds every tenant's window too.
    let floor = layer(
        LayerKind::Floor,
        Rules {
            certifications: vec![cert("soc2-type2")],
            ..open()
        },
    );
    let with = Table::compile(
        fr_de_us(),
        Some(floor),
        vec![policy(layer(LayerKind::Tenant, open()))],
        regions(),
    );
    let on = |d| outcome(with.decide("acme", None, MODEL, day(d), None));
    assert_eq!(on(20), route(&["us"]));
    assert_eq!(on(21), route(&[]));
}

#[test]
fn a_request_layer_narrows_and_never_widens() {
    let mut trainer = compliant("trainer");
    trainer.terms.trains_on_data = Some(true);
    let mut providers = fr_de_us();
    providers[0].terms.certifications.insert(cert("hds"), None);
    providers.push(trainer);
    let table = Table::compile(
        providers,
        None,
        vec![policy(Layer::empty(LayerKind::Tenant))],
        regions(),
    );
    let decide = |header: &str| {
        let request = parse_require(header, &table).unwrap();
        assert_eq!(request.kind, LayerKind::Request);
        assert_eq!(request.models, None);
        outcome(table.decide("acme", None, MODEL, day(TODAY), Some(&request)))
    };
    let base = route(&["de", "fr", "us"]);
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), None)),
        base
    );
    for (header, expected) in [
        ("", base.clone()),
        ("  ", base.clone()),
        ("processing_in=FR", route(&["fr"])),
        ("processing_in=FR|DE", route(&["de", "fr"])),
        ("processing_in = EEA", route(&["de", "fr"])),
        ("processing_in=US|ADEQUATE", base.clone()),
        ("jurisdiction_in=EU", route(&["de", "fr"])),
        ("jurisdiction_in=US", route(&["us"])),
        ("max_retention_days=0", route(&["fr", "us"])),
        ("max_retention_days=30", base.clone()),
        ("dpa=by-reference", route(&["de"])),
        ("dpa=signed|pending", route(&["fr", "us"])),
        ("certifications=hds", route(&["fr"])),
        ("certifications=iso27001|soc2-type2", route(&["us"])),
        ("transfer=dpf", route(&["de", "fr"])),
        ("transfer=scc", base.clone()),
        ("exclude_providers=fr|us", route(&["de"])),
        ("exclude_providers=trainer", base.clone()),
        ("no_training=true", base.clone()),
        // The tenant requires no training; a request cannot lift that.
        ("no_training=false", base.clone()),
        (
            "max_retention_days=30, processing_in=EEA, exclude_providers=de",
            route(&["fr"]),
        ),
        (
            " processing_in=FR|US , max_retention_days=0 ,",
            route(&["fr", "us"]),
        ),
    ] {
        assert_eq!(decide(header), expected, "{header:?}");
    }
    // The request's certification expiry is checked on the day.
    let request = parse_require("certifications=soc2-type2", &table).unwrap();
    let on = |d| outcome(table.decide("acme", None, MODEL, day(d), Some(&request)));
    assert_eq!(on(20), route(&["us"]));
    assert_eq!(on(21), route(&[]));
}

#[test]
fn a_request_layer_resolves_custom_region_groups() {
    let mut regions = regions();
    regions
        .define("nordics", &countries(&["DK", "FI", "IS", "NO", "SE"]))
        .unwrap();
    let mut no = compliant("no");
    no.terms.processing = countries(&["NO", "SE"]);
    let mut fr = compliant("fr");
    fr.terms.processing = countries(&["FR"]);
    let table = Table::compile(
        vec![fr, no],
        None,
        vec![policy(Layer::empty(LayerKind::Tenant))],
        regions,
    );
    let request = parse_require("processing_in=nordics", &table).unwrap();
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), Some(&request))),
        route(&["no"])
    );
    let request = parse_require("processing_in=nordics|FR", &table).unwrap();
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), Some(&request))),
        route(&["fr", "no"])
    );
}

#[test]
fn parse_require_builds_the_layer_it_describes() {
    let table = Table::compile(fr_de_us(), None, Vec::new(), regions());
    let header = "processing_in=FR|EEA, jurisdiction_in=EU, dpa=signed|by-reference, \
                  no_training=true, max_retention_days=7, certifications=iso27001|x-audit, \
                  transfer=scc|bcr, exclude_providers=us";
    let parsed = parse_require(header, &table).unwrap();
    let expected = Layer {
        kind: LayerKind::Request,
        rules: Rules {
            processing_in: Some(region(&["FR", "EEA"])),
            jurisdiction_in: Some(region(&["EU"])),
            dpa: Some(vec![Dpa::Signed, Dpa::ByReference]),
            no_training: true,
            max_retention_days: Some(7),
            certifications: vec![cert("iso27001"), cert("x-audit")],
            transfer: Some(vec![Transfer::Scc, Transfer::Bcr]),
            exclude_providers: vec![pid("us")],
        },
        models: None,
    };
    assert_eq!(parsed, expected);
    let empty = parse_require("", &table).unwrap();
    assert_eq!(empty, layer(LayerKind::Request, Rules::unconstrained()));
}

#[test]
fn parse_require_rejects_bad_headers() {
    let table = Table::compile(fr_de_us(), None, Vec::new(), regions());
    let err = |h: &str| parse_require(h, &table).unwrap_err();
    let unknown = |r: &str| RequireError::UnknownRule(r.to_owned());
    assert_eq!(err("foo=1"), unknown("foo"));
    assert_eq!(err("processing=FR"), unknown("processing"));
    assert_eq!(err("models=gpt-*"), unknown("models"));
    assert_eq!(err("max_retention_days=0, Dpa=signed"), unknown("Dpa"));
    assert_eq!(err("exclude=fr"), unknown("exclude"));

    let duplicate = |r: &str| RequireError::Duplicate(r.to_owned());
    assert_eq!(err("dpa=signed, dpa=none"), duplicate("dpa"));
    assert_eq!(
        err("max_retention_days=0,processing_in=FR, max_retention_days = 1"),
        duplicate("max_retention_days")
    );
    assert_eq!(
        err("no_training=true, no_training=true"),
        duplicate("no_training")
    );

    for (header, rule) in [
        ("max_retention_days=abc", "max_retention_days"),
        ("max_retention_days=-1", "max_retention_days"),
        ("max_retention_days=1.5", "max_retention_days"),
        ("no_training=yes", "no_training"),
        ("no_training=TRUE", "no_training"),
        ("processing_in=XX", "processing_in"),
        ("processing_in=fr", "processing_in"),
        ("processing_in=FR|", "processing_in"),
        ("processing_in=UK", "processing_in"),
        ("jurisdiction_in=EUR", "jurisdiction_in"),
        ("dpa=maybe", "dpa"),
        ("dpa=signed|", "dpa"),
        ("transfer=sccs", "transfer"),
        ("certifications=iso9001", "certifications"),
        ("certifications=x-", "certifications"),
        ("exclude_providers=ghost", "exclude_providers"),
        ("exclude_providers=fr|ghost", "exclude_providers"),
    ] {
        match err(header) {
            RequireError::BadValue { rule: r, message } => {
                assert_eq!(r, rule, "{header}");
                assert!(!message.is_empty(), "{header}");
            }
            other => panic!("{header}: expected a bad value, got {other:?}"),
        }
    }
    match err("exclude_providers=ghost") {
        RequireError::BadValue { message, .. } => assert!(message.contains("ghost"), "{message}"),
        other => panic!("{other:?}"),
    }

    for header in ["processing_in", "=FR", "processing_in=", "dpa= ", "a, b=c"] {
        assert!(
            matches!(err(header), RequireError::Malformed(_)),
            "{header}: {:?}",
            err(header)
        );
    }
}

// ============================================================================
// Routing order and decisions
// ============================================================================

#[test]
fn routing_order_comes_first_then_priority_then_id() {
    let with = |id: &str, priority| Provider {
        priority,
        ..compliant(id)
    };
    // Given out of order: compile must not depend on the input order.
    let providers = vec![
        with("e", 3),
        with("b", 1),
        with("a", 5),
        with("f", 2),
        with("d", 0),
        with("c", 1),
        with("g", -1),
    ];
    let mut tenant = policy(layer(
        LayerKind::Tenant,
        Rules {
            exclude_providers: vec![pid("e"), pid("f")],
            ..Rules::default()
        },
    ));
    tenant.order = vec![pid("c"), pid("e"), pid("ghost"), pid("a"), pid("c")];
    let mut unordered = policy(Layer::empty(LayerKind::Tenant));
    unordered.tenant = "unordered".to_owned();
    let table = Table::compile(providers, None, vec![tenant, unordered], regions());
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), None)),
        route(&["c", "a", "g", "d", "b"])
    );
    assert_eq!(
        outcome(table.decide("unordered", None, MODEL, day(TODAY), None)),
        route(&["g", "d", "b", "c", "f", "e", "a"])
    );
    assert_eq!(
        table
            .providers()
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["g", "d", "b", "c", "f", "e", "a"]
    );

    // Explain: the eligible in routing order, then the rest by (priority, id).
    let ex = table
        .explain("acme", None, MODEL, day(TODAY), None)
        .unwrap();
    assert_eq!(ex.eligible, ["c", "a", "g", "d", "b"]);
    let ids: Vec<_> = ex.providers.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["c", "a", "g", "d", "b", "f", "e"]);

    // An ordered provider that is not eligible today is skipped.
    let mut c = table.provider("c").unwrap().clone();
    c.terms.review_by = Some(day(TODAY - 1));
    let mut tenant = policy(Layer::empty(LayerKind::Tenant));
    tenant.order = vec![pid("c"), pid("a")];
    let table = Table::compile(
        vec![c, with("a", 5), with("b", 1)],
        None,
        vec![tenant],
        regions(),
    );
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY), None)),
        route(&["a", "b"])
    );
    assert_eq!(
        outcome(table.decide("acme", None, MODEL, day(TODAY - 1), None)),
        route(&["c", "a", "b"])
    );
}

#[test]
fn a_provider_the_caller_cannot_use_fails_the_credential_rule() {
    let with = |id: &str, priority| Provider {
        priority,
        ..compliant(id)
    };
    let mut tenant = policy(layer(LayerKind::Tenant, strict()));
    tenant.order = vec![pid("b")];
    let mut excluded = with("c", 3);
    excluded.terms.dpa = None;
    let table = Table::compile(
        vec![with("a", 1), with("b", 2), excluded],
        None,
        vec![tenant],
        regions(),
    );
    let without_b =
        |id: &ProviderId| (id.as_str() == "b").then(|| "credential file /x is empty".to_owned());
    let ex = table
        .explain_with("acme", None, MODEL, day(TODAY), None, &without_b)
        .unwrap();
    // `b` was first in routing order; now it is among the ineligible, by priority.
    assert_eq!(ex.eligible, ["a"]);
    let verdicts: Vec<(&str, bool, Vec<Rule>)> = ex
        .providers
        .iter()
        .map(|v| {
            (
                v.id.as_str(),
                v.eligible,
                v.failed_rules.iter().map(|f| f.rule).collect(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("a", true, vec![]),
            ("b", false, vec![Rule::Credential]),
            ("c", false, vec![Rule::Dpa]),
        ]
    );
    let credential = &ex.providers[1].failed_rules[0];
    assert_eq!(credential.layer, None, "reported for the provider");
    assert_eq!(credential.detail, "credential file /x is empty");
    assert_eq!(Rule::Credential.as_str(), "credential");
    // Nothing unusable: the same as `explain`, and the version is the policy's.
    let plain = table
        .explain("acme", None, MODEL, day(TODAY), None)
        .unwrap();
    assert_eq!(plain.eligible, ["b", "a"]);
    assert_eq!(plain.version, ex.version);
    assert_eq!(
        table
            .explain_with("acme", None, MODEL, day(TODAY), None, &|_| None)
            .unwrap(),
        plain
    );
}

#[test]
fn decisions_for_unknown_tenants_projects_and_models() {
    let mut tenant = policy(Layer {
        models: globs(&["gpt-*"]),
        ..Layer::empty(LayerKind::Tenant)
    });
    tenant
        .projects
        .insert("research".to_owned(), Layer::empty(LayerKind::Project));
    let mut claude = compliant("claude");
    claude.models = vec!["claude-3".to_owned()];
    let table = Table::compile(vec![compliant("a"), claude], None, vec![tenant], regions());
    let today = day(TODAY);
    let decide =
        |tenant, project, model| outcome(table.decide(tenant, project, model, today, None));
    assert_eq!(decide("acme", None, MODEL), route(&["a"]));
    assert_eq!(decide("acme", Some("research"), MODEL), route(&["a"]));
    assert_eq!(decide("nobody", None, MODEL), Outcome::UnknownTenant);
    assert_eq!(
        decide("nobody", Some("research"), MODEL),
        Outcome::UnknownTenant
    );
    assert_eq!(decide("ACME", None, MODEL), Outcome::UnknownTenant);
    assert_eq!(decide("acme", Some("nope"), MODEL), Outcome::UnknownProject);
    assert_eq!(
        decide("acme", Some("nope"), "llama-3"),
        Outcome::UnknownProject
    );
    assert_eq!(decide("acme", None, "llama-3"), Outcome::ModelNotServed);
    assert_eq!(decide("acme", None, "gpt-4"), Outcome::ModelNotServed);
    assert_eq!(decide("acme", None, "claude-3"), Outcome::ModelNotAllowed);
    assert_eq!(
        decide("acme", Some("research"), "claude-3"),
        Outcome::ModelNotAllowed
    );

    assert_eq!(
        table.explain("nobody", None, MODEL, today, None),
        Err(ExplainError::UnknownTenant("nobody".to_owned()))
    );
    assert_eq!(
        table.explain("acme", Some("nope"), MODEL, today, None),
        Err(ExplainError::UnknownProject {
            tenant: "acme".to_owned(),
            project: "nope".to_owned()
        })
    );
    let ex = table.explain("acme", None, "llama-3", today, None).unwrap();
    assert!(ex.providers.is_empty() && ex.eligible.is_empty());
    let ex = table
        .explain("acme", None, "claude-3", today, None)
        .unwrap();
    assert!(ex.eligible.is_empty());
    assert_eq!(ex.providers.len(), 1);
    assert_eq!(ex.providers[0].failed_rules[0].rule, Rule::ModelNotAllowed);
}

#[test]
fn tenant_and_project_names_of_every_length_find_their_own_scope() {
    // Names up to 24 bytes are stored inline, longer ones on the heap: both
    // sides of the boundary, and names that prefix one another.
    let short = "t".repeat(24);
    let long = "t".repeat(25);
    let longer = format!("tenant-{}", "x".repeat(60));
    let excluding = |kind, ids: &[&str]| {
        layer(
            kind,
            Rules {
                exclude_providers: ids.iter().map(|id| pid(id)).collect(),
                ..open()
            },
        )
    };
    let named = |name: &str, ids: &[&str]| TenantPolicy {
        tenant: name.to_owned(),
        ..policy(excluding(LayerKind::Tenant, ids))
    };
    let mut with_projects = named(&long, &[]);
    for (project, ids) in [
        ("p", &["de", "us"][..]),
        ("p-", &["fr", "us"][..]),
        (&*"p".repeat(24), &["de", "fr"][..]),
        (&*"p".repeat(30), &["us"][..]),
    ] {
        with_projects
            .projects
            .insert(project.to_owned(), excluding(LayerKind::Project, ids));
    }
    let tenants = vec![
        named("a", &["de", "us"]),
        named("ab", &["fr", "us"]),
        named(&short, &["de", "fr"]),
        with_projects,
        named(&longer, &["fr"]),
    ];
    let table = Table::compile(fr_de_us(), None, tenants, regions());
    let decide = |tenant: &str, project: Option<&str>| {
        outcome(table.decide(tenant, project, MODEL, day(TODAY), None))
    };
    assert_eq!(decide("a", None), route(&["fr"]));
    assert_eq!(decide("ab", None), route(&["de"]));
    assert_eq!(decide(&short, None), route(&["us"]));
    assert_eq!(decide(&long, None), route(&["de", "fr", "us"]));
    assert_eq!(decide(&longer, None), route(&["de", "us"]));
    assert_eq!(decide(&long, Some("p")), route(&["fr"]));
    assert_eq!(decide(&long, Some("p-")), route(&["de"]));
    assert_eq!(decide(&long, Some(&"p".repeat(24))), route(&["us"]));
    assert_eq!(decide(&long, Some(&"p".repeat(30))), route(&["de", "fr"]));
    for missing in [
        "",
        "b",
        "abc",
        &"t".repeat(23),
        &"t".repeat(26),
        &longer[1..],
    ] {
        assert_eq!(decide(missing, None), Outcome::UnknownTenant, "{missing:?}");
    }
    for missing in [
        "",
        "q",
        "p--",
        &"p".repeat(21),
        &"p".repeat(23),
        &"p".repeat(31),
    ] {
        assert_eq!(
            decide(&long, Some(missing)),
            Outcome::UnknownProject,
            "{missing:?}"
        );
    }
    assert_eq!(decide("a", Some("p")), Outcome::UnknownProject);
    let names: Vec<&str> = table.tenants().iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["a", "ab", &longer, &short, &long]);
    assert_eq!(
        table
            .tenant(&longer)
            .map(|t| t.layer.rules.exclude_providers.len()),
        Some(1)
    );
}

#[test]
fn a_denial_gives_the_first_failed_rule_of_each_provider() {
    let mut stale = compliant("stale");
    stale.terms.review_by = Some(day(1));
    let mut stale_and_training = compliant("stale-and-training");
    stale_and_training.terms.review_by = Some(day(1));
    stale_and_training.terms.trains_on_data = None;
    let mut early = compliant("early");
    early.terms.effective_from = Some(day(28));
    let mut early_no_dpa = compliant("early-no-dpa");
    early_no_dpa.terms.effective_from = Some(day(28));
    early_no_dpa.terms.dpa = None;
    let mut excluded = compliant("excluded");
    excluded.terms.processing = countries(&["US"]);
    let mut floor_first = compliant("floor-first");
    floor_first.terms.dpa = Some(Dpa::Pending);
    floor_first.terms.processing = countries(&["US"]);
    let mut two_in_tenant = compliant("two-in-tenant");
    two_in_tenant.terms.processing = countries(&["US"]);
    two_in_tenant.terms.retention_days = Some(90);
    let mut expired = compliant("expired");
    expired
        .terms
        .certifications
        .insert(cert("iso27001"), Some(day(TODAY - 1)));
    let providers = vec![
        stale,
        stale_and_training,
        early,
        early_no_dpa,
        excluded,
        floor_first,
        two_in_tenant,
        expired,
    ];

    let floor = layer(
        LayerKind::Floor,
        Rules {
            dpa: Some(vec![Dpa::Signed, Dpa::ByReference]),
            certifications: vec![cert("iso27001")],
            ..Rules::default()
        },
    );
    let mut tenant = policy(layer(
        LayerKind::Tenant,
        Rules {
            processing_in: Some(region(&["EEA"])),
            max_retention_days: Some(30),
            exclude_providers: vec![pid("excluded")],
            ..Rules::default()
        },
    ));
    tenant.projects.insert(
        "research".to_owned(),
        layer(
            LayerKind::Project,
            Rules {
                exclude_providers: vec![pid("stale-and-training"), pid("two-in-tenant")],
                ..open()
            },
        ),
    );
    let table = Table::compile(providers, Some(floor), vec![tenant], regions());
    // Layers in order (floor, tenant, project), each layer's rules in
    // order; the dated rules, which time alone may fix, last.
    let expected = [
        ("early", None, Rule::NotYetEffective),
        ("early-no-dpa", Some(LayerKind::Floor), Rule::Dpa),
        ("excluded", Some(LayerKind::Tenant), Rule::Excluded),
        ("expired", Some(LayerKind::Floor), Rule::Certifications),
        ("floor-first", Some(LayerKind::Floor), Rule::Dpa),
        ("stale", None, Rule::StaleTerms),
        (
            "stale-and-training",
            Some(LayerKind::Floor),
            Rule::NoTraining,
        ),
        ("two-in-tenant", Some(LayerKind::Tenant), Rule::ProcessingIn),
    ];
    for project in [None, Some("research")] {
        let Decision::Route(routes) = table.decide("acme", project, MODEL, day(TODAY), None) else {
            panic!("expected a route");
        };
        assert_eq!(routes.eligible().count(), 0);
        let reasons = routes.denial_reasons("acme", project);
        let got: Vec<_> = reasons
            .iter()
            .map(|(id, f)| (id.as_str(), f.layer, f.rule))
            .collect();
        assert_eq!(got, expected, "{project:?}");
        for (_, f) in &reasons {
            assert!(!f.detail.is_empty());
        }
        // The first failure of each provider in `explain`, too.
        let ex = table
            .explain("acme", project, MODEL, day(TODAY), None)
            .unwrap();
        for (v, (id, f)) in ex.providers.iter().zip(&reasons) {
            assert_eq!(&v.id, id);
            assert_eq!(&v.failed_rules[0], f);
        }
    }

    // On the day before the certification expires, `expired` is eligible and
    // not among the reasons.
    let Decision::Route(routes) = table.decide("acme", None, MODEL, day(TODAY - 1), None) else {
        panic!("expected a route");
    };
    let eligible: Vec<_> = routes.eligible().map(|p| p.id.as_str()).collect();
    assert_eq!(eligible, ["expired"]);
    let reasons = routes.denial_reasons("acme", None);
    assert_eq!(reasons.len(), 7);
    assert!(reasons.iter().all(|(id, _)| id != "expired"));
}

#[test]
fn a_request_layer_can_deny_and_explain_says_why() {
    let table = Table::compile(
        fr_de_us(),
        None,
        vec![policy(Layer::empty(LayerKind::Tenant))],
        regions(),
    );
    let request = parse_require("processing_in=CH, exclude_providers=de", &table).unwrap();
    let Decision::Route(routes) = table.decide("acme", None, MODEL, day(TODAY), Some(&request))
    else {
        panic!("expected a route");
    };
    assert_eq!(routes.eligible().count(), 0);
    let got: Vec<_> = routes
        .denial_reasons("acme", None)
        .into_iter()
        .map(|(id, f)| (id, f.layer, f.rule))
        .collect();
    assert_eq!(
        got,
        [
            ("de".to_owned(), Some(LayerKind::Request), Rule::Excluded),
            (
                "fr".to_owned(),
                Some(LayerKind::Request),
                Rule::ProcessingIn
            ),
            (
                "us".to_owned(),
                Some(LayerKind::Request),
                Rule::ProcessingIn
            ),
        ]
    );
}

// ============================================================================
// The naive evaluator
// ============================================================================

const EU_CODES: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
const EEA_ONLY_CODES: [&str; 3] = ["IS", "LI", "NO"];
const ADEQUACY_CODES: [&str; 14] = [
    "AD", "AR", "CA", "CH", "FO", "GB", "GG", "IL", "IM", "JE", "JP", "KR", "NZ", "UY",
];

/// Whether the country `code` is in the list of codes and group names `names`.
fn naive_in(names: &[&str], code: &str) -> bool {
    let eu = EU_CODES.contains(&code);
    let eea = eu || EEA_ONLY_CODES.contains(&code);
    let adequate = eea || ADEQUACY_CODES.contains(&code);
    names.iter().any(|name| match *name {
        "EU" => eu,
        "EEA" => eea,
        "ADEQUATE" => adequate,
        other => other == code,
    })
}

/// Whether `name` matches `pattern`, where `*` is any run of characters.
fn naive_glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => name.strip_prefix(head).is_some_and(|tail| {
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && naive_glob(rest, &tail[i..]))
        }),
    }
}

/// A provider, with days counted from June 1 (0 = June 1).
#[derive(Clone, Debug)]
struct SpecProvider {
    id: &'static str,
    priority: i64,
    models: Vec<&'static str>,
    jurisdiction: Option<&'static str>,
    processing: Vec<&'static str>,
    dpa: Option<Dpa>,
    trains: Option<bool>,
    retention: Option<u32>,
    certs: BTreeMap<&'static str, Option<u8>>,
    transfer: Option<Transfer>,
    effective_from: Option<u8>,
    review_by: Option<u8>,
}

/// A layer of rules.
#[derive(Clone, Debug)]
struct SpecLayer {
    processing_in: Option<Vec<&'static str>>,
    jurisdiction_in: Option<Vec<&'static str>>,
    dpa: Option<Vec<Dpa>>,
    no_training: bool,
    max_retention: Option<u32>,
    certs: Vec<&'static str>,
    transfer: Option<Vec<Transfer>>,
    exclude: Vec<&'static str>,
    models: Option<Vec<&'static str>>,
}

/// A request layer and the header that should parse to it.
#[derive(Clone, Debug)]
struct SpecRequest {
    layer: SpecLayer,
    header: String,
}

/// Tenant `acme` with project `research`, asking for `model` on `today`.
#[derive(Clone, Debug)]
struct Scenario {
    providers: Vec<SpecProvider>,
    floor: Option<SpecLayer>,
    tenant: SpecLayer,
    order: Vec<&'static str>,
    project: SpecLayer,
    request: Option<SpecRequest>,
    model: &'static str,
    today: u8,
}

/// Which optional layers a lookup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Query {
    floor: bool,
    project: bool,
    request: bool,
}

/// Every combination, at the index `query_index` gives it.
const QUERIES: [Query; 8] = {
    let mut q = [Query {
        floor: false,
        project: false,
        request: false,
    }; 8];
    let mut i = 0;
    while i < 8 {
        q[i] = Query {
            floor: i & 1 != 0,
            project: i & 2 != 0,
            request: i & 4 != 0,
        };
        i += 1;
    }
    q
};

impl Scenario {
    /// Asking for an absent floor or request layer is the same as not asking.
    fn canonical(&self, q: Query) -> Query {
        Query {
            floor: q.floor && self.floor.is_some(),
            request: q.request && self.request.is_some(),
            ..q
        }
    }

    /// The queries that differ.
    fn queries(&self) -> impl Iterator<Item = Query> + '_ {
        QUERIES.into_iter().filter(|q| self.canonical(*q) == *q)
    }

    /// The layers a query is judged under, in order.
    fn layers(&self, q: Query) -> Vec<(LayerKind, &SpecLayer)> {
        let mut v = Vec::new();
        if let (true, Some(f)) = (q.floor, &self.floor) {
            v.push((LayerKind::Floor, f));
        }
        v.push((LayerKind::Tenant, &self.tenant));
        if q.project {
            v.push((LayerKind::Project, &self.project));
        }
        if let (true, Some(r)) = (q.request, &self.request) {
            v.push((LayerKind::Request, &r.layer));
        }
        v
    }

    fn serving(&self) -> impl Iterator<Item = &SpecProvider> {
        self.providers
            .iter()
            .filter(|p| p.models.contains(&self.model))
    }

    fn provider(&self, id: &str) -> &SpecProvider {
        self.providers
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no provider {id}"))
    }
}

/// Every rule `p` fails under `layers` for `model` on `today`, straight from
/// SPEC §2.2, in the engine's report order: each layer's rules in layer
/// order, then the dated rules (stale terms, not yet effective).
fn naive_failures(
    p: &SpecProvider,
    layers: &[(LayerKind, &SpecLayer)],
    model: &str,
    today: u8,
) -> Vec<(Option<LayerKind>, Rule)> {
    let mut out = Vec::new();
    for &(kind, l) in layers {
        let mut failed = Vec::new();
        if l.exclude.contains(&p.id) {
            failed.push(Rule::Excluded);
        }
        if let Some(globs) = &l.models
            && !globs.iter().any(|g| naive_glob(g, model))
        {
            failed.push(Rule::ModelNotAllowed);
        }
        if let Some(allowed) = &l.processing_in {
            let mut ok = !p.processing.is_empty();
            for c in &p.processing {
                if !naive_in(allowed, c) {
                    ok = false;
                }
            }
            if !ok {
                failed.push(Rule::ProcessingIn);
            }
        }
        if let Some(allowed) = &l.jurisdiction_in {
            let ok = match p.jurisdiction {
                Some(j) => naive_in(allowed, j),
                None => false,
            };
            if !ok {
                failed.push(Rule::JurisdictionIn);
            }
        }
        if let Some(accepted) = &l.dpa {
            let ok = match p.dpa {
                Some(d) => accepted.contains(&d),
                None => false,
            };
            if !ok {
                failed.push(Rule::Dpa);
            }
        }
        if l.no_training && p.trains != Some(false) {
            failed.push(Rule::NoTraining);
        }
        if let Some(max) = l.max_retention {
            let ok = match p.retention {
                Some(days) => days <= max,
                None => false,
            };
            if !ok {
                failed.push(Rule::MaxRetentionDays);
            }
        }
        let mut certs_ok = true;
        for c in &l.certs {
            let ok = match p.certs.get(c) {
                None => false,
                Some(None) => true,
                Some(Some(expiry)) => today <= *expiry,
            };
            if !ok {
                certs_ok = false;
            }
        }
        if !certs_ok {
            failed.push(Rule::Certifications);
        }
        if let Some(accepted) = &l.transfer {
            let mut inside_eea = !p.processing.is_empty();
            for c in &p.processing {
                if !naive_in(&["EEA"], c) {
                    inside_eea = false;
                }
            }
            let declared_ok = match p.transfer {
                Some(t) => accepted.contains(&t),
                None => false,
            };
            if !inside_eea && !declared_ok {
                failed.push(Rule::Transfer);
            }
        }
        out.extend(failed.into_iter().map(|r| (Some(kind), r)));
    }
    if let Some(review_by) = p.review_by
        && today > review_by
    {
        out.push((None, Rule::StaleTerms));
    }
    if let Some(from) = p.effective_from
        && today < from
    {
        out.push((None, Rule::NotYetEffective));
    }
    out
}

/// The routing position of `p`: `routing.order` first, then priority, then id.
fn naive_rank(s: &Scenario, p: &SpecProvider) -> (usize, i64, &'static str) {
    let pos = s.order.iter().position(|o| *o == p.id);
    (pos.unwrap_or(usize::MAX), p.priority, p.id)
}

/// What the engine should decide for `q`.
fn naive_decision(s: &Scenario, q: Query) -> Outcome {
    if s.serving().next().is_none() {
        return Outcome::ModelNotServed;
    }
    let layers = s.layers(q);
    let allowed = layers.iter().all(|(_, l)| match &l.models {
        None => true,
        Some(globs) => globs.iter().any(|g| naive_glob(g, s.model)),
    });
    if !allowed {
        return Outcome::ModelNotAllowed;
    }
    let mut ok: Vec<&SpecProvider> = s
        .serving()
        .filter(|p| naive_failures(p, &layers, s.model, s.today).is_empty())
        .collect();
    ok.sort_by_key(|p| naive_rank(s, p));
    Outcome::Route(ok.iter().map(|p| p.id.to_owned()).collect())
}

// ============================================================================
// Building the engine's inputs from a scenario
// ============================================================================

fn spec_day(offset: u8) -> Date {
    day(1 + offset)
}

fn build_provider(p: &SpecProvider) -> Provider {
    Provider {
        id: pid(p.id),
        priority: p.priority,
        models: p.models.iter().map(|m| m.to_string()).collect(),
        terms: Terms {
            entity: None,
            jurisdiction: p.jurisdiction.map(country),
            processing: countries(&p.processing),
            dpa: p.dpa,
            trains_on_data: p.trains,
            retention_days: p.retention,
            certifications: p
                .certs
                .iter()
                .map(|(c, e)| (cert(c), e.map(spec_day)))
                .collect(),
            transfer: p.transfer,
            purpose: None,
            evidence: None,
            effective_from: p.effective_from.map(spec_day),
            review_by: p.review_by.map(spec_day),
        },
    }
}

fn build_layer(kind: LayerKind, l: &SpecLayer) -> Layer {
    Layer {
        kind,
        rules: Rules {
            processing_in: l.processing_in.as_deref().map(region),
            jurisdiction_in: l.jurisdiction_in.as_deref().map(region),
            dpa: l.dpa.clone(),
            no_training: l.no_training,
            max_retention_days: l.max_retention,
            certifications: l.certs.iter().map(|c| cert(c)).collect(),
            transfer: l.transfer.clone(),
            exclude_providers: l.exclude.iter().map(|i| pid(i)).collect(),
        },
        models: l.models.as_deref().and_then(globs),
    }
}

/// The header for a request layer; `no_training` is written only when given.
fn render_header(l: &SpecLayer, no_training: Option<bool>) -> String {
    let join = |items: &mut dyn Iterator<Item = &str>| items.collect::<Vec<_>>().join("|");
    let mut parts = Vec::new();
    if let Some(r) = &l.processing_in {
        parts.push(format!("processing_in={}", join(&mut r.iter().copied())));
    }
    if let Some(r) = &l.jurisdiction_in {
        parts.push(format!("jurisdiction_in={}", join(&mut r.iter().copied())));
    }
    if let Some(d) = &l.dpa {
        parts.push(format!("dpa={}", join(&mut d.iter().map(|d| d.as_str()))));
    }
    if let Some(b) = no_training {
        parts.push(format!("no_training={b}"));
    }
    if let Some(m) = l.max_retention {
        parts.push(format!("max_retention_days={m}"));
    }
    if !l.certs.is_empty() {
        parts.push(format!(
            "certifications={}",
            join(&mut l.certs.iter().copied())
        ));
    }
    if let Some(t) = &l.transfer {
        parts.push(format!(
            "transfer={}",
            join(&mut t.iter().map(|t| t.as_str()))
        ));
    }
    if !l.exclude.is_empty() {
        parts.push(format!(
            "exclude_providers={}",
            join(&mut l.exclude.iter().copied())
        ));
    }
    parts.join(", ")
}

/// The engine under a scenario: with and without the floor.
struct Engine {
    with_floor: Table,
    /// `None` when the scenario has no floor: `with_floor` is the same table.
    without_floor: Option<Table>,
    request: Option<Layer>,
}

impl Engine {
    fn new(s: &Scenario) -> Result<Self, TestCaseError> {
        let providers: Vec<Provider> = s.providers.iter().map(build_provider).collect();
        let mut tenant = policy(build_layer(LayerKind::Tenant, &s.tenant));
        tenant.order = s.order.iter().map(|i| pid(i)).collect();
        tenant.projects.insert(
            "research".to_owned(),
            build_layer(LayerKind::Project, &s.project),
        );
        let floor = s.floor.as_ref().map(|f| build_layer(LayerKind::Floor, f));
        let without_floor = floor
            .is_some()
            .then(|| Table::compile(providers.clone(), None, vec![tenant.clone()], regions()));
        let with_floor = Table::compile(providers, floor, vec![tenant], regions());
        let request = match &s.request {
            None => None,
            Some(r) => match parse_require(&r.header, &with_floor) {
                Ok(layer) => Some(layer),
                Err(e) => return Err(TestCaseError::fail(format!("{:?}: {e}", r.header))),
            },
        };
        Ok(Self {
            with_floor,
            without_floor,
            request,
        })
    }

    fn table(&self, q: Query) -> &Table {
        match &self.without_floor {
            Some(table) if !q.floor => table,
            _ => &self.with_floor,
        }
    }

    fn extra(&self, q: Query) -> Option<&Layer> {
        if q.request {
            self.request.as_ref()
        } else {
            None
        }
    }

    fn decide(&self, s: &Scenario, q: Query) -> Outcome {
        let project = q.project.then_some("research");
        outcome(
            self.table(q)
                .decide("acme", project, s.model, spec_day(s.today), self.extra(q)),
        )
    }
}

// ============================================================================
// Generating scenarios
// ============================================================================

/// Days 0..DAYS: a short span, so that dates often coincide.
const DAYS: u8 = 6;
const IDS: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];
const POOL: [&str; 9] = ["FR", "DE", "IE", "NO", "IS", "CH", "GB", "US", "CN"];
const REGION_NAMES: [&str; 12] = [
    "FR", "DE", "IE", "NO", "IS", "CH", "GB", "US", "CN", "EU", "EEA", "ADEQUATE",
];
const MODELS: [&str; 4] = ["gpt-4o", "gpt-4o-mini", "claude-3", "mistral-large"];
const GLOBS: [&str; 8] = [
    "gpt-*",
    "claude-*",
    "gpt-4o",
    "gpt-4o*",
    "mistral-large",
    "claude-3",
    "*-mini",
    "*",
];
const CERTS: [&str; 3] = ["iso27001", "soc2-type2", "hds"];

fn some_of<T: Clone + std::fmt::Debug + 'static>(
    items: &[T],
    max: usize,
) -> impl Strategy<Value = Vec<T>> + use<T> {
    subsequence(items.to_vec(), 1..=max.min(items.len()))
}

fn provider_strategy(id: &'static str) -> impl Strategy<Value = SpecProvider> {
    let processing = prop_oneof![1 => Just(Vec::new()), 6 => some_of(&POOL, 3)];
    (
        (
            -1i64..3,
            prop_oneof![1 => Just(Vec::new()), 8 => subsequence(MODELS.to_vec(), 2..=MODELS.len())],
            prop::option::weighted(0.9, select(POOL.to_vec())),
            processing,
            prop::option::weighted(0.9, select(Dpa::ALL.to_vec())),
            prop::option::weighted(0.9, prop::bool::weighted(0.1)),
        ),
        (
            prop::option::weighted(0.9, select(vec![0u32, 7, 30, 31, 90])),
            prop::collection::btree_map(
                select(CERTS.to_vec()),
                prop::option::weighted(0.5, 0..DAYS),
                1..=3,
            ),
            prop::option::weighted(0.7, select(Transfer::ALL.to_vec())),
            prop::option::weighted(0.3, 0..DAYS),
            prop::option::weighted(0.3, 0..DAYS),
        ),
    )
        .prop_map(
            move |(
                (priority, models, jurisdiction, processing, dpa, trains),
                (retention, certs, transfer, effective_from, review_by),
            )| SpecProvider {
                id,
                priority,
                models,
                jurisdiction,
                processing,
                dpa,
                trains,
                retention,
                certs,
                transfer,
                effective_from,
                review_by,
            },
        )
}

/// A layer's rules; `exclude` from `excludable`, model globs if `models`.
fn layer_strategy(excludable: Vec<&'static str>, models: bool) -> impl Strategy<Value = SpecLayer> {
    let sometimes = 0.1;
    let globs = if models {
        prop::option::weighted(0.2, some_of(&GLOBS, 2)).boxed()
    } else {
        Just(None).boxed()
    };
    (
        (
            prop::option::weighted(sometimes, some_of(&REGION_NAMES, 3)),
            prop::option::weighted(sometimes, some_of(&REGION_NAMES, 3)),
            prop::option::weighted(sometimes, some_of(&Dpa::ALL, 3)),
            prop::bool::weighted(0.7),
            prop::option::weighted(sometimes, select(vec![0u32, 30, 90])),
        ),
        (
            prop_oneof![6 => Just(Vec::new()), 1 => some_of(&CERTS, 2)],
            prop::option::weighted(sometimes, some_of(&Transfer::ALL, 4)),
            prop_oneof![5 => Just(Vec::new()), 1 => some_of(&excludable, 2)],
            globs,
        ),
    )
        .prop_map(
            |(
                (processing_in, jurisdiction_in, dpa, no_training, max_retention),
                (certs, transfer, exclude, models),
            )| SpecLayer {
                processing_in,
                jurisdiction_in,
                dpa,
                no_training,
                max_retention,
                certs,
                transfer,
                exclude,
                models,
            },
        )
}

/// A request layer over the providers `ids`, and its header.
fn request_strategy(ids: Vec<&'static str>) -> impl Strategy<Value = SpecRequest> {
    (
        layer_strategy(ids, false),
        prop::option::of(prop::bool::ANY),
    )
        .prop_map(|(mut layer, no_training)| {
            layer.no_training = no_training.unwrap_or(false);
            let header = render_header(&layer, no_training);
            SpecRequest { layer, header }
        })
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (2usize..=IDS.len()).prop_flat_map(|n| {
        let ids = IDS[..n].to_vec();
        let mut excludable = ids.clone();
        excludable.push("ghost");
        let orderable = excludable.clone();
        (
            ids.iter()
                .map(|id| provider_strategy(id))
                .collect::<Vec<_>>()
                .prop_shuffle(),
            prop::option::weighted(0.5, layer_strategy(excludable.clone(), true)),
            layer_strategy(excludable.clone(), true),
            subsequence(orderable.clone(), 0..=orderable.len()).prop_shuffle(),
            layer_strategy(excludable, true),
            prop::option::weighted(0.6, request_strategy(ids)),
            prop_oneof![8 => select(MODELS.to_vec()), 1 => Just("llama-3")],
            0..DAYS,
        )
            .prop_map(
                |(providers, floor, tenant, order, project, request, model, today)| Scenario {
                    providers,
                    floor,
                    tenant,
                    order,
                    project,
                    request,
                    model,
                    today,
                },
            )
    })
}

fn ids(o: &Outcome) -> &[String] {
    match o {
        Outcome::Route(ids) => ids,
        _ => &[],
    }
}

/// Whether `small` is `big` with some elements left out, order kept.
fn is_subsequence(small: &[String], big: &[String]) -> bool {
    let mut rest = big.iter();
    small.iter().all(|x| rest.any(|y| y == x))
}

// ============================================================================
// Properties
// ============================================================================

/// Cases per property. Each case compiles up to two tables and makes up to
/// eight lookups.
const CASES: u32 = 512;
/// Cases for the `explain` property.
const EXPLAIN_CASES: u32 = 512;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Only this file is ours to write: no regression files beside it.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn queries_are_at_their_index() {
    for (i, q) in QUERIES.iter().enumerate() {
        assert_eq!(query_index(*q), i);
    }
}

/// The index in `QUERIES` of `q`.
fn query_index(q: Query) -> usize {
    usize::from(q.floor) | usize::from(q.project) << 1 | usize::from(q.request) << 2
}

proptest! {
    #![proptest_config(config(CASES))]

    /// (a) Every provider the engine returns serves the model and passes
    /// every rule as the naive evaluator sees it; (b) every provider the naive
    /// evaluator accepts is returned, in routing order, and the decision is
    /// the variant the specification gives. Also: the request header parses
    /// to exactly the layer it was written from.
    #[test]
    fn decide_agrees_with_the_naive_evaluator(s in scenario_strategy()) {
        let engine = Engine::new(&s)?;
        if let (Some(spec), Some(parsed)) = (&s.request, &engine.request) {
            let expected = build_layer(LayerKind::Request, &spec.layer);
            prop_assert_eq!(parsed, &expected, "header {:?}", spec.header);
        }
        for q in s.queries() {
            let decided = engine.decide(&s, q);
            let layers = s.layers(q);
            for id in ids(&decided) {
                let p = s.provider(id);
                prop_assert!(p.models.contains(&s.model), "(a) {:?}: {} does not serve the model", q, id);
                let failed = naive_failures(p, &layers, s.model, s.today);
                prop_assert!(failed.is_empty(), "(a) {:?}: {} returned but fails {:?}", q, id, failed);
            }
            prop_assert_eq!(decided, naive_decision(&s, q), "(b) {:?}", q);
        }
        let today = spec_day(s.today);
        let table = &engine.with_floor;
        let unknown = outcome(table.decide("nobody", None, s.model, today, None));
        prop_assert_eq!(unknown, Outcome::UnknownTenant);
        let unknown = outcome(table.decide("acme", Some("nope"), s.model, today, None));
        prop_assert_eq!(unknown, Outcome::UnknownProject);
    }

    /// (c) Adding a floor, a project or a request layer never adds a
    /// provider, and keeps the routing order of the others.
    #[test]
    fn narrowing_layers_never_add_a_provider(s in scenario_strategy()) {
        let engine = Engine::new(&s)?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; QUERIES.len()];
        for q in s.queries() {
            outcomes[query_index(q)] = Some(engine.decide(&s, q));
        }
        let outcome_of = |q: Query| {
            outcomes[query_index(s.canonical(q))]
                .clone()
                .expect("every canonical query is decided")
        };
        for q in s.queries() {
            let narrow = &outcome_of(q);
            let wider = [
                Query { floor: false, ..q },
                Query { project: false, ..q },
                Query { request: false, ..q },
            ];
            for w in wider {
                let wide = &outcome_of(w);
                prop_assert!(
                    is_subsequence(ids(narrow), ids(wide)),
                    "(c) {:?} gives {:?} but {:?} gives {:?}", q, narrow, w, wide
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(config(EXPLAIN_CASES))]

    /// (d) `explain` agrees with `decide` and with the naive evaluator.
    #[test]
    fn explain_agrees_with_eligibility(s in scenario_strategy()) {
        let engine = Engine::new(&s)?;
        for q in s.queries() {
            check_explain(&s, &engine, q)?;
        }
    }
}

fn check_explain(s: &Scenario, engine: &Engine, q: Query) -> Result<(), TestCaseError> {
    let table = engine.table(q);
    let project = q.project.then_some("research");
    let today = spec_day(s.today);
    let extra = engine.extra(q);
    let ex = table
        .explain("acme", project, s.model, today, extra)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decision = table.decide("acme", project, s.model, today, extra);
    let denial = match &decision {
        Decision::Route(r) if r.eligible().next().is_none() => {
            Some(r.denial_reasons("acme", project))
        }
        _ => None,
    };
    let decided = outcome(decision);

    // Every provider serving the model appears exactly once.
    let mut listed: Vec<&str> = ex.providers.iter().map(|v| v.id.as_str()).collect();
    listed.sort_unstable();
    let mut serving: Vec<&str> = s.serving().map(|p| p.id).collect();
    serving.sort_unstable();
    prop_assert_eq!(&listed, &serving, "(d) {:?}", q);

    // A verdict is eligible exactly when no rule failed.
    for v in &ex.providers {
        prop_assert_eq!(
            v.eligible,
            v.failed_rules.is_empty(),
            "(d) {:?}: {:?}",
            q,
            v
        );
    }
    // `eligible` lists the eligible verdicts, which come first, and agrees
    // with `decide`, order included.
    let flagged: Vec<String> = ex
        .providers
        .iter()
        .filter(|v| v.eligible)
        .map(|v| v.id.clone())
        .collect();
    prop_assert_eq!(&ex.eligible, &flagged, "(d) {:?}", q);
    let k = flagged.len();
    prop_assert!(ex.providers[..k].iter().all(|v| v.eligible), "(d) {:?}", q);
    prop_assert_eq!(
        &ex.eligible,
        &ids(&decided).to_vec(),
        "(d) {:?}: {:?}",
        q,
        decided
    );
    // The others follow by (priority, id).
    let rest: Vec<&str> = ex.providers[k..].iter().map(|v| v.id.as_str()).collect();
    let mut by_priority = rest.clone();
    by_priority.sort_by_key(|id| {
        let p = s.provider(id);
        (p.priority, p.id)
    });
    prop_assert_eq!(&rest, &by_priority, "(d) {:?}", q);

    // Each verdict lists exactly the rules the naive evaluator finds, with
    // their layers, in report order, each with a detail.
    let layers = s.layers(q);
    for v in &ex.providers {
        let expected = naive_failures(s.provider(&v.id), &layers, s.model, s.today);
        let got: Vec<_> = v.failed_rules.iter().map(|f| (f.layer, f.rule)).collect();
        prop_assert_eq!(&got, &expected, "(d) {:?}: {}", q, v.id);
        prop_assert!(v.failed_rules.iter().all(|f| !f.detail.is_empty()));
    }

    // A denial names the first failed rule of every provider.
    if let Some(reasons) = denial {
        let firsts: Vec<(String, Failure)> = ex
            .providers
            .iter()
            .filter_map(|v| Some((v.id.clone(), v.failed_rules.first()?.clone())))
            .collect();
        prop_assert_eq!(reasons.len(), serving.len(), "(d) {:?}", q);
        prop_assert_eq!(reasons, firsts, "(d) {:?}", q);
    }
    Ok(())
}

/// The generated scenarios are not degenerate: under the loosest and the
/// strictest lookups a fair share have eligible providers, a fair share have
/// failing ones, every decision variant occurs and every rule fails often.
#[test]
fn generated_scenarios_exercise_every_outcome() {
    let loosest = Query {
        floor: false,
        project: false,
        request: false,
    };
    let strictest = Query {
        floor: true,
        project: true,
        request: true,
    };
    let mut runner = TestRunner::deterministic();
    let strategy = scenario_strategy();
    let total = 512;
    let (mut loose_eligible, mut strict_eligible, mut denied) = (0, 0, 0);
    let mut variants: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures: BTreeMap<Rule, usize> = BTreeMap::new();
    for _ in 0..total {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        if !ids(&naive_decision(&s, loosest)).is_empty() {
            loose_eligible += 1;
        }
        let decision = naive_decision(&s, strictest);
        let eligible = ids(&decision).len();
        if eligible > 0 {
            strict_eligible += 1;
        }
        if s.serving().count() > eligible {
            denied += 1;
        }
        let variant = match decision {
            Outcome::Route(v) if v.is_empty() => "denied",
            Outcome::Route(_) => "routed",
            Outcome::ModelNotServed => "not served",
            Outcome::ModelNotAllowed => "not allowed",
            Outcome::UnknownTenant | Outcome::UnknownProject => "unknown",
        };
        *variants.entry(variant).or_default() += 1;
        for p in s.serving() {
            for (_, rule) in naive_failures(p, &s.layers(strictest), s.model, s.today) {
                *failures.entry(rule).or_default() += 1;
            }
        }
    }
    assert!(loose_eligible * 10 >= total * 3, "{loose_eligible}/{total}");
    assert!(strict_eligible * 10 >= total, "{strict_eligible}/{total}");
    assert!(denied * 10 >= total * 3, "{denied}/{total}");
    for variant in ["denied", "routed", "not served", "not allowed"] {
        let n = variants.get(variant).copied().unwrap_or(0);
        assert!(n * 20 >= total, "{variant}: {n}/{total}");
    }
    for rule in Rule::ALL {
        let n = failures.get(&rule).copied().unwrap_or(0);
        assert!(n >= 50, "{rule} failed only {n} times");
    }
}

#[test]
fn served_models_are_shared_and_versions_read_as_twelve_hex_digits() {
    let table = Table::compile(
        vec![compliant("a"), compliant("b")],
        None,
        vec![policy(layer(LayerKind::Tenant, open()))],
        regions(),
    );
    let served = table.served_model(MODEL).unwrap();
    assert_eq!(&**served, MODEL);
    assert!(std::sync::Arc::ptr_eq(
        served,
        table.served_model(MODEL).unwrap()
    ));
    assert_eq!(
        table.served_model("gpt-4o-mini").map(|m| &**m),
        Some("gpt-4o-mini")
    );
    assert!(table.served_model("nobody-serves-this").is_none());

    let Decision::Route(r) = table.decide("acme", None, MODEL, day(TODAY), None) else {
        panic!("acme has a route");
    };
    let text = r.version().to_string();
    assert_eq!(text.len(), 12);
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(&*r.version().shared(), text);
    assert_eq!(
        format!("{:?}", r.version()),
        format!("PolicyVersion({text})")
    );
}
