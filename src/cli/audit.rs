//! `cordon audit verify`: reads the whole audit log in pages and checks its
//! hash chain (`crate::audit`). Prints the newest hash, which an operator can
//! record elsewhere: the chain alone cannot show that its newest entries were
//! removed.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::keys::with_store;
use crate::audit::{ChainBreak, VerifiedChain, Verifier};

/// Entries read per query.
const PAGE: u32 = 1_000;

pub fn verify(config: &Path, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let result = with_store(&cfg, async |store| {
        let mut verifier = Verifier::new();
        let mut after = 0;
        loop {
            let page = store.audit_page(after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(Ok(verifier.finish()));
            };
            after = last.seq;
            for e in &page {
                if let Err(b) = verifier.push(e) {
                    return Ok(Err(b));
                }
            }
        }
    })?;
    let verified: Result<VerifiedChain, ChainBreak> = match result {
        Ok(v) => v,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    match verified {
        Ok(v) => {
            let entries = if v.count == 1 { "entry" } else { "entries" };
            writeln!(
                out,
                "{} {entries}, chain intact; last hash {}",
                v.count, v.last_hash
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            writeln!(err, "error: {b}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}
