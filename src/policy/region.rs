//! Countries (ISO 3166-1 alpha-2), the built-in region groups `EU`, `EEA` and
//! `ADEQUATE`, and `RegionSet`, a 676-bit set that answers "is this country
//! allowed" with one shift and one mask.

use std::collections::BTreeMap;
use std::fmt;

/// Every officially assigned ISO 3166-1 alpha-2 code.
const ISO_3166_1: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// The 27 member states of the European Union.
const EU: &str = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK";

/// EEA members outside the EU.
const EEA_EXTRA: &str = "IS LI NO";

/// Countries and territories with an EU adequacy decision (GDPR art. 45) in force
/// for all processors, as of 2026-11. The United States is deliberately absent:
/// its decision covers only organisations certified under the Data Privacy
/// Framework, which providers declare with `transfer = "dpf"`.
const ADEQUACY: &str = "AD AR CA CH FO GB GG IL IM JE JP KR NZ UY";

/// Names of the built-in groups; `[regions]` may not redefine them.
pub const BUILTIN_GROUPS: [&str; 3] = ["EU", "EEA", "ADEQUATE"];

/// An ISO 3166-1 alpha-2 country code, stored as an index in 0..676.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country(u16);

/// A set of countries, as a bitset over every two-letter code.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RegionSet {
    bits: [u64; 11],
}

/// Named groups of countries: the built-ins plus the gateway file's `[regions]`.
#[derive(Clone, Debug)]
pub struct Regions {
    groups: BTreeMap<String, RegionSet>,
}

/// Why a region name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("`{0}` is not an ISO 3166-1 alpha-2 country code")]
    UnknownCountry(String),
    #[error(
        "`{0}` is neither an ISO 3166-1 alpha-2 country code nor a region group (EU, EEA, ADEQUATE or one from [regions])"
    )]
    UnknownRegion(String),
    #[error("region group `{0}` is built in and cannot be redefined")]
    BuiltinRedefined(String),
}

// === impl Country ===

impl Country {
    /// Parses an upper-case ISO 3166-1 alpha-2 code that is officially assigned.
    pub fn parse(code: &str) -> Result<Self, RegionError> {
        let unknown = || RegionError::UnknownCountry(code.to_owned());
        let b = code.as_bytes();
        if b.len() != 2 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() {
            return Err(unknown());
        }
        if !ISO_3166_1.split(' ').any(|c| c == code) {
            return Err(unknown());
        }
        Ok(Self(u16::from(b[0] - b'A') * 26 + u16::from(b[1] - b'A')))
    }

    /// The two-letter code.
    pub fn code(self) -> [u8; 2] {
        [b'A' + (self.0 / 26) as u8, b'A' + (self.0 % 26) as u8]
    }

    /// Every officially assigned code, in alphabetical order.
    pub fn all() -> impl Iterator<Item = Country> {
        ISO_3166_1.split(' ').filter_map(|c| Country::parse(c).ok())
    }

    /// Whether this country is in the European Economic Area.
    pub fn in_eea(self) -> bool {
        static EEA: std::sync::LazyLock<RegionSet> = std::sync::LazyLock::new(eea);
        EEA.contains(self)
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.code();
        write!(f, "{}{}", a as char, b as char)
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// === impl RegionSet ===

impl RegionSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, c: Country) {
        self.bits[usize::from(c.0 / 64)] |= 1 << (c.0 % 64);
    }

    pub fn contains(&self, c: Country) -> bool {
        self.bits[usize::from(c.0 / 64)] & (1 << (c.0 % 64)) != 0
    }

    pub fn union_with(&mut self, other: &RegionSet) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= b;
        }
    }

    /// The bitset's words (bit `i` of word `w` is country index `64 * w + i`,
    /// index = 26 × first letter + second letter): a stable, compact form.
    pub fn words(&self) -> &[u64; 11] {
        &self.bits
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = Country> + '_ {
        (0..676u16).map(Country).filter(|c| self.contains(*c))
    }

    fn from_codes(codes: &str) -> Self {
        let mut set = Self::new();
        for c in codes.split(' ').filter_map(|c| Country::parse(c).ok()) {
            set.insert(c);
        }
        set
    }
}

impl FromIterator<Country> for RegionSet {
    fn from_iter<I: IntoIterator<Item = Country>>(iter: I) -> Self {
        let mut set = Self::new();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl fmt::Debug for RegionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn eu() -> RegionSet {
    RegionSet::from_codes(EU)
}

fn eea() -> RegionSet {
    let mut set = eu();
    set.union_with(&RegionSet::from_codes(EEA_EXTRA));
    set
}

fn adequate() -> RegionSet {
    let mut set = eea();
    set.union_with(&RegionSet::from_codes(ADEQUACY));
    set
}

// === impl Regions ===

impl Default for Regions {
    fn default() -> Self {
        let groups = BTreeMap::from([
            ("EU".to_owned(), eu()),
            ("EEA".to_owned(), eea()),
            ("ADEQUATE".to_owned(), adequate()),
        ]);
        Self { groups }
    }
}

impl Regions {
    /// Adds a named group from the gateway file's `[regions]`.
    pub fn define(&mut self, name: &str, members: &[Country]) -> Result<(), RegionError> {
        if BUILTIN_GROUPS.contains(&name) {
            return Err(RegionError::BuiltinRedefined(name.to_owned()));
        }
        self.groups
            .insert(name.to_owned(), members.iter().copied().collect());
        Ok(())
    }

    /// Resolves a country code or a group name to a set.
    pub fn resolve(&self, name: &str) -> Result<RegionSet, RegionError> {
        if let Some(set) = self.groups.get(name) {
            return Ok(set.clone());
        }
        match Country::parse(name) {
            Ok(c) => Ok([c].into_iter().collect()),
            Err(_) => Err(RegionError::UnknownRegion(name.to_owned())),
        }
    }

    /// Resolves a list of codes and group names to their union.
    pub fn resolve_all<S: AsRef<str>>(&self, names: &[S]) -> Result<RegionSet, RegionError> {
        let mut set = RegionSet::new();
        for n in names {
            set.union_with(&self.resolve(n.as_ref())?);
        }
        Ok(set)
    }

    /// The set of countries with an adequacy decision (plus the EEA).
    pub fn adequate(&self) -> &RegionSet {
        &self.groups["ADEQUATE"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_list_has_every_assigned_code_once() {
        let codes: Vec<_> = ISO_3166_1.split(' ').collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "list is sorted and has no duplicates");
    }

    #[test]
    fn groups_have_expected_sizes() {
        let r = Regions::default();
        assert_eq!(r.resolve("EU").unwrap().iter().count(), 27);
        assert_eq!(r.resolve("EEA").unwrap().iter().count(), 30);
        assert_eq!(r.resolve("ADEQUATE").unwrap().iter().count(), 44);
        let us = Country::parse("US").unwrap();
        assert!(!r.adequate().contains(us));
        assert!(r.adequate().contains(Country::parse("CH").unwrap()));
    }

    #[test]
    fn country_parse_rejects_bad_codes() {
        for bad in ["", "F", "fr", "FRA", "XX", "EL", "UK", "1A"] {
            assert!(Country::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Country::parse("FR").unwrap().to_string(), "FR");
    }

    #[test]
    fn custom_groups_resolve_and_builtins_are_protected() {
        let mut r = Regions::default();
        let nordics: Vec<_> = ["DK", "FI", "IS", "NO", "SE"]
            .iter()
            .map(|c| Country::parse(c).unwrap())
            .collect();
        r.define("nordics", &nordics).unwrap();
        assert_eq!(r.resolve("nordics").unwrap().iter().count(), 5);
        assert!(r.define("EU", &nordics).is_err());
        assert!(matches!(
            r.resolve("EUR"),
            Err(RegionError::UnknownRegion(_))
        ));
        let set = r.resolve_all(&["FR", "nordics"]).unwrap();
        assert_eq!(set.iter().count(), 6);
    }
}
