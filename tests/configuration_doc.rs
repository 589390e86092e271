//! `docs/configuration.md` against the real loader, so the reference cannot
//! drift from the code in either direction.
//!
//! The keys are not listed here: they are asked of the loader. Each table of
//! a valid configuration is given an unknown key, and serde's "unknown field
//! `zz_unknown`, expected one of …" names the keys that table accepts; a key
//! given `{ zz_unknown = 1 }` says, by the error it gives, whether it is a
//! table, an array of tables, a map or a plain value. From that tree:
//! - every key the loader accepts has a row in the document, and every row is
//!   a key the loader accepts (`keys_match_the_loader`);
//! - every row's example loads, every error example gives exactly the message
//!   shown, every `required` key left out is a missing field, every default
//!   written as a value loads to the same configuration as leaving the key
//!   out, and the `${NAME}` marks are true (`rows_are_what_the_loader_does`);
//! - the numeric defaults equal the constants of `cordon::config`
//!   (`numeric_defaults_are_the_code_constants`);
//! - the complete example files load and use every key
//!   (`complete_examples_load_and_use_every_key`);
//! - the `x-cordon-require` rules and messages are `parse_require`'s
//!   (`require_header_rules_are_the_parsers`).
//!
//! The document's shape is described in the comment at its top.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed setup step must fail the test"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use cordon::config::{self, Config, ConfigErrors};
use tempfile::TempDir;

const DOC: &str = include_str!("../docs/configuration.md");

/// Environment the examples may refer to.
const ENV: &[(&str, &str)] = &[
    ("AZURE_FR_HOST", "example-fr.openai.azure.com"),
    ("AZURE_FR_KEY", "k-azure"),
    ("MISTRAL_KEY", "k-mistral"),
    ("PG_PASSWORD", "pw"),
];

/// A valid gateway file holding every table, each with only its required keys.
const BASE_GATEWAY: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[tls]
cert = "certs/server.pem"
key = "certs/server.key"

[store]
url = "sqlite://cordon.db"

[limits]
backend = "local"

[upstream]

[regions]
nordics = ["DK", "FI", "IS", "NO", "SE"]

[[providers]]
id = "azure-fr"
api = "openai"
base_url = "https://example-fr.openai.azure.com/openai/v1"
auth = { env = "AZURE_FR_KEY" }
models = { "gpt-4o" = "gpt-4o-2024-08-06" }

  [providers.data]

[[providers]]
id = "mistral-eu"
api = "openai"
base_url = "https://api.mistral.ai/v1"
models = { "mistral-large" = "mistral-large-latest" }

  [providers.data]
"#;

/// A valid tenant policy (`policies/acme.toml`) holding every table.
const BASE_POLICY: &str = r#"
tenant = "acme"

[data]

[models]
allow = ["*"]

[routing]

[limits]

[projects.research]
"#;

/// A valid floor holding every table.
const BASE_FLOOR: &str = r#"
[data]

[models]
allow = ["*"]
"#;

/// Files the examples name, created empty for loaders that check a file
/// can be opened.
const EXAMPLE_FILES: &[&str] = &[
    "certs/server.pem",
    "certs/server.key",
    "certs/admin.pem",
    "certs/admin.key",
    "certs/operators-ca.pem",
    "certs/internal-ca.pem",
];

/// What the fixture's directory is shown as in the document's messages.
const SHOWN_DIR: &str = "/etc/cordon";

const UNKNOWN: &str = "zz_unknown";
const UNSET_VAR: &str = "ZZ_DOC_UNSET";

/// Which file a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ns {
    Gateway,
    Policy,
    Floor,
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ns::Gateway => "cordon.toml",
            Ns::Policy => "policies/<tenant>.toml",
            Ns::Floor => "policies/_floor.toml",
        })
    }
}

// === the document ===

/// One `### ` table section of the document.
#[derive(Debug)]
struct Section {
    ns: Ns,
    /// Dotted table path; `""` is the file's top level, `*` a map entry.
    path: String,
    rows: Vec<Row>,
}

/// One row of a Markdown table: column name → cell text (unescaped).
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    cells: BTreeMap<String, String>,
}

/// A fenced block whose info string names a file.
#[derive(Debug)]
struct Block {
    line: usize,
    file: String,
    text: String,
}

#[derive(Debug, Default)]
struct Doc {
    sections: Vec<Section>,
    blocks: Vec<Block>,
    /// Every table row of the `x-cordon-require` section.
    require_rows: Vec<Row>,
}

impl Row {
    fn cell(&self, column: &str) -> &str {
        self.cells.get(column).map_or("", String::as_str)
    }

    /// The row's key, with `<name>` written as `*`.
    fn key(&self) -> String {
        let first = code_spans(self.cell("key"))
            .into_iter()
            .next()
            .unwrap_or_default();
        normalize_path(&first)
    }
}

impl Doc {
    fn parse(text: &str) -> Doc {
        #[derive(PartialEq)]
        enum Ctx {
            None,
            File(Ns),
            Require,
        }
        let mut doc = Doc::default();
        let mut ctx = Ctx::None;
        // The section whose first table is still to come.
        let mut open: Option<Section> = None;
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if let Some(info) = line.strip_prefix("```") {
                let start = i + 1;
                i += 1;
                while i < lines.len() && !lines[i].starts_with("```") {
                    i += 1;
                }
                let mut words = info.split_whitespace();
                if let (Some("toml"), Some(file)) = (words.next(), words.next()) {
                    doc.blocks.push(Block {
                        line: start,
                        file: file.to_owned(),
                        text: lines[start..i].join("\n"),
                    });
                }
                i += 1;
                continue;
            }
            if let Some(h) = line.strip_prefix("## ") {
                doc.sections.extend(open.take());
                ctx = if h.contains("`cordon.toml`") {
                    Ctx::File(Ns::Gateway)
                } else if h.contains("`policies/<tenant>.toml`") {
                    Ctx::File(Ns::Policy)
                } else if h.contains("`policies/_floor.toml`") {
                    Ctx::File(Ns::Floor)
                } else if h.contains("x-cordon-require") {
                    Ctx::Require
                } else {
                    Ctx::None
                };
            } else if let Some(h) = line.strip_prefix("### ") {
                doc.sections.extend(open.take());
                if let Ctx::File(ns) = ctx {
                    let path = code_spans(h)
                        .into_iter()
                        .find(|s| s.starts_with('['))
                        .map(|s| normalize_path(s.trim_matches(|c| c == '[' || c == ']')))
                        .or_else(|| {
                            h.to_ascii_lowercase()
                                .contains("top level")
                                .then(String::new)
                        });
                    open = path.map(|path| Section {
                        ns,
                        path,
                        rows: Vec::new(),
                    });
                }
            } else if line.starts_with('|') {
                let header = split_row(line);
                let mut rows = Vec::new();
                i += 2; // the header and its `|---|` line
                while i < lines.len() && lines[i].starts_with('|') {
                    let cells = split_row(lines[i]);
                    rows.push(Row {
                        line: i + 1,
                        cells: header.iter().cloned().zip(cells).collect(),
                    });
                    i += 1;
                }
                if ctx == Ctx::Require {
                    doc.require_rows.extend(rows);
                } else if let Some(mut s) = open.take() {
                    assert_eq!(
                        header.first().map(String::as_str),
                        Some("key"),
                        "docs/configuration.md:{}: a table section's first table starts with a `key` column",
                        rows.first().map_or(i, |r| r.line)
                    );
                    s.rows = rows;
                    doc.sections.push(s);
                }
                continue;
            }
            i += 1;
        }
        doc.sections.extend(open);
        doc
    }

    fn section(&self, ns: Ns, path: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.ns == ns && s.path == path)
    }

    fn sections_of(&self, ns: Ns) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(move |s| s.ns == ns)
    }
}

/// `[providers.data]` → `providers.data`; `<name>` → `*`.
fn normalize_path(p: &str) -> String {
    p.split('.')
        .map(|s| if s.starts_with('<') { "*" } else { s })
        .collect::<Vec<_>>()
        .join(".")
}

/// The cells of a `| a | b |` line, `\|` unescaped.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cur).trim().to_owned()),
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        cells.push(cur.trim().to_owned());
    }
    cells.remove(0); // before the leading `|`
    cells
}

/// The contents of the Markdown code spans in `s`, as CommonMark reads them:
/// a run of n backticks up to the next run of exactly n, one space stripped
/// from each side when both are spaces.
fn code_spans(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let run = |i: usize| b[i..].iter().take_while(|c| **c == b'`').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run(i);
        let start = i + n;
        let mut j = start;
        let mut end = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run(j);
                if m == n {
                    end = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        let Some(end) = end else {
            i = start;
            continue;
        };
        let inner = &s[start..end];
        let inner = match inner.strip_prefix(' ').and_then(|x| x.strip_suffix(' ')) {
            Some(x) if !x.trim().is_empty() => x,
            _ => inner,
        };
        out.push(inner.to_owned());
        i = end + n;
    }
    out
}

/// `a = 1; b = 2` as a TOML table.
fn assignments(code: &str) -> Option<toml::Table> {
    code.replace("; ", "\n").parse::<toml::Table>().ok()
}

/// One `example → message` entry of an error cell.
enum ErrorExample {
    Omitted(String),
    Written(String, String),
}

/// The checkable entries of an error cell; `Err` for an entry with an arrow
/// that does not have the expected shape.
fn error_examples(cell: &str) -> Result<Vec<ErrorExample>, String> {
    let mut out = Vec::new();
    for entry in cell.split("<br>") {
        let Some((left, right)) = entry.split_once('→') else {
            continue;
        };
        let message = match code_spans(right).as_slice() {
            [m] if right.trim().starts_with('`') && right.trim().ends_with('`') => m.clone(),
            _ => return Err(format!("`{right}` is not one code span")),
        };
        let left = left.trim();
        if left == "omitted" {
            out.push(ErrorExample::Omitted(message));
        } else {
            match code_spans(left).as_slice() {
                [code] if left.starts_with('`') && left.ends_with('`') => {
                    out.push(ErrorExample::Written(code.clone(), message))
                }
                _ => return Err(format!("`{left}` is not `omitted` nor one code span")),
            }
        }
    }
    Ok(out)
}

// === the loader ===

/// What a key is, as the loader's errors show.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Leaf,
    /// A table with free keys (`[regions]`, `headers`, `models`).
    Map,
    Table,
    ArrayOfTables,
    /// A table of named tables (`[projects.<name>]`).
    MapOfTables,
}

/// The key tree one file's loader accepts.
#[derive(Debug, Default)]
struct Schema {
    /// Table path (`""`, `providers`, `projects.*`) → its keys, in the
    /// loader's order.
    tables: BTreeMap<String, Vec<String>>,
    /// Key path → what it is.
    kinds: BTreeMap<String, Kind>,
}

/// The three files of a configuration, as TOML tables.
#[derive(Clone)]
struct Files {
    gateway: toml::Table,
    policy: toml::Table,
    floor: toml::Table,
}

impl Files {
    fn base() -> Self {
        let parse = |s: &str| s.parse::<toml::Table>().expect("base file parses");
        Files {
            gateway: parse(BASE_GATEWAY),
            policy: parse(BASE_POLICY),
            floor: parse(BASE_FLOOR),
        }
    }

    fn get_mut(&mut self, ns: Ns) -> &mut toml::Table {
        match ns {
            Ns::Gateway => &mut self.gateway,
            Ns::Policy => &mut self.policy,
            Ns::Floor => &mut self.floor,
        }
    }
}

/// A directory the files are written into before each load.
struct Fixture {
    dir: TempDir,
    env: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = config_dir();
        let env = ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Fixture { dir, env }
    }

    fn load(&self, f: &Files) -> Result<Config, ConfigErrors> {
        let write = |name: &str, t: &toml::Table| {
            let text = toml::to_string(t).expect("serialize");
            std::fs::write(self.dir.path().join(name), text).expect("write");
        };
        write("cordon.toml", &f.gateway);
        write("policies/acme.toml", &f.policy);
        write("policies/_floor.toml", &f.floor);
        config::load(&self.dir.path().join("cordon.toml"), &self.env)
    }

    /// Loads complete files as written, in a directory of their own.
    fn load_texts(&self, files: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = config_dir();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        config::load(&dir.path().join("cordon.toml"), &self.env)
    }

    /// The messages of a failed load, the fixture's directory shown as
    /// [`SHOWN_DIR`].
    fn messages(&self, e: &ConfigErrors) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        e.0.iter()
            .map(|e| e.message.replace(&dir, SHOWN_DIR))
            .collect()
    }

    /// The first error's message, or `None` when `f` loads.
    fn first_error(&self, f: &Files) -> Option<String> {
        self.load(f).err().map(|e| {
            e.0.first()
                .map(|e| e.message.clone())
                .expect("at least one error")
        })
    }
}

/// An empty configuration directory: `policies/` and the example files.
fn config_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
    for f in EXAMPLE_FILES {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().expect("a directory")).expect("mkdir");
        std::fs::write(p, "").expect("example file");
    }
    dir
}

/// Where one row's values are written.
struct Place<'a> {
    ns: Ns,
    schema: &'a Schema,
    /// The row's table.
    table: &'a str,
    key: String,
}

impl Place<'_> {
    /// Whether `a` is an example of this row: it assigns the key in the row's
    /// table, or assigns that table as a whole with the key in it
    /// (`auth = { file = … }`).
    fn is_example(&self, a: &toml::Table) -> bool {
        self.key == "*" || a.contains_key(&self.key) || self.whole_table(a)
    }

    fn whole_table(&self, a: &toml::Table) -> bool {
        let own = self.table.rsplit('.').next().unwrap_or_default();
        !own.is_empty()
            && own != "*"
            && a.len() == 1
            && a.get(own)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(&self.key))
    }

    /// The base files with `a` written (into the row's table, or into its
    /// parent when `a` is the whole table), then `edit` applied to the row's
    /// table.
    fn files(&self, a: Option<&toml::Table>, edit: &dyn Fn(&mut toml::Table)) -> Files {
        let mut f = Files::base();
        {
            let root = f.get_mut(self.ns);
            if let Some(a) = a {
                let into = if self.whole_table(a) && !a.contains_key(&self.key) {
                    self.table.rsplit_once('.').map_or("", |(p, _)| p)
                } else {
                    self.table
                };
                self.schema.table_mut(root, into).extend(a.clone());
            }
            edit(self.schema.table_mut(root, self.table));
        }
        f
    }
}

/// A deterministic summary of everything a configuration means.
fn fingerprint(c: &Config) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        c.server,
        c.tls,
        c.usage_spool,
        c.limits_backend,
        c.upstreams,
        c.table.providers(),
        c.table.floor(),
        c.table.tenants(),
        c.table.regions()
    )
}

impl Schema {
    /// Asks the loader for the key tree of `ns`'s file.
    fn discover(fx: &Fixture, ns: Ns) -> Schema {
        let mut schema = Schema::default();
        let root = schema
            .expected_after_injecting(fx, ns, "", UNKNOWN, toml::Value::Integer(1))
            .expect("the top level is a table of known keys");
        schema.explore(fx, ns, String::new(), root);
        schema
    }

    fn explore(&mut self, fx: &Fixture, ns: Ns, table: String, keys: Vec<String>) {
        self.tables.insert(table.clone(), keys.clone());
        for k in keys {
            let path = join(&table, &k);
            let (kind, sub) = self.classify(fx, ns, &table, &k);
            self.kinds.insert(path.clone(), kind.clone());
            match (kind, sub) {
                (Kind::Table | Kind::ArrayOfTables, Some(sub)) => self.explore(fx, ns, path, sub),
                (Kind::MapOfTables, Some(sub)) => self.explore(fx, ns, join(&path, "*"), sub),
                _ => {}
            }
        }
    }

    /// What `key` of `table` is: given a table holding an unknown key, a
    /// table says which keys it expects; a map accepts the key and then
    /// complains about its value; anything else refuses a table.
    fn classify(
        &self,
        fx: &Fixture,
        ns: Ns,
        table: &str,
        key: &str,
    ) -> (Kind, Option<Vec<String>>) {
        let probe = || {
            toml::Value::Table(toml::Table::from_iter([(
                UNKNOWN.to_owned(),
                toml::Value::Integer(1),
            )]))
        };
        let err = self.error_after_injecting(fx, ns, table, key, probe());
        match err.as_deref() {
            Some(m) if m.contains(&format!("unknown field `{UNKNOWN}`")) => {
                (Kind::Table, Some(expected_fields(m)))
            }
            Some(m) if m.starts_with("invalid type: map") => {
                let in_array = toml::Value::Array(vec![probe()]);
                match self.expected_after_injecting(fx, ns, table, key, in_array) {
                    Some(sub) => (Kind::ArrayOfTables, Some(sub)),
                    None => (Kind::Leaf, None),
                }
            }
            None => (Kind::Map, None),
            Some(m) if m.starts_with("invalid type: integer `1`") => {
                let nested =
                    toml::Value::Table(toml::Table::from_iter([(UNKNOWN.to_owned(), probe())]));
                match self.expected_after_injecting(fx, ns, table, key, nested) {
                    Some(sub) => (Kind::MapOfTables, Some(sub)),
                    None => (Kind::Map, None),
                }
            }
            Some(_) => (Kind::Leaf, None),
        }
    }

    fn error_after_injecting(
        &self,
        fx: &Fixture,
        ns: Ns,
        table: &str,
        key: &str,
        value: toml::Value,
    ) -> Option<String> {
        let mut files = Files::base();
        self.table_mut(files.get_mut(ns), table)
            .insert(key.to_owned(), value);
        fx.first_error(&files)
    }

    /// The keys a table expects, when `value` at `key` is refused for holding
    /// an unknown one.
    fn expected_after_injecting(
        &self,
        fx: &Fixture,
        ns: Ns,
        table: &str,
        key: &str,
        value: toml::Value,
    ) -> Option<Vec<String>> {
        let m = self.error_after_injecting(fx, ns, table, key, value)?;
        m.contains(&format!("unknown field `{UNKNOWN}`"))
            .then(|| expected_fields(&m))
    }

    /// The table at `path` in `root`, created where missing: the first
    /// element of an array of tables, the first entry of a map of tables.
    fn table_mut<'a>(&self, root: &'a mut toml::Table, path: &str) -> &'a mut toml::Table {
        let mut t = root;
        let mut prefix = String::new();
        for part in path.split('.').filter(|p| !p.is_empty() && *p != "*") {
            prefix = join(&prefix, part);
            let kind = self.kinds.get(&prefix).cloned().unwrap_or(Kind::Table);
            let slot = t
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match kind {
                Kind::ArrayOfTables => {
                    if !slot.is_array() {
                        *slot = toml::Value::Array(Vec::new());
                    }
                    let arr = slot.as_array_mut().expect("array");
                    if arr.is_empty() {
                        arr.push(toml::Value::Table(toml::Table::new()));
                    }
                    arr[0].as_table_mut().expect("array of tables")
                }
                Kind::MapOfTables => {
                    let map = slot.as_table_mut().expect("map of tables");
                    if map.is_empty() {
                        map.insert("zzname".into(), toml::Value::Table(toml::Table::new()));
                    }
                    map.iter_mut()
                        .next()
                        .and_then(|(_, v)| v.as_table_mut())
                        .expect("an entry")
                }
                _ => {
                    if !slot.is_table() {
                        *slot = toml::Value::Table(toml::Table::new());
                    }
                    slot.as_table_mut().expect("table")
                }
            };
        }
        t
    }

    /// Whether the loader accepts `path` as a key or a table (a map's
    /// entries included).
    fn accepts(&self, path: &str) -> bool {
        if self.tables.contains_key(path) || self.kinds.contains_key(path) {
            return true;
        }
        path.strip_suffix(".*")
            .is_some_and(|m| self.kinds.get(m) == Some(&Kind::Map))
    }

    /// The key paths used in `t` (a file's table at `prefix`).
    fn used(&self, prefix: &str, t: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let path = join(prefix, k);
            match (self.kinds.get(&path), v) {
                (Some(Kind::Table), toml::Value::Table(sub)) => self.used(&path, sub, out),
                (Some(Kind::ArrayOfTables), toml::Value::Array(items)) => {
                    for sub in items.iter().filter_map(toml::Value::as_table) {
                        self.used(&path, sub, out);
                    }
                }
                (Some(Kind::MapOfTables), toml::Value::Table(map)) => {
                    for sub in map.values().filter_map(toml::Value::as_table) {
                        self.used(&join(&path, "*"), sub, out);
                    }
                }
                _ => {}
            }
            out.insert(path);
        }
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

/// The names after "expected" in serde's unknown-field message.
fn expected_fields(message: &str) -> Vec<String> {
    let list = message.split_once(", expected").map_or("", |(_, l)| l);
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The schemas of all three files.
fn schemas(fx: &Fixture) -> BTreeMap<Ns, Schema> {
    [Ns::Gateway, Ns::Policy, Ns::Floor]
        .into_iter()
        .map(|ns| (ns, Schema::discover(fx, ns)))
        .collect()
}

/// The section documenting the table at `path` of `ns`: its own, or the one
/// its parent's row names with "same keys as `[x]`" (looked up in the same
/// file, then in the tenant policy).
fn section_for<'d>(doc: &'d Doc, ns: Ns, path: &str) -> Option<&'d Section> {
    if let Some(s) = doc.section(ns, path) {
        return Some(s);
    }
    let (parent, key) = match path.rsplit_once('.') {
        Some((p, k)) => (p, k),
        None => ("", path),
    };
    let row = doc
        .section(ns, parent)?
        .rows
        .iter()
        .find(|r| r.key() == key)?;
    let target = alias_of(row)?;
    doc.section(ns, &target)
        .or_else(|| doc.section(Ns::Policy, &target))
}

fn alias_of(row: &Row) -> Option<String> {
    let ty = row.cell("type");
    let (_, rest) = ty.split_once("same keys as")?;
    let span = code_spans(rest).into_iter().next()?;
    Some(normalize_path(span.trim_matches(|c| c == '[' || c == ']')))
}

/// Every row of every section, with its file and full key path.
fn rows(doc: &Doc) -> impl Iterator<Item = (Ns, &Section, &Row, String)> {
    doc.sections.iter().flat_map(|s| {
        s.rows
            .iter()
            .map(move |r| (s.ns, s, r, join(&s.path, &r.key())))
    })
}

fn failures(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "docs/configuration.md and the loader disagree ({}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// === the tests ===

#[test]
fn the_base_files_load() {
    let fx = Fixture::new();
    if let Err(e) = fx.load(&Files::base()) {
        panic!("the base configuration must load:\n{e}");
    }
}

#[test]
fn the_document_has_every_file_and_its_tables() {
    let doc = Doc::parse(DOC);
    for ns in [Ns::Gateway, Ns::Policy, Ns::Floor] {
        let n = doc.sections_of(ns).count();
        assert!(n > 0, "no `### ` table section for {ns}");
        for s in doc.sections_of(ns) {
            assert!(!s.rows.is_empty(), "{ns} [{}] has no key table", s.path);
        }
    }
    assert!(!doc.require_rows.is_empty(), "no x-cordon-require table");
    assert!(
        doc.blocks.iter().any(|b| b.file == "cordon.toml"),
        "no complete cordon.toml example"
    );
}

#[test]
fn keys_match_the_loader() {
    let fx = Fixture::new();
    let doc = Doc::parse(DOC);
    let schemas = schemas(&fx);
    let mut problems = Vec::new();

    for (&ns, schema) in &schemas {
        // Every key the loader accepts has a row (or a section of its own).
        for (table, keys) in &schema.tables {
            let section = section_for(&doc, ns, table);
            if let Some(s) = section
                && s.path != *table
            {
                // An alias: the loader must agree that the keys are the same.
                let target = schemas.get(&s.ns).and_then(|t| t.tables.get(&s.path));
                if target != Some(keys) {
                    problems.push(format!(
                        "{ns} [{table}] is documented as having the keys of {} [{}], but the loader's differ: {keys:?} vs {target:?}",
                        s.ns, s.path
                    ));
                }
            }
            for k in keys {
                let path = join(table, k);
                let has_row = section.is_some_and(|s| s.rows.iter().any(|r| r.key() == *k));
                if !has_row && section_for(&doc, ns, &path).is_none() {
                    problems.push(format!(
                        "{ns}: `{path}` is accepted by the loader but not documented (no row `{k}` under [{table}])"
                    ));
                }
            }
        }
        // Every section and row is something the loader accepts.
        for s in doc.sections_of(ns) {
            if !schema.accepts(&s.path) {
                problems.push(format!(
                    "{ns}: section [{}] is not a table the loader accepts",
                    s.path
                ));
            }
        }
    }
    for (ns, s, r, path) in rows(&doc) {
        let accepted = schemas.get(&ns).is_some_and(|sc| sc.accepts(&path));
        if !accepted {
            problems.push(format!(
                "docs/configuration.md:{}: {ns} [{}] documents `{}`, which the loader does not accept",
                r.line,
                s.path,
                r.key()
            ));
        }
    }
    failures(&problems);
}

#[test]
fn rows_are_what_the_loader_does() {
    let fx = Fixture::new();
    let doc = Doc::parse(DOC);
    let schemas = schemas(&fx);
    let base = fx
        .load(&Files::base())
        .expect("the base configuration loads");
    let base_fp = fingerprint(&base);
    let mut problems = Vec::new();
    let noop = |_: &mut toml::Table| {};

    for (ns, s, r, path) in rows(&doc) {
        let Some(schema) = schemas.get(&ns) else {
            continue;
        };
        let at = format!("docs/configuration.md:{} ({ns} `{path}`)", r.line);
        let place = Place {
            ns,
            schema,
            table: &s.path,
            key: r.key(),
        };
        let key = place.key.clone();
        let kind = schema.kinds.get(&path).cloned().unwrap_or(Kind::Leaf);
        let remove = |t: &mut toml::Table| {
            t.remove(&key);
        };
        // The messages of a load that fails, `None` when it loads.
        let messages = |f: &Files| fx.load(f).err().map(|e| fx.messages(&e));

        // The example loads; the first one is the setting the checks below
        // change (other keys it needs stay written).
        let examples: Vec<toml::Table> = code_spans(r.cell("example"))
            .iter()
            .filter_map(|c| assignments(c))
            .filter(|a| place.is_example(a))
            .collect();
        if examples.is_empty() {
            problems.push(format!("{at}: no example of the form `{key} = …`"));
        }
        for ex in &examples {
            if let Some(m) = messages(&place.files(Some(ex), &noop)) {
                problems.push(format!("{at}: the example does not load: {m:?}"));
            }
        }
        let setting = examples.first();

        // Each error example gives its message.
        match error_examples(r.cell("error")) {
            Err(e) => problems.push(format!("{at}: error cell: {e}")),
            Ok(list) if list.is_empty() => problems.push(format!(
                "{at}: the error column has no `wrong = value` → `message` entry"
            )),
            Ok(list) => {
                for ex in list {
                    let (files, message, what) = match &ex {
                        ErrorExample::Omitted(m) => {
                            (place.files(setting, &remove), m, "omitted".to_owned())
                        }
                        ErrorExample::Written(code, m) => match assignments(code) {
                            Some(a) => (place.files(Some(&a), &noop), m, code.clone()),
                            None => {
                                problems.push(format!("{at}: `{code}` is not TOML"));
                                continue;
                            }
                        },
                    };
                    match messages(&files) {
                        None => problems.push(format!("{at}: `{what}` loads without error")),
                        Some(got) if got.contains(message) => {}
                        Some(got) => problems.push(format!(
                            "{at}: `{what}` gives\n    {}\n  not\n    {message}",
                            got.join("\n    ")
                        )),
                    }
                }
            }
        }

        // The default: required, or a value that changes nothing.
        let default = r.cell("default");
        if default.starts_with("required") {
            let want = format!("missing field `{key}`");
            match messages(&place.files(setting, &remove)) {
                Some(got) if got.contains(&want) => {}
                got => problems.push(format!(
                    "{at}: documented as required, but leaving it out gives {got:?}"
                )),
            }
        } else if default.starts_with('`')
            && let Some(value) = code_spans(default)
                .first()
                .and_then(|v| assignments(&format!("{key} = {v}")))
        {
            let without = place.files(None, &remove);
            let written = place.files(None, &|t| t.extend(value.clone()));
            match (fx.load(&without), fx.load(&written)) {
                (Ok(a), Ok(b)) if fingerprint(&a) == fingerprint(&b) => {}
                (Ok(_), Ok(_)) => problems.push(format!(
                    "{at}: writing the documented default {default} changes the configuration"
                )),
                (a, b) => problems.push(format!(
                    "{at}: the default {default} does not load: {:?} {:?}",
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string())
                )),
            }
        }

        // `${NAME}` in the type: expanded exactly where it says so.
        let ty = r.cell("type");
        let marked = ty.contains("`${NAME}`");
        let reference = format!("${{{UNSET_VAR}}}");
        let value = match kind {
            Kind::Leaf if ty.starts_with("string") => Some(toml::Value::String(reference)),
            Kind::Map if marked => Some(toml::Value::Table(toml::Table::from_iter([(
                "x-zz".to_owned(),
                toml::Value::String(reference),
            )]))),
            _ => None,
        };
        if let Some(v) = value {
            let f = place.files(setting, &|t| {
                t.insert(key.clone(), v.clone());
            });
            let unset = format!("environment variable `{UNSET_VAR}` is not set");
            let expanded = messages(&f).is_some_and(|m| m.contains(&unset));
            if expanded != marked {
                problems.push(format!(
                    "{at}: the type {} `${{NAME}}`, but the loader {} it",
                    if marked { "says" } else { "does not say" },
                    if expanded {
                        "expands"
                    } else {
                        "does not expand"
                    }
                ));
            }
        }
    }
    // Nothing above may have changed what the base loads to.
    let again = fx.load(&Files::base()).expect("the base still loads");
    assert_eq!(fingerprint(&again), base_fp);
    failures(&problems);
}

#[test]
fn numeric_defaults_are_the_code_constants() {
    let doc = Doc::parse(DOC);
    let d = config::ServerLimits::default();
    let ms = |t: std::time::Duration| t.as_millis() as u64;
    let expected: [(&str, u64); 10] = [
        ("server.max_body_bytes", config::DEFAULT_MAX_BODY_BYTES),
        ("server.max_header_bytes", d.max_header_bytes as u64),
        ("server.body_read_timeout_ms", ms(d.body_read_timeout)),
        ("server.max_json_depth", d.max_json_depth as u64),
        ("server.max_event_bytes", d.max_event_bytes as u64),
        ("server.max_answer_bytes", d.max_answer_bytes as u64),
        ("server.max_stream_ms", ms(d.max_stream)),
        ("server.drain_timeout_ms", ms(d.drain_timeout)),
        ("providers.timeout_ms", config::DEFAULT_TIMEOUT_MS),
        ("providers.priority", config::DEFAULT_PRIORITY as u64),
    ];
    for (path, want) in expected {
        let (_, _, row, _) = rows(&doc)
            .find(|(ns, _, _, p)| *ns == Ns::Gateway && p == path)
            .unwrap_or_else(|| panic!("no row for `{path}`"));
        let default = code_spans(row.cell("default"))
            .first()
            .and_then(|v| assignments(&format!("v = {v}")))
            .and_then(|t| t.get("v").and_then(toml::Value::as_integer));
        assert_eq!(
            default,
            Some(want as i64),
            "docs/configuration.md:{}: the default of `{path}`",
            row.line
        );
    }
}

#[test]
fn complete_examples_load_and_use_every_key() {
    let fx = Fixture::new();
    let doc = Doc::parse(DOC);
    let schemas = schemas(&fx);
    let mut used: BTreeMap<Ns, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();

    // Each `cordon.toml` block starts a configuration; policy blocks join it.
    let mut configs: Vec<Vec<&Block>> = Vec::new();
    for b in &doc.blocks {
        if b.file == "cordon.toml" {
            configs.push(vec![b]);
        } else if let Some(c) = configs.last_mut()
            && b.file.starts_with("policies/")
        {
            c.push(b);
        } else {
            problems.push(format!(
                "docs/configuration.md:{}: `{}` is not part of a configuration",
                b.line, b.file
            ));
        }
    }
    assert!(!configs.is_empty(), "no complete example");
    for c in &configs {
        let files: Vec<(&str, &str)> = c
            .iter()
            .map(|b| (b.file.as_str(), b.text.as_str()))
            .collect();
        if let Err(e) = fx.load_texts(&files) {
            problems.push(format!(
                "docs/configuration.md:{}: the example configuration does not load:\n{e}",
                c[0].line
            ));
        }
        for b in c {
            let ns = match b.file.as_str() {
                "cordon.toml" => Ns::Gateway,
                "policies/_floor.toml" => Ns::Floor,
                _ => Ns::Policy,
            };
            let Ok(t) = b.text.parse::<toml::Table>() else {
                continue; // reported by the load above
            };
            if let Some(schema) = schemas.get(&ns) {
                schema.used("", &t, used.entry(ns).or_default());
            }
        }
    }
    for (&ns, schema) in &schemas {
        for path in schema.kinds.keys() {
            // A key of a table that shares another's keys is used when that
            // other table's key is.
            let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
            let (ns, path) = match section_for(&doc, ns, table) {
                Some(s) => (s.ns, join(&s.path, key)),
                None => (ns, path.clone()),
            };
            let seen = used.get(&ns).is_some_and(|u| u.contains(&path));
            if !seen {
                problems.push(format!("{ns}: no complete example uses `{path}`"));
            }
        }
    }
    failures(&problems);
}

#[test]
fn require_header_rules_are_the_parsers() {
    let fx = Fixture::new();
    let doc = Doc::parse(DOC);
    let cfg = fx.load(&Files::base()).expect("the base loads");
    let table = &cfg.table;
    let mut problems = Vec::new();

    let known = match cordon::policy::parse_require("zz_unknown=1", table) {
        Err(e) => {
            let m = e.to_string();
            m.split_once("(known: ")
                .map(|(_, l)| l.trim_end_matches(')'))
                .unwrap_or_default()
                .split(", ")
                .map(str::to_owned)
                .collect::<BTreeSet<String>>()
        }
        Ok(_) => panic!("an unknown rule must be refused"),
    };
    let documented: BTreeSet<String> = doc
        .require_rows
        .iter()
        .filter(|r| r.cells.contains_key("rule"))
        .filter_map(|r| code_spans(r.cell("rule")).into_iter().next())
        .collect();
    assert!(!known.is_empty());
    if known != documented {
        problems.push(format!(
            "x-cordon-require rules: the parser knows {known:?}, the document lists {documented:?}"
        ));
    }
    for r in &doc.require_rows {
        let at = format!("docs/configuration.md:{}", r.line);
        for ex in code_spans(r.cell("example")) {
            if let Err(e) = cordon::policy::parse_require(&ex, table) {
                problems.push(format!("{at}: `{ex}` is refused: {e}"));
            }
        }
        match error_examples(r.cell("error")) {
            Err(e) => problems.push(format!("{at}: error cell: {e}")),
            Ok(list) if list.is_empty() => {
                problems.push(format!("{at}: no `header` → `message` entry"))
            }
            Ok(list) => {
                for ex in list {
                    let ErrorExample::Written(header, message) = ex else {
                        problems.push(format!("{at}: `omitted` means nothing for a header"));
                        continue;
                    };
                    match cordon::policy::parse_require(&header, table) {
                        Ok(_) => problems.push(format!("{at}: `{header}` is accepted")),
                        Err(e) if e.to_string() == message => {}
                        Err(e) => problems.push(format!(
                            "{at}: `{header}` gives\n    {e}\n  not\n    {message}"
                        )),
                    }
                }
            }
        }
    }
    failures(&problems);
}

#[test]
fn the_loader_shows_the_shape_of_each_key() {
    let fx = Fixture::new();
    let s = schemas(&fx);
    let kind = |ns: Ns, path: &str| s.get(&ns).and_then(|s| s.kinds.get(path)).cloned();
    assert_eq!(kind(Ns::Gateway, "server"), Some(Kind::Table));
    assert_eq!(kind(Ns::Gateway, "server.listen"), Some(Kind::Leaf));
    assert_eq!(kind(Ns::Gateway, "regions"), Some(Kind::Map));
    assert_eq!(kind(Ns::Gateway, "providers"), Some(Kind::ArrayOfTables));
    assert_eq!(kind(Ns::Gateway, "providers.models"), Some(Kind::Map));
    assert_eq!(kind(Ns::Gateway, "providers.data"), Some(Kind::Table));
    assert_eq!(kind(Ns::Gateway, "providers.data.expires"), Some(Kind::Map));
    assert_eq!(
        kind(Ns::Gateway, "providers.data.review_by"),
        Some(Kind::Leaf)
    );
    assert_eq!(kind(Ns::Policy, "projects"), Some(Kind::MapOfTables));
    assert_eq!(kind(Ns::Policy, "projects.*.data"), Some(Kind::Table));
    assert_eq!(kind(Ns::Policy, "models.allow"), Some(Kind::Leaf));
    assert_eq!(kind(Ns::Floor, "data.no_training"), Some(Kind::Leaf));
    assert_eq!(kind(Ns::Floor, "tenant"), None);
}

#[test]
fn code_spans_read_like_commonmark() {
    assert_eq!(code_spans("`a` and `b`"), ["a", "b"]);
    assert_eq!(code_spans("`` `x` is bad ``"), ["`x` is bad"]);
    assert_eq!(code_spans("``a`b``"), ["a`b"]);
    assert_eq!(code_spans("no span ` here"), Vec::<String>::new());
    assert_eq!(
        split_row(r"| `a\|b` | c |"),
        ["`a|b`".to_owned(), "c".to_owned()]
    );
    assert_eq!(
        expected_fields("unknown field `zz`, expected `header` or `env`"),
        ["header", "env"]
    );
    assert_eq!(
        expected_fields("unknown field `zz`, expected one of `a`, `b`, `c`"),
        ["a", "b", "c"]
    );
}
