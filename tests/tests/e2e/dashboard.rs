//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against a real relay, connector and local target. Signs in, watches a channel's queued count
//! rise after a webhook, finds the message among the dead letters after the target rejected
//! it, replays it from the page and sees it delivered; saves a screenshot as
//! `dashboard.png` in the test's output directory (`CARGO_TARGET_TMPDIR`).
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver` packages,
//! installed by `scripts/services.sh`. Without them this test fails; it never skips.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use webhook_connect_tests::sink::Sink;
use webhook_connect_tests::stack::{Backend, Connector, Relay, TempDir, relay_toml_with};
use webhook_connector::config::{ChannelConfig, ConnectorConfig, Protocol, TargetConfig};

const TOKEN: &str = "ui-channel-token-0123456789";
const ADMIN: &str = "ui-admin-token-0123456789";

/// How long the page gets to show something (it polls every 2–3 s).
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver child process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): install Debian's chromium and \
                     chromium-driver (scripts/services.sh does)"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Driver { child, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not come up on {url}");
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits until the element at `css` shows `want`; the text it last showed on failure.
async fn wait_text(page: &Client, css: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(el) = page.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if text.trim() == want {
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} never showed {want:?} (last: {last:?})");
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[tokio::test]
async fn dashboard_signs_in_watches_a_queue_and_replays_a_dead_letter() {
    let dir = TempDir::new("dashboard").unwrap();
    let channels =
        format!("[[channels]]\nname = \"orders\"\ntoken = \"{TOKEN}\"\n[channels.webhooks.shop]\n");
    let toml = format!(
        "[admin]\ntoken = \"{ADMIN}\"\n{}",
        relay_toml_with(&dir.0, &Backend::Embedded, &channels)
    );
    let mut relay = Relay::start(&dir.0, &toml, "127.0.0.1:0").await.unwrap();
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let driver = Driver::start().await;
    let page = driver.browser().await;

    // The files: content types, CSP, caching.
    let http = reqwest::Client::new();
    let index = http
        .get(format!("{}/admin/ui/", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let csp = index.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let etag = index.headers()["etag"].clone();
    let again = http
        .get(format!("{}/admin/ui/", relay.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let js = http
        .get(format!("{}/admin/ui/app.js", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    // Sign in.
    page.goto(&format!("{}/admin/ui/", relay.base))
        .await
        .unwrap();
    page.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    page.find(Locator::Css("#signin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let queued = r#"tr[data-channel="orders"] td.queued"#;
    wait_text(&page, queued, "0").await;
    let url = page.current_url().await.unwrap();
    assert!(
        !url.as_str().contains(ADMIN),
        "the token never goes in a URL"
    );

    // A webhook, no connector yet: the page shows it queued, without a reload.
    let accepted: Value = http
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/json")
        .body("{\"order\":42}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    wait_text(&page, queued, "1").await;

    // The target rejects it once (400: dead letter at once), then accepts.
    sink.script_answers(&[(400, "unknown order")]);
    let mut target = TargetConfig::new(sink.url());
    target.retry.enabled = false;
    let mut channel = ChannelConfig::new("orders", TOKEN);
    channel.protocol = Protocol::WebSocket;
    channel.default_target = Some(target);
    let mut config = ConnectorConfig::new(&relay.base, channel);
    config.reconnect.initial = Duration::from_millis(100);
    let mut connector = Connector::start_with(config).await.unwrap();
    wait_text(&page, queued, "0").await;
    wait_text(&page, r#"tr[data-channel="orders"] td.dead-letters"#, "1").await;

    // Dead letters page: the message is there; replay it from the page.
    page.goto(&format!(
        "{}/admin/ui/#/channel/orders/dead-letters",
        relay.base
    ))
    .await
    .unwrap();
    let row = format!(r#"tr[data-message-id="{id}"]"#);
    wait_text(&page, &format!("{row} td:nth-child(4)"), "rejected").await;
    screenshot(&page, "dashboard-dead-letters.png").await;
    page.find(Locator::Css(&format!("{row} button.replay")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        sink.wait_for(2, WAIT).await,
        2,
        "the replay reaches the target"
    );
    let replayed = &sink.received()[1];
    assert_eq!(replayed.header("x-webhook-replayed"), Some("true"));
    assert_eq!(replayed.header("x-webhook-replay-count"), Some("1"));

    // The message page shows it delivered, with both attempts.
    page.goto(&format!("{}/admin/ui/#/messages/{id}", relay.base))
        .await
        .unwrap();
    wait_text(&page, "#trace-state", "delivered").await;
    wait_text(
        &page,
        "#trace-attempts tbody tr:nth-child(1) td.target-status",
        "400",
    )
    .await;
    wait_text(
        &page,
        "#trace-attempts tbody tr:nth-child(2) td.target-status",
        "200",
    )
    .await;
    screenshot(&page, "dashboard.png").await;

    // Back on the overview: nothing queued, no dead letters.
    page.goto(&format!("{}/admin/ui/#/", relay.base))
        .await
        .unwrap();
    wait_text(&page, r#"tr[data-channel="orders"] td.dead-letters"#, "0").await;

    page.close().await.unwrap();
    connector.stop().await;
    relay.stop().await.unwrap();
}
