//! Where a provider's credential comes from (`auth.env` or `auth.file`), and
//! reading it now. A credential that cannot be read leaves its provider
//! without one; the reason never includes the credential.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::env::Env;
use crate::secret::Secret;

/// A credential file larger than this is refused (it is not a key).
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 64 * 1024;

/// Where a provider's credential is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// An environment variable, read at start and on each reload.
    Env(String),
    /// A file (absolute, or resolved against the gateway file's directory),
    /// read at start, on each reload and whenever it changes; surrounding
    /// whitespace is ignored.
    File(PathBuf),
}

/// Why a provider has no usable credential. Never holds the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCredential {
    #[error("credential variable `{0}` is not set")]
    EnvUnset(String),
    #[error("credential variable `{0}` is empty")]
    EnvEmpty(String),
    #[error("credential file {} cannot be read: {error}", path.display())]
    FileUnreadable { path: PathBuf, error: String },
    #[error("credential file {} is empty", .0.display())]
    FileEmpty(PathBuf),
    #[error("credential file {} is not UTF-8 text", .0.display())]
    FileNotUtf8(PathBuf),
    #[error("credential file {} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes", .0.display())]
    FileTooLarge(PathBuf),
    #[error("the credential in {0} is not a valid HTTP header value")]
    NotHeaderValue(String),
}

// === impl CredentialSource ===

impl CredentialSource {
    /// Reads the credential now: the variable's value, or the file's text
    /// without surrounding whitespace. Unset, empty, unreadable, or not
    /// sendable as a header value: an error saying which.
    pub fn read(&self, env: &dyn Env) -> Result<Secret<String>, NoCredential> {
        let value = match self {
            CredentialSource::Env(name) => match env.var(name) {
                None => return Err(NoCredential::EnvUnset(name.clone())),
                Some(v) if v.is_empty() => return Err(NoCredential::EnvEmpty(name.clone())),
                Some(v) => Secret::new(v),
            },
            CredentialSource::File(path) => read_file(path)?,
        };
        // The bytes `http::HeaderValue` accepts: no control character but tab.
        let sendable = value
            .expose()
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if sendable {
            Ok(value)
        } else {
            Err(NoCredential::NotHeaderValue(self.to_string()))
        }
    }

    /// The file the credential is read from, if any (the reload watcher
    /// checks it for changes).
    pub fn file(&self) -> Option<&Path> {
        match self {
            CredentialSource::File(p) => Some(p),
            CredentialSource::Env(_) => None,
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Env(name) => write!(f, "variable `{name}`"),
            CredentialSource::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

fn read_file(path: &Path) -> Result<Secret<String>, NoCredential> {
    let unreadable = |e: std::io::Error| NoCredential::FileUnreadable {
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    // One byte over the bound tells a file that is too large.
    file.take(MAX_CREDENTIAL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE_BYTES {
        return Err(NoCredential::FileTooLarge(path.to_path_buf()));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| NoCredential::FileNotUtf8(path.to_path_buf()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(NoCredential::FileEmpty(path.to_path_buf()));
    }
    Ok(Secret::new(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CANARY: &str = "sk-file-canary-123";

    #[test]
    fn a_variable_or_a_file_gives_the_credential() {
        let env = HashMap::from([("KEY".to_owned(), CANARY.to_owned())]);
        let read = CredentialSource::Env("KEY".into()).read(&env).unwrap();
        assert_eq!(read.expose(), CANARY);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("  {CANARY}\r\n\n")).unwrap();
        let read = CredentialSource::File(path).read(&env).unwrap();
        assert_eq!(read.expose(), CANARY);
    }

    #[test]
    fn each_missing_credential_says_why_without_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, content: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            CredentialSource::File(p)
        };
        let env = HashMap::from([
            ("EMPTY".to_owned(), String::new()),
            ("NEWLINE".to_owned(), format!("{CANARY}\nx")),
        ]);
        let cases = [
            (
                CredentialSource::Env("UNSET".into()),
                "credential variable `UNSET` is not set".to_owned(),
            ),
            (
                CredentialSource::Env("EMPTY".into()),
                "credential variable `EMPTY` is empty".to_owned(),
            ),
            (
                CredentialSource::Env("NEWLINE".into()),
                "the credential in variable `NEWLINE` is not a valid HTTP header value".to_owned(),
            ),
            (
                CredentialSource::File(dir.path().join("absent")),
                format!(
                    "credential file {} cannot be read: No such file or directory",
                    dir.path().join("absent").display()
                ),
            ),
            (
                file("blank", b" \n\t\n"),
                format!(
                    "credential file {} is empty",
                    dir.path().join("blank").display()
                ),
            ),
            (
                file("binary", &[0xff, 0xfe, 0x00]),
                format!(
                    "credential file {} is not UTF-8 text",
                    dir.path().join("binary").display()
                ),
            ),
            (
                file("two-lines", format!("{CANARY}\n{CANARY}\n").as_bytes()),
                format!(
                    "the credential in file {} is not a valid HTTP header value",
                    dir.path().join("two-lines").display()
                ),
            ),
            (
                file("huge", &vec![b'a'; 70_000]),
                format!(
                    "credential file {} is larger than 65536 bytes",
                    dir.path().join("huge").display()
                ),
            ),
        ];
        for (source, expected) in cases {
            let err = source.read(&env).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with(&expected), "{message}");
            assert!(!message.contains(CANARY), "{message}");
            assert!(!format!("{err:?}").contains(CANARY));
        }
    }
}
