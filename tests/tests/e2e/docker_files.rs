//! `docker/compose.yaml`, `docker/relay.toml` and `docker/Dockerfile` against the programs
//! (issue 23, item 6): both services' configurations, as compose assembles them (the image's
//! `ENV`, the service's `environment`, its secrets and mounted files), load with the relay's and
//! the connector's own loaders; the ports agree; each image's `HEALTHCHECK` runs the `health`
//! subcommand of the binary it ships.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use webhook_connect_tests::stack::TempDir;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(docker_dir().join("compose.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// `${NAME:?message}` as a value the user set, `${NAME:-default}` as its default.
fn interpolate(value: &str) -> String {
    let Some(start) = value.find("${") else {
        return value.to_owned();
    };
    let end = start + value[start..].find('}').unwrap();
    let inner = &value[start + 2..end];
    let replaced = match inner.split_once(":-") {
        Some((_, default)) => default.to_owned(),
        None => format!("set-by-the-user-{}", inner.split(':').next().unwrap()),
    };
    format!(
        "{}{replaced}{}",
        &value[..start],
        interpolate(&value[end + 1..])
    )
}

/// The `ENV` lines of one Dockerfile stage, then the service's `environment`, with
/// `/run/secrets/` pointing into `secrets`.
fn environment(stage: &str, service: &Value, secrets: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in dockerfile_env(stage) {
        env.insert(k, v);
    }
    for (k, v) in service["environment"].as_object().unwrap() {
        let v = interpolate(v.as_str().unwrap());
        env.insert(
            k.clone(),
            v.replace("/run/secrets", &secrets.display().to_string()),
        );
    }
    env
}

/// The text of one stage (`FROM … AS stage`) of the Dockerfile.
fn dockerfile_stage(stage: &str) -> String {
    let text = std::fs::read_to_string(docker_dir().join("Dockerfile")).unwrap();
    let start = text
        .find(&format!(" AS {stage}\n"))
        .unwrap_or_else(|| panic!("no stage {stage}"));
    let rest = &text[start..];
    let end = rest[1..].find("\nFROM ").map_or(rest.len(), |e| e + 1);
    rest[..end].to_owned()
}

/// `ENV A=1 \ B=2` of a stage.
fn dockerfile_env(stage: &str) -> Vec<(String, String)> {
    let stage = dockerfile_stage(stage).replace("\\\n", " ");
    stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Writes every secret of the compose file into `dir` under its name: a certificate and key
/// for the TLS ones, a token for the others.
fn write_secrets(compose: &Value, dir: &Path) {
    let cert = rcgen::generate_simple_self_signed(vec!["relay".to_owned()]).unwrap();
    for name in compose["secrets"].as_object().unwrap().keys() {
        let text = match name.as_str() {
            "relay_cert" | "relay_ca" => cert.cert.pem(),
            "relay_key" => cert.key_pair.serialize_pem(),
            other => format!("{other}-0123456789abcdef0123456789abcdef\n"),
        };
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn container_port(service: &Value) -> u16 {
    let mapping = service["ports"][0].as_str().unwrap();
    mapping.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn compose_configurations_load_with_the_programs_loaders() {
    let compose = compose();
    let dir = TempDir::new("docker-files").unwrap();
    let secrets = dir.0.join("secrets");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    write_secrets(&compose, &secrets);

    // Relay: the mounted relay.toml, with the container paths moved into the temp directory.
    let relay = &compose["services"]["relay"];
    let mount = relay["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.contains(":/etc/webhook-relay/relay.toml"))
        .expect("relay.toml is mounted where WEBHOOK_RELAY_CONFIG points");
    let source = docker_dir().join(mount.split(':').next().unwrap());
    let text = std::fs::read_to_string(source)
        .unwrap()
        .replace("/run/secrets", &secrets.display().to_string())
        .replace("/var/lib/webhook-connect", &data.display().to_string());
    let relay_toml = dir.0.join("relay.toml");
    std::fs::write(&relay_toml, text).unwrap();
    let env = environment("relay", relay, &secrets);
    assert_eq!(
        env.get("WEBHOOK_RELAY_CONFIG").map(String::as_str),
        Some("/etc/webhook-relay/relay.toml")
    );
    let options = webhook_relay::config::LoadOptions {
        config_path: Some(relay_toml),
        env: env
            .into_iter()
            .filter(|(k, _)| k != "WEBHOOK_RELAY_CONFIG")
            .collect(),
        ..Default::default()
    };
    let config = webhook_relay::config::load(&options)
        .unwrap_or_else(|e| panic!("docker/relay.toml: {:?}", e.errors));
    let listen_port: u16 = config
        .file
        .server
        .listen
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(listen_port, container_port(relay), "published port");
    assert!(
        config.file.server.tls_cert_file.is_some(),
        "the relay speaks TLS"
    );
    assert_eq!(config.channels.len(), 1);

    // Connector: configured by the image's and the service's variables only.
    let connector = &compose["services"]["connector"];
    let env = environment("connector", connector, &secrets);
    let lookup = |name: &str| env.get(name).cloned();
    let (config, _) = webhook_connector::config::load::load_with_env(
        &webhook_connector::config::Flags::default(),
        &lookup,
    )
    .unwrap_or_else(|e| panic!("connector service: {e}"));
    assert_eq!(
        config.cloud_url,
        format!("https://relay:{listen_port}"),
        "the connector reaches the relay's listener over TLS"
    );
    assert!(
        config.health_listen.is_some(),
        "the image's health check needs the health listener"
    );
    assert!(matches!(
        config.channels[0].token,
        webhook_connector::config::TokenSource::File(_)
    ));
}

#[test]
fn each_image_checks_its_health_with_its_own_binary() {
    for (stage, binary) in [
        ("relay", "webhook-relay"),
        ("connector", "webhook-connector"),
    ] {
        let text = dockerfile_stage(stage);
        assert!(
            text.contains(&format!("/target/release/{binary} /usr/local/bin/{binary}")),
            "{stage}: ships {binary}"
        );
        let check = text
            .lines()
            .find(|l| l.starts_with("HEALTHCHECK"))
            .unwrap_or_else(|| panic!("{stage}: no HEALTHCHECK"));
        assert!(
            check.ends_with(&format!("CMD [\"{binary}\", \"health\"]")),
            "{stage}: {check}"
        );
        assert!(
            !check.contains("/bin/sh"),
            "{stage}: no shell in the image's check"
        );
    }
}
