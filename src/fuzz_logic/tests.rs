//! Replays the committed seeds (`fuzz/corpus/<target>/`) through each
//! target's logic, so `cargo test --features fuzzing` checks them on stable
//! without cargo-fuzz or nightly.

use std::path::Path;

fn replay(target: &str, logic: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        logic(&std::fs::read(&path).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 4, "{}: only {seeds} seeds", dir.display());
}

#[test]
fn routing_seeds() {
    replay("routing", super::routing);
}

#[test]
fn sse_seeds() {
    replay("sse", super::sse);
}

#[test]
fn translate_seeds() {
    replay("translate", super::translate);
}

#[test]
fn provider_error_seeds() {
    replay("provider_error", super::provider_error);
}

#[test]
fn admin_request_seeds() {
    replay("admin_request", super::admin_request);
}

#[test]
fn every_sse_relay_and_every_cut_of_a_seed() {
    let seed = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";
    for relay in 0..6u8 {
        for cut in 0..=64u8 {
            let mut input = vec![relay, 32, cut, 255, 1, 0];
            input.extend_from_slice(seed);
            super::sse(&input);
        }
    }
}
