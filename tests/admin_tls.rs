//! `[admin_tls]`: the admin listener speaks HTTPS with its own certificate,
//! and with `client_ca` answers only clients presenting a certificate signed
//! by that CA.

#![expect(clippy::unwrap_used, reason = "test helpers")]

mod common;

use std::process::Command;

use common::{EU_TERMS, Gateway, GatewayBuilder, MockProvider};

const GPT: &str = r#""gpt-4o" = "gpt-4o""#;

/// A CA able to sign client certificates.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate and its key, in one PEM (as `Identity` takes it).
    fn client_identity(&self, name: &str) -> reqwest::Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
    }
}

/// A gateway whose admin listener has a self-signed certificate for
/// `localhost`, and `client_ca` when given; returns the certificate (PEM).
async fn gateway(client_ca: Option<&Ca>) -> (Gateway, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockProvider::start("eu").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let mut table = "[admin_tls]\ncert = \"admin.pem\"\nkey = \"admin.key\"".to_owned();
    let mut builder = GatewayBuilder::new()
        .provider("eu-host", &mock, GPT, EU_TERMS)
        .tenant("acme", "[data]\nprocessing_in = [\"EEA\"]\n")
        .file("admin.pem", cert.cert.pem())
        .file("admin.key", cert.signing_key.serialize_pem());
    if let Some(ca) = client_ca {
        table.push_str("\nclient_ca = \"clients-ca.pem\"");
        builder = builder.file("clients-ca.pem", ca.pem());
    }
    let gw = builder.gateway_tail(&table).start().await;
    (gw, cert.cert.pem())
}

fn client(server_cert: &str, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().no_proxy().tls_certs_only(vec![
        reqwest::Certificate::from_pem(server_cert.as_bytes()).unwrap(),
    ]);
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

fn admin_https(gw: &Gateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gw.admin.port())
}

/// The status and body of a GET, or `None` when no answer came.
async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

#[tokio::test]
async fn the_admin_listener_speaks_https_with_admin_tls() {
    let (gw, cert) = gateway(None).await;
    let https = client(&cert, None);
    assert_eq!(
        get(&https, &admin_https(&gw, "/healthz")).await,
        Some((200, "ok\n".to_owned()))
    );
    assert_eq!(
        get(&https, &admin_https(&gw, "/readyz")).await,
        Some((200, "ready\n".to_owned()))
    );
    let metrics = get(&https, &admin_https(&gw, "/metrics")).await.unwrap();
    assert_eq!(metrics.0, 200);
    assert!(metrics.1.contains("cordon_"), "{}", metrics.1);
    // Plain HTTP on the admin port gets no answer.
    let plain = get(&common::http(), &gw.admin_url("/healthz")).await;
    assert!(plain.as_ref().is_none_or(|(s, _)| *s != 200), "{plain:?}");
    // The client listener is unchanged: plain HTTP.
    let models = common::http()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401, "answers, asking for a key");
}

#[tokio::test]
async fn with_client_ca_only_a_client_certificate_signed_by_it_gets_an_answer() {
    let ca = Ca::new("cordon admin clients");
    let (gw, cert) = gateway(Some(&ca)).await;
    let url = admin_https(&gw, "/healthz");

    // No client certificate: the handshake is refused, no answer.
    assert_eq!(get(&client(&cert, None), &url).await, None);
    // A certificate from another CA: refused too.
    let rogue = Ca::new("someone else");
    let with_rogue = client(&cert, Some(rogue.client_identity("intruder")));
    assert_eq!(get(&with_rogue, &url).await, None);
    // A certificate signed by the configured CA: answered.
    let with_cert = client(&cert, Some(ca.client_identity("operator")));
    assert_eq!(get(&with_cert, &url).await, Some((200, "ok\n".to_owned())));
    assert_eq!(
        get(&with_cert, &admin_https(&gw, "/readyz")).await,
        Some((200, "ready\n".to_owned()))
    );
}

#[test]
fn an_unusable_client_ca_stops_serve_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("admin.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("admin.key"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    // Readable, so `check` accepts it, but no certificate in it.
    std::fs::write(dir.path().join("clients-ca.pem"), "not a certificate\n").unwrap();
    let config = dir.path().join("cordon.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://cordon.db\"\n\
         [admin_tls]\ncert = \"admin.pem\"\nkey = \"admin.key\"\nclient_ca = \"clients-ca.pem\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: admin_tls.client_ca {}: no certificate in it",
            dir.path().join("clients-ca.pem").display()
        )),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}
