//! TLS on the relay's listeners (`docs/reference/config-formats.md` §2.1): with a certificate and key
//! configured, ingest, streams and the metrics listener speak HTTPS; plain HTTP gets no answer;
//! a key that does not fit the certificate is a configuration error naming the key.

use rcgen::KeyPair;

use crate::support::{TestRelay, free_port, temp_dir, tls_settings, write_pki};

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn with_a_certificate_the_listeners_speak_https_only() {
    let dir = temp_dir("tls");
    let ca = write_pki(&dir);
    let metrics_port = free_port();
    let relay = TestRelay::start_with_server(
        dir.clone(),
        &tls_settings(&dir),
        "",
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\""),
    )
    .await;
    let client = https_client(&ca);
    let base = format!("https://{}", relay.addr);
    let accepted = client
        .post(format!("{base}/webhook/shop"))
        .header("content-type", "application/json")
        .body(r#"{"over":"tls"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let status = client
        .get(format!("{base}/connect/status/orders"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.status(),
        200,
        "streaming endpoints are served over TLS too"
    );
    let metrics = crate::support::get_when_up(
        &client,
        &format!("https://127.0.0.1:{metrics_port}/metrics"),
        None,
    )
    .await;
    assert!(
        metrics.contains("webhook_relay_messages_accepted_total"),
        "the side listener uses the same certificate"
    );
    let plain = relay
        .http
        .post(format!("http://{}/webhook/shop", relay.addr))
        .body("{}")
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP is not answered: {plain:?}");
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_a_config_error() {
    let dir = temp_dir("tls-bad");
    write_pki(&dir);
    // Another key: valid PEM, wrong for the certificate.
    std::fs::write(
        dir.join("key.pem"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[state]\npath = \"{}\"\n",
            tls_settings(&dir),
            dir.join("state.json").display()
        ),
    )
    .unwrap();
    let loaded = webhook_relay::config::load(&webhook_relay::config::LoadOptions {
        config_path: Some(file),
        flags: webhook_relay::config::FlagOverrides::default(),
        env: vec![],
    });
    let errors = loaded
        .expect_err("a mismatched key is refused")
        .errors
        .join("\n");
    assert!(errors.contains("server.tls_key_file"), "{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}
