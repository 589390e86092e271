//! Admin API helpers: admin tokens made by the CLI against a gateway's store,
//! and JSON calls to its admin listener.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Gateway, http};

/// Runs `cordon admin-token create` against `gw`'s configuration (and so its
/// store) and returns the raw token.
pub fn admin_token(gw: &Gateway, role: &str, tenant: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args(["admin-token", "create", "--config"])
        .arg(gw.dir.path().join("cordon.toml"))
        .args(["--role", role]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim()
        .to_owned()
}

/// The id of an admin token `cdnadm_<id>_<secret>` (what the audit log's
/// actor `token:<id>` names).
pub fn token_id(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_owned()
}

/// One admin call: the status and the body as JSON (`Null` if it is not).
pub async fn call(
    gw: &Gateway,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http().request(method, gw.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every audit entry (up to 10,000), as `token` may read them.
pub async fn audit_entries(gw: &Gateway, token: &str) -> Vec<Value> {
    let (s, v) = call(
        gw,
        Some(token),
        Method::GET,
        "/admin/audit?limit=10000",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["entries"].as_array().unwrap().clone()
}

/// One admin call: the status, the headers (one `name: value` a line) and
/// the body as text.
pub async fn call_raw(
    gw: &Gateway,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let mut req = http().request(method, gw.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = header_lines(resp.headers());
    let text = resp.text().await.unwrap();
    (status, headers, text)
}

/// Headers as text, one `name: value` a line.
pub fn header_lines(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}
