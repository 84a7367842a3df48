//! The closed set of module names (`docs/reference/module-contract.md` §2.5) and the one `match` that builds a module
//! instance from its [`ModuleSettings`].
//!
//! Every module lives in its own file under `output/` and exposes
//! `pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>>`:
//! it reads its keys with [`ModuleSettings::config_reader`] (unknown keys are warnings, wrong
//! types and values are errors naming the path) and returns `None` when the configuration is
//! unusable. A module that is not written yet is an honest load error, never a stand-in that
//! pretends to deliver.

use super::{ModuleSettings, Output};
use crate::settings::Problems;

/// Every module name the connector knows, sorted (the list in the unknown-name error).
pub const MODULES: &[&str] = &[
    "activemq",
    "aws_sqs",
    "clickhouse",
    "gcp_pubsub",
    "http_webhook",
    "kafka",
    "log",
    "mqtt",
    "mysql",
    "nats",
    "postgresql",
    "rabbitmq",
    "redis_publish",
    "redis_rq",
    "s3",
    "save_to_disk",
    "websocket",
    "zeromq",
];

/// Accepted spellings of modules that have another canonical name.
pub const ALIASES: &[(&str, &str)] = &[("postgres", "postgresql"), ("mariadb", "mysql")];

/// Longest module name.
pub const MAX_NAME_LEN: usize = 64;

fn well_formed(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("--")
        && !name.contains("__")
}

/// The canonical name of module `name` (aliases resolved), or the load error's text.
pub fn resolve(name: &str) -> Result<&'static str, String> {
    if name.is_empty() {
        return Err("module name must not be empty".into());
    }
    if !well_formed(name) {
        return Err(format!(
            "invalid module name {name:?}: at most {MAX_NAME_LEN} characters from \
             [A-Za-z0-9_-], starting with a letter or digit, without '--' or '__'"
        ));
    }
    if name == "webhook_connect" {
        return Err("module 'webhook_connect' is only available on the relay".into());
    }
    if let Some((_, canonical)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Ok(canonical);
    }
    MODULES
        .iter()
        .find(|m| **m == name)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown module '{name}'; valid modules: {}",
                MODULES.join(", ")
            )
        })
}

/// Builds the instance of `settings.module` (a name returned by [`resolve`]). Problems are
/// recorded with their paths; `None` when the configuration is unusable.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    match settings.module {
        "activemq" => super::activemq::build(settings, problems),
        #[cfg(feature = "aws_sqs")]
        "aws_sqs" => super::aws_sqs::build(settings, problems),
        #[cfg(not(feature = "aws_sqs"))]
        "aws_sqs" => requires_feature(settings, problems, "aws_sqs"),
        #[cfg(feature = "clickhouse")]
        "clickhouse" => super::clickhouse::build(settings, problems),
        #[cfg(not(feature = "clickhouse"))]
        "clickhouse" => requires_feature(settings, problems, "clickhouse"),
        #[cfg(feature = "gcp_pubsub")]
        "gcp_pubsub" => super::gcp_pubsub::build(settings, problems),
        #[cfg(not(feature = "gcp_pubsub"))]
        "gcp_pubsub" => requires_feature(settings, problems, "gcp_pubsub"),
        "http_webhook" => super::http_webhook::build(settings, problems),
        #[cfg(feature = "kafka")]
        "kafka" => super::kafka::build(settings, problems),
        #[cfg(not(feature = "kafka"))]
        "kafka" => requires_feature(settings, problems, "kafka"),
        "log" => super::log::build(settings, problems),
        #[cfg(feature = "mqtt")]
        "mqtt" => super::mqtt::build(settings, problems),
        #[cfg(not(feature = "mqtt"))]
        "mqtt" => requires_feature(settings, problems, "mqtt"),
        #[cfg(feature = "mysql")]
        "mysql" => super::mysql::build(settings, problems),
        #[cfg(not(feature = "mysql"))]
        "mysql" => requires_feature(settings, problems, "mysql"),
        #[cfg(feature = "nats")]
        "nats" => super::nats::build(settings, problems),
        #[cfg(not(feature = "nats"))]
        "nats" => requires_feature(settings, problems, "nats"),
        #[cfg(feature = "postgresql")]
        "postgresql" => super::postgresql::build(settings, problems),
        #[cfg(not(feature = "postgresql"))]
        "postgresql" => requires_feature(settings, problems, "postgresql"),
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => super::rabbitmq::build(settings, problems),
        #[cfg(not(feature = "rabbitmq"))]
        "rabbitmq" => requires_feature(settings, problems, "rabbitmq"),
        #[cfg(feature = "redis")]
        "redis_publish" => super::redis_publish::build(settings, problems),
        #[cfg(not(feature = "redis"))]
        "redis_publish" => requires_feature(settings, problems, "redis"),
        #[cfg(feature = "redis")]
        "redis_rq" => super::redis_rq::build(settings, problems),
        #[cfg(not(feature = "redis"))]
        "redis_rq" => requires_feature(settings, problems, "redis"),
        #[cfg(feature = "s3")]
        "s3" => super::s3::build(settings, problems),
        #[cfg(not(feature = "s3"))]
        "s3" => requires_feature(settings, problems, "s3"),
        "save_to_disk" => super::save_to_disk::build(settings, problems),
        "websocket" => super::websocket::build(settings, problems),
        #[cfg(feature = "zeromq")]
        "zeromq" => super::zeromq::build(settings, problems),
        #[cfg(not(feature = "zeromq"))]
        "zeromq" => requires_feature(settings, problems, "zeromq"),
        other => {
            settings.error(
                problems,
                "module",
                format!(
                    "unknown module '{other}'; valid modules: {}",
                    MODULES.join(", ")
                ),
            );
            None
        }
    }
}

/// The load error of a module that exists in the specification but not in this build yet.
#[allow(dead_code)] // unused once every module has landed; kept for the next new module
fn not_implemented(
    settings: &ModuleSettings<'_>,
    problems: &mut Problems,
) -> Option<Box<dyn Output>> {
    settings.error(
        problems,
        "module",
        format!(
            "module '{}' is not implemented in this build yet",
            settings.module
        ),
    );
    None
}

/// The load error of a module whose cargo feature this build does not include.
#[cfg_attr(
    all(
        feature = "postgresql",
        feature = "mysql",
        feature = "mqtt",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis",
        feature = "aws_sqs",
        feature = "clickhouse",
        feature = "gcp_pubsub",
        feature = "kafka",
        feature = "s3",
        feature = "zeromq"
    ),
    allow(dead_code)
)]
fn requires_feature(
    settings: &ModuleSettings<'_>,
    problems: &mut Problems,
    feature: &str,
) -> Option<Box<dyn Output>> {
    settings.error(
        problems,
        "module",
        format!(
            "module '{}' requires the '{feature}' feature; this build does not include it",
            settings.module
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_their_canonical_module() {
        assert_eq!(resolve("postgres"), Ok("postgresql"));
        assert_eq!(resolve("mariadb"), Ok("mysql"));
        assert_eq!(resolve("save_to_disk"), Ok("save_to_disk"));
    }

    #[test]
    fn unknown_names_list_every_valid_module() {
        let err = resolve("kafak").unwrap_err();
        assert!(
            err.starts_with(
                "unknown module 'kafak'; valid modules: activemq, aws_sqs, clickhouse,"
            ),
            "{err}"
        );
        for m in MODULES {
            assert!(err.contains(m), "{m} missing from {err}");
        }
    }

    #[test]
    fn webhook_connect_is_relay_only() {
        assert_eq!(
            resolve("webhook_connect").unwrap_err(),
            "module 'webhook_connect' is only available on the relay"
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["", "-log", "a--b", "a__b", "a b", "a.b", &"x".repeat(65)] {
            assert!(resolve(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_module_list_is_sorted_and_every_name_is_well_formed() {
        let mut sorted = MODULES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, MODULES);
        assert!(MODULES.iter().all(|m| well_formed(m)));
    }
}
