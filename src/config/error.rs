//! Configuration errors: file, line, dotted key and a message. Never the
//! file's text, and never a value that came from the environment.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole (unreadable, misnamed).
    pub line: Option<usize>,
    /// Dotted key, e.g. `providers.data.certifications`.
    pub key: Option<String>,
    pub message: String,
}

/// Every problem found in one load; the load as a whole is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Collects errors for one source file, turning byte spans into lines.
pub(super) struct Reporter<'a> {
    pub file: &'a Path,
    pub src: &'a str,
    pub errors: &'a mut Vec<ConfigError>,
}

// === impl ConfigError ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

// === impl ConfigErrors ===

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// === impl Reporter ===

impl Reporter<'_> {
    /// Records an error at byte offset `at` under `key`.
    pub fn at(&mut self, at: usize, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line_of(self.src, at)),
            key: Some(key.to_owned()),
            message: message.into(),
        });
    }

    /// Records an error about the whole file.
    pub fn file(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        });
    }

    /// Records a TOML syntax or shape error, naming the key found at its span.
    pub fn toml(&mut self, e: &toml::de::Error) {
        let at = e.span().map(|s| s.start);
        let message = e.message().trim_end();
        let key = match (at, missing_field(message)) {
            // The span of a missing field is its table: name the table and the field.
            (Some(at), Some(field)) => Some(match table_at(self.src, at) {
                Some(t) => format!("{t}.{field}"),
                None => field.to_owned(),
            }),
            (Some(at), None) => key_at(self.src, at),
            (None, field) => field.map(str::to_owned),
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: at.map(|at| line_of(self.src, at)),
            key,
            message: message.to_owned(),
        });
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The table whose span starts at `at`: a `[header]` line, an inline table
/// after `key =`, or the root (`None`).
fn table_at(src: &str, at: usize) -> Option<String> {
    let at = at.min(src.len());
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[at..].find('\n').map_or(src.len(), |i| at + i);
    let line = &src[line_start..line_end];
    if let Some(h) = header_name(line) {
        return Some(h.to_owned());
    }
    if at == 0 {
        return None;
    }
    // An inline table: the key path up to the `{` at `at`.
    let header = src[..line_start].lines().rev().find_map(header_name);
    let (stack, _) = inline_path(&src[line_start..at]);
    let mut parts: Vec<&str> = header.into_iter().collect();
    parts.extend(stack);
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The 1-based line of byte offset `at`.
pub(super) fn line_of(src: &str, at: usize) -> usize {
    let at = at.min(src.len());
    src.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1
}

/// Best-effort dotted key for byte offset `at`: the enclosing `[table]`
/// header, any inline tables opened before `at` on its line, and the key at
/// `at` (or the last key assigned before it).
pub(super) fn key_at(src: &str, at: usize) -> Option<String> {
    let at = at.min(src.len());
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[at..].find('\n').map_or(src.len(), |i| at + i);
    let line = &src[line_start..line_end];
    if let Some(h) = header_name(line) {
        return Some(h.to_owned());
    }
    let header = src[..line_start].lines().rev().find_map(header_name);
    let (stack, last) = inline_path(&src[line_start..at]);
    let here = assigned_key(&src[at..line_end]).filter(|k| !k.contains(' '));
    let mut parts: Vec<&str> = header.into_iter().collect();
    parts.extend(stack);
    parts.extend(here.or(last));
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Scans the start of a line: the keys of inline tables still open at its
/// end, and the last key assigned a plain value.
fn inline_path(prefix: &str) -> (Vec<&str>, Option<&str>) {
    let b = prefix.as_bytes();
    let mut stack = Vec::new();
    let mut last = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' && q == b'"' { 2 } else { 1 };
                }
                i += 1;
            }
            b'}' => {
                stack.pop();
                last = None;
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'.'))
                {
                    i += 1;
                }
                let word = &prefix[start..i];
                let rest = prefix[i..].trim_start();
                if let Some(after) = rest.strip_prefix('=') {
                    if after.trim_start().starts_with('{') {
                        stack.push(word);
                        last = None;
                    } else {
                        last = Some(word);
                    }
                }
            }
            _ => i += 1,
        }
    }
    (stack, last)
}

fn header_name(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.split('#').next()?.trim();
    let inner = t.strip_prefix("[[").and_then(|t| t.strip_suffix("]]"));
    let inner = inner.or_else(|| t.strip_prefix('[').and_then(|t| t.strip_suffix(']')))?;
    let inner = inner.trim();
    (!inner.is_empty() && !inner.contains('"') || inner.starts_with('"')).then_some(inner)
}

fn assigned_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (k, _) = t.split_once('=')?;
    let k = k.trim();
    let valid = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'));
    valid.then_some(k)
}
