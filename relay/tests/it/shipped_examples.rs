//! Every relay example under `docs/examples` loads and builds a relay.

use std::path::PathBuf;

use webhook_relay::config::{FlagOverrides, LoadOptions, load};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

fn env() -> Vec<(String, String)> {
    [
        ("PAYMENTS_CHANNEL_TOKEN", "payments-token-0123456789"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_example"),
        ("GITHUB_WEBHOOK_SECRET", "gh-example"),
        ("ORDERS_CHANNEL_TOKEN", "orders-token-0123456789"),
        ("SHOP_SECRET", "shop-secret"),
        ("REFUNDS_BEARER", "refunds-bearer"),
        ("PG_PASSWORD", "pg"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn the_shipped_relay_examples_load_and_build_r121() {
    let dir = crate::support::temp_dir("examples");
    let mut options = LoadOptions {
        config_path: Some(examples().join("relay.toml")),
        flags: FlagOverrides::default(),
        env: env(),
    };
    options.env.push((
        "WEBHOOK_RELAY_BUFFER__EMBEDDED__PATH".into(),
        dir.join("r.db").display().to_string(),
    ));
    options.env.push((
        "WEBHOOK_RELAY_STATE__PATH".into(),
        dir.join("s.json").display().to_string(),
    ));
    options.env.push((
        "WEBHOOKS_CONFIG_FILE".into(),
        examples().join("webhooks.json").display().to_string(),
    ));
    options.env.push((
        "CONNECTIONS_CONFIG_FILE".into(),
        examples().join("connections.json").display().to_string(),
    ));
    let config = load(&options).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["payments", "orders"]);
    // Building the relay also builds every webhook's authentication from the examples.
    let buffer = webhook_relay::open_buffer(&config).await.unwrap();
    let state = webhook_relay::build_state(config, buffer).await.unwrap();
    assert!(state.has_webhook("stripe") && state.has_webhook("shop-refunds"));
    state.close_buffer().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
