//! `${NAME}` references in string values, resolved through an [`Env`] so
//! tests can use a map instead of the process environment.

use std::collections::HashMap;

/// Where `${NAME}` references are looked up.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// Why a string could not be expanded. Never holds a variable's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    #[error("`${{` without a closing `}}` or with an invalid variable name")]
    Malformed,
}

impl Env for ProcessEnv {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place that reads the process environment"
    )]
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Replaces every `${NAME}` in `s`; `$$` stands for a literal `$`.
pub fn expand(s: &str, env: &dyn Env) -> Result<String, EnvError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').ok_or(EnvError::Malformed)?;
            let name = &r[..end];
            if !is_var_name(name) {
                return Err(EnvError::Malformed);
            }
            out.push_str(
                &env.var(name)
                    .ok_or_else(|| EnvError::Missing(name.to_owned()))?,
            );
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `name` is a valid environment variable name.
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("HOST".to_owned(), "example.eu".to_owned())])
    }

    #[test]
    fn expands_references() {
        assert_eq!(
            expand("https://${HOST}/v1", &env()).unwrap(),
            "https://example.eu/v1"
        );
        assert_eq!(expand("no refs", &env()).unwrap(), "no refs");
        assert_eq!(expand("cost $5 and $$", &env()).unwrap(), "cost $5 and $");
    }

    #[test]
    fn missing_and_malformed_fail() {
        assert_eq!(
            expand("${NOPE}", &env()),
            Err(EnvError::Missing("NOPE".into()))
        );
        assert_eq!(expand("${HOST", &env()), Err(EnvError::Malformed));
        assert_eq!(expand("${1X}", &env()), Err(EnvError::Malformed));
    }
}
