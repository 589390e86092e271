use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const HEX_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const CANARY: &str = "sk-byok-canary-0123456789abcdef";

fn key(hex: &str) -> MasterKey {
    MasterKey::from_hex(hex, KeyOrigin::Var).unwrap()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Standard base64 with padding, written out so the test needs no crate.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// === sealing ===

#[test]
fn a_sealed_credential_opens_for_its_tenant_and_provider() {
    let k = key(HEX_A);
    let sealed = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    assert_eq!(sealed.master_key_id, k.id());
    assert_eq!(
        sealed.ciphertext.len(),
        CANARY.len() + 16,
        "ciphertext and tag"
    );
    let opened = open(&k, "acme", "azure-fr", &sealed).unwrap();
    assert_eq!(opened.expose(), CANARY);
    assert_eq!(format!("{opened:?}"), "*****");
}

#[test]
fn two_seals_of_one_credential_differ() {
    let k = key(HEX_A);
    let a = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    let b = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_eq!(open(&k, "acme", "azure-fr", &b).unwrap().expose(), CANARY);
}

#[test]
fn a_row_moved_to_another_tenant_or_provider_does_not_open() {
    let k = key(HEX_A);
    let sealed = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    for (tenant, provider) in [
        ("globex", "azure-fr"),
        ("acme", "mistral-eu"),
        ("acmeazure-fr", ""),
        ("", "acmeazure-fr"),
        ("acm", "eazure-fr"),
    ] {
        let err = open(&k, tenant, provider, &sealed).unwrap_err();
        assert_eq!(
            err,
            CredentialError::DoesNotAuthenticate {
                tenant: tenant.to_owned(),
                provider: provider.to_owned(),
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("moved to another tenant or provider, or altered"),
            "{message}"
        );
        assert!(!message.contains(CANARY));
    }
}

#[test]
fn an_altered_row_does_not_open() {
    let k = key(HEX_A);
    let sealed = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    let mut flipped = sealed.clone();
    flipped.ciphertext[0] ^= 1;
    let mut other_nonce = sealed.clone();
    other_nonce.nonce[11] ^= 1;
    let mut truncated = sealed;
    truncated.ciphertext.truncate(10);
    for s in [flipped, other_nonce, truncated] {
        assert!(matches!(
            open(&k, "acme", "azure-fr", &s),
            Err(CredentialError::DoesNotAuthenticate { .. })
        ));
    }
}

#[test]
fn another_master_key_is_named_not_tried() {
    let (a, b) = (key(HEX_A), key(HEX_B));
    assert_ne!(a.id(), b.id());
    let sealed = seal(&a, "acme", "azure-fr", CANARY).unwrap();
    let err = open(&b, "acme", "azure-fr", &sealed).unwrap_err();
    assert_eq!(
        err,
        CredentialError::OtherMasterKey {
            sealed_with: a.id().to_owned(),
            in_use: b.id().to_owned(),
        }
    );
    // A row whose key id was edited to the key in use still fails: the key
    // is wrong, so the tag does not verify.
    let relabelled = Sealed {
        master_key_id: b.id().to_owned(),
        ..sealed
    };
    assert!(matches!(
        open(&b, "acme", "azure-fr", &relabelled),
        Err(CredentialError::DoesNotAuthenticate { .. })
    ));
}

#[test]
fn reseal_moves_a_credential_to_the_new_master_key() {
    let (old, new) = (key(HEX_A), key(HEX_B));
    let sealed = seal(&old, "acme", "azure-fr", CANARY).unwrap();
    let resealed = reseal(&old, &new, "acme", "azure-fr", &sealed).unwrap();
    assert_eq!(resealed.master_key_id, new.id());
    assert_eq!(
        open(&new, "acme", "azure-fr", &resealed).unwrap().expose(),
        CANARY
    );
    assert!(matches!(
        open(&old, "acme", "azure-fr", &resealed),
        Err(CredentialError::OtherMasterKey { .. })
    ));
    // Resealing with the wrong old key fails and seals nothing.
    assert!(matches!(
        reseal(&new, &old, "acme", "azure-fr", &sealed),
        Err(CredentialError::OtherMasterKey { .. })
    ));
}

#[test]
fn the_stored_row_holds_no_form_of_the_credential() {
    let k = key(HEX_A);
    let sealed = seal(&k, "acme", "azure-fr", CANARY).unwrap();
    let mut row = sealed.ciphertext.clone();
    row.extend_from_slice(&sealed.nonce);
    row.extend_from_slice(sealed.master_key_id.as_bytes());
    let printed = format!("{sealed:?}");
    let forms = [
        CANARY.as_bytes().to_vec(),
        // Long enough that a chance match is impossible.
        CANARY.as_bytes()[..12].to_vec(),
        hex::encode(CANARY).into_bytes(),
        hex::encode_upper(CANARY).into_bytes(),
        base64(CANARY.as_bytes())
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
    ];
    for form in &forms {
        assert!(!contains(&row, form), "{}", String::from_utf8_lossy(form));
        assert!(!contains(printed.as_bytes(), form));
        assert!(!contains(hex::encode(&row).as_bytes(), form));
        assert!(!contains(base64(&row).as_bytes(), form));
    }
}

#[test]
fn a_non_utf8_plaintext_is_reported_as_such() {
    let k = key(HEX_A);
    let aad = associated_data("acme", "p");
    let nonce = [7u8; 12];
    let ciphertext = k
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &[0xff, 0xfe],
                aad: &aad,
            },
        )
        .unwrap();
    let sealed = Sealed {
        nonce,
        ciphertext,
        master_key_id: k.id().to_owned(),
    };
    assert_eq!(
        open(&k, "acme", "p", &sealed).unwrap_err(),
        CredentialError::NotUtf8 {
            tenant: "acme".into(),
            provider: "p".into()
        }
    );
}

#[test]
fn oversized_credentials_and_bad_nonces_are_refused() {
    let k = key(HEX_A);
    let big = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
    assert_eq!(
        seal(&k, "acme", "p", &big).unwrap_err(),
        CredentialError::TooLong
    );
    assert!(seal(&k, "acme", "p", &big[1..]).is_ok());
    assert_eq!(
        Sealed::from_parts(&[0; 11], vec![], k.id().to_owned()).unwrap_err(),
        CredentialError::NonceLength(11)
    );
    let sealed = seal(&k, "acme", "p", CANARY).unwrap();
    let back = Sealed::from_parts(
        &sealed.nonce,
        sealed.ciphertext.clone(),
        sealed.master_key_id.clone(),
    )
    .unwrap();
    assert_eq!(back, sealed);
}

// === the master key ===

#[test]
fn the_master_key_comes_from_the_variable_or_the_file() {
    assert!(MasterKey::from_env(&env(&[])).unwrap().is_none());

    let from_var = MasterKey::from_env(&env(&[(MASTER_KEY_VAR, HEX_A)]))
        .unwrap()
        .unwrap();
    let upper = MasterKey::from_env(&env(&[(MASTER_KEY_VAR, &HEX_A.to_uppercase())]))
        .unwrap()
        .unwrap();
    assert_eq!(from_var.id(), upper.id());
    assert_eq!(from_var.id().len(), 16);
    assert_eq!(format!("{from_var:?}"), "*****");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("\n  {HEX_A}\n\n")).unwrap();
    let from_file = MasterKey::from_env(&env(&[(MASTER_KEY_FILE_VAR, path.to_str().unwrap())]))
        .unwrap()
        .unwrap();
    assert_eq!(from_file.id(), from_var.id());
    let sealed = seal(&from_var, "acme", "p", CANARY).unwrap();
    assert_eq!(
        open(&from_file, "acme", "p", &sealed).unwrap().expose(),
        CANARY
    );
}

#[test]
fn a_malformed_master_key_is_an_error_that_does_not_show_it() {
    let check = |e: MasterKeyError, expected: &str| {
        let message = e.to_string();
        assert!(message.contains(expected), "{message}");
        for secret in [&HEX_A[..20], &HEX_A[40..]] {
            assert!(!message.contains(secret), "{message}");
            assert!(!format!("{e:?}").contains(secret));
        }
    };
    let err = |vars: &[(&str, &str)]| MasterKey::from_env(&env(vars)).unwrap_err();

    check(
        err(&[(MASTER_KEY_VAR, &HEX_A[..63])]),
        "`CORDON_MASTER_KEY` must hold 64 hex characters (32 bytes); it holds 63",
    );
    check(
        err(&[(MASTER_KEY_VAR, &format!("{HEX_A}0"))]),
        "it holds 65 characters",
    );
    check(
        err(&[(MASTER_KEY_VAR, &format!("{}g", &HEX_A[..63]))]),
        "`CORDON_MASTER_KEY` must hold only hex characters",
    );
    check(err(&[(MASTER_KEY_VAR, "")]), "it holds 0 characters");
    check(
        err(&[(MASTER_KEY_VAR, HEX_A), (MASTER_KEY_FILE_VAR, "/x")]),
        "set either `CORDON_MASTER_KEY` or `CORDON_MASTER_KEY_FILE`, not both",
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.key");
    check(
        err(&[(MASTER_KEY_FILE_VAR, missing.to_str().unwrap())]),
        "cannot read the master key file",
    );
    let short = dir.path().join("short.key");
    std::fs::write(&short, &HEX_A[..62]).unwrap();
    check(
        err(&[(MASTER_KEY_FILE_VAR, short.to_str().unwrap())]),
        "short.key (`CORDON_MASTER_KEY_FILE`) must hold 64 hex characters (32 bytes); it holds 62",
    );
    let huge = dir.path().join("huge.key");
    std::fs::write(&huge, "0".repeat(10_000)).unwrap();
    check(
        err(&[(MASTER_KEY_FILE_VAR, huge.to_str().unwrap())]),
        "it holds 4096 characters",
    );
}

// === properties ===

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{0,12}"
}

proptest! {
    #[test]
    fn any_credential_round_trips(
        secret in "\\PC{0,200}",
        tenant in name(),
        provider in name(),
        bytes in any::<[u8; 32]>(),
    ) {
        let k = MasterKey::from_bytes(bytes);
        let sealed = seal(&k, &tenant, &provider, &secret).unwrap();
        let opened = open(&k, &tenant, &provider, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), &secret);
    }

    #[test]
    fn a_credential_opens_only_for_the_pair_it_was_sealed_for(
        secret in "\\PC{1,50}",
        (tenant, provider) in (name(), name()),
        (other_tenant, other_provider) in (name(), name()),
    ) {
        prop_assume!((&tenant, &provider) != (&other_tenant, &other_provider));
        let k = key(HEX_A);
        let sealed = seal(&k, &tenant, &provider, &secret).unwrap();
        let other = open(&k, &other_tenant, &other_provider, &sealed);
        let is_auth_failure = matches!(other, Err(CredentialError::DoesNotAuthenticate { .. }));
        prop_assert!(is_auth_failure);
    }
}
