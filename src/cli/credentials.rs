//! `cordon credentials rotate-master`: re-seals every BYOK credential under a
//! new master key, in one transaction, while gateways keep serving.
//!
//! The current key comes from `CORDON_MASTER_KEY` / `CORDON_MASTER_KEY_FILE`
//! as for `serve`; the new one from the file given by `--new-key-file` (64
//! hex characters), never from the command line, where `ps` would show it.
//! Running gateways keep the credentials they opened before and warn that the
//! store now holds values sealed under another key; restart them with the new
//! key (in any order: every row is under the new key once this returns).
//! A credential deleted or set again while this runs makes it fail, changing
//! nothing (run it again). A second run with the same keys re-seals only
//! what is still under the old key: a credential set through a gateway that
//! still ran with it; so run it again once every gateway has restarted.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::keys::with_store;
use crate::audit::{ACTOR_CLI, NewAuditEntry, Outcome};
use crate::clock;
use crate::config::ProcessEnv;
use crate::credentials::{self, KeyOrigin, MasterKey, Sealed};
use crate::store::{CredentialRow, StoreError};
use crate::upstream::byok::to_stored;

pub fn rotate_master(
    config: &Path,
    new_key_file: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let old = match MasterKey::from_env(&ProcessEnv) {
        Ok(Some(k)) => k,
        Ok(None) => {
            writeln!(
                err,
                "error: set CORDON_MASTER_KEY or CORDON_MASTER_KEY_FILE to the master key in use"
            )?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let new = match std::fs::read_to_string(new_key_file)
        .map_err(|e| format!("cannot read {}: {e}", new_key_file.display()))
        .and_then(|text| {
            MasterKey::from_hex(text.trim(), KeyOrigin::File(new_key_file.to_path_buf()))
                .map_err(|e| e.to_string())
        }) {
        Ok(k) => k,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if new.id() == old.id() {
        writeln!(err, "error: the new master key is the key in use")?;
        return Ok(ExitCode::FAILURE);
    }
    let now = clock::now_ms();
    let result = with_store(&cfg, async |store| {
        let rows = store.all_credentials().await?;
        let mut resealed = Vec::new();
        let mut failed = Vec::new();
        for row in rows {
            let Some(stored) = &row.sealed else { continue };
            if stored.master_key_id == new.id() {
                continue;
            }
            let sealed = Sealed::from_parts(
                &stored.nonce,
                stored.ciphertext.clone(),
                stored.master_key_id.clone(),
            )
            .and_then(|s| credentials::reseal(&old, &new, &row.tenant, &row.provider, &s));
            match sealed {
                Ok(s) => {
                    let new = CredentialRow {
                        sealed: Some(to_stored(&s)),
                        updated_ms: now,
                        ..row.clone()
                    };
                    resealed.push((row, new));
                }
                Err(e) => failed.push(format!("{}/{}: {e}", row.tenant, row.provider)),
            }
        }
        if !failed.is_empty() {
            return Ok(Err(failed));
        }
        store.replace_credentials(&resealed).await?;
        store
            .append_audit(
                &NewAuditEntry::new(
                    now,
                    ACTOR_CLI,
                    "credentials.rotate_master",
                    Outcome::Success,
                )
                .detail("from", old.id())
                .detail("to", new.id())
                .detail("credentials", resealed.len()),
            )
            .await?;
        Ok::<_, StoreError>(Ok(resealed.len()))
    })?;
    match result {
        Ok(Ok(n)) => {
            writeln!(
                out,
                "re-sealed {n} credential{} under master key {} (was {}); restart every gateway with the new key",
                if n == 1 { "" } else { "s" },
                new.id(),
                old.id()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(failed)) => {
            for f in &failed {
                writeln!(err, "error: {f}")?;
            }
            writeln!(err, "nothing was changed")?;
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}
