//! `redis_rq` (`docs/reference/module-contract.md` §3.7): enqueue a job for a Python worker.
//!
//! - `mode: "json"`: `RPUSH <queue_name>` of
//!   `{"id","function","args":[payload, headers],"kwargs":{},"enqueued_at"}`.
//! - `mode: "rq"` (the default) writes RQ's own job layout ([`rq_job`](super::rq_job)) and
//!   needs the `redis-rq` feature; a build without it refuses the configuration at load, naming
//!   the feature.
//!
//! `function` is checked at load: a dotted path of 1–3 identifiers, never a dunder name, never
//! under `os.`, `subprocess.`, `sys.`, `builtins.`, `importlib.` or `shutil.`, never one of the
//! built-ins that evaluate or open things.

use std::sync::Arc;

use serde_json::json;

use super::client_slot::ClientSlot;
use super::redis_client::{RedisClient, RedisServer};
#[cfg(feature = "redis-rq")]
use super::rq_job;
use super::settings;
use super::shared::SharedClients;
use super::{Delivery, ModuleSettings, Output, OutputError, record};
use crate::settings::Problems;

const REFUSED_MODULES: &[&str] = &["os", "subprocess", "sys", "builtins", "importlib", "shutil"];
const REFUSED_NAMES: &[&str] = &[
    "eval",
    "exec",
    "compile",
    "open",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
];

/// Why `function` is refused, if it is.
fn check_function(function: &str) -> Option<String> {
    if function.is_empty() || function.len() > 255 {
        return Some("must be 1–255 characters".into());
    }
    let parts: Vec<&str> = function.split('.').collect();
    if parts.len() > 3 {
        return Some("must be a dotted path of at most 3 names".into());
    }
    for part in &parts {
        let mut chars = part.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some(format!("{part:?} is not a Python identifier"));
        }
        if part.starts_with("__") && part.ends_with("__") && part.len() > 4 {
            return Some(format!("dunder names such as {part:?} are refused"));
        }
        if REFUSED_NAMES.contains(part) {
            return Some(format!("{part:?} is refused"));
        }
    }
    if parts.len() > 1 && REFUSED_MODULES.contains(&parts[0]) {
        return Some(format!("functions under {}. are refused", parts[0]));
    }
    None
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let function = mc.string(problems, "function");
    if function.is_none() && mc.get("function").is_none() {
        mc.error(problems, "function", "missing field");
    }
    let function = function.filter(|f| match check_function(f) {
        Some(why) => {
            mc.error(problems, "function", why);
            false
        }
        None => true,
    });
    let queue_name = mc
        .string(problems, "queue_name")
        .unwrap_or_else(|| "default".to_owned());
    if queue_name.is_empty() || queue_name.len() > 255 || queue_name.contains(char::is_whitespace) {
        mc.error(
            problems,
            "queue_name",
            "must be 1–255 characters without whitespace",
        );
    }
    let mode = mc.choice(problems, "mode", "rq", &["rq", "json"]);
    let job_timeout = mc.integer_in(problems, "job_timeout", 180, 1, 31_536_000);
    let result_ttl = mc.integer_in(problems, "result_ttl", 500, -1, 31_536_000);
    let mode = if mode == "rq" {
        rq_mode(&mc, problems, job_timeout, result_ttl)
    } else {
        Some(Mode::Json)
    };
    mc.finish(problems, false);
    let server = RedisServer::from_connection(settings, problems);
    let out: Box<dyn Output> = Box::new(RedisRq {
        function: function?,
        queue_name,
        mode: mode?,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

/// How jobs are written.
#[derive(Debug)]
enum Mode {
    /// `RPUSH <queue_name>` of a JSON job.
    Json,
    /// RQ's own job layout.
    #[cfg(feature = "redis-rq")]
    Rq { job_timeout: i64, result_ttl: i64 },
}

/// `mode: "rq"`: the RQ settings, or the load error of a build without the feature.
#[cfg(feature = "redis-rq")]
fn rq_mode(
    _mc: &crate::settings::Reader<'_>,
    _problems: &mut Problems,
    job_timeout: i64,
    result_ttl: i64,
) -> Option<Mode> {
    Some(Mode::Rq {
        job_timeout,
        result_ttl,
    })
}

/// `mode: "rq"`: the RQ settings, or the load error of a build without the feature.
#[cfg(not(feature = "redis-rq"))]
fn rq_mode(
    mc: &crate::settings::Reader<'_>,
    problems: &mut Problems,
    _job_timeout: i64,
    _result_ttl: i64,
) -> Option<Mode> {
    mc.error(
        problems,
        "mode",
        "mode \"rq\" requires the 'redis-rq' feature; this build does not include it \
         (use mode = \"json\")",
    );
    None
}

#[derive(Debug)]
struct RedisRq {
    function: String,
    queue_name: String,
    mode: Mode,
    server: RedisServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<RedisClient>,
}

impl RedisRq {
    async fn client(&self) -> Result<Arc<RedisClient>, OutputError> {
        self.client.get_or(self.server.client(&self.shared)).await
    }
}

#[async_trait::async_trait]
impl Output for RedisRq {
    async fn setup(&self) -> Result<(), OutputError> {
        self.client().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        match self.mode {
            Mode::Json => self.push_json(delivery).await,
            #[cfg(feature = "redis-rq")]
            Mode::Rq {
                job_timeout,
                result_ttl,
            } => self.enqueue_rq(delivery, job_timeout, result_ttl).await,
        }
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

impl RedisRq {
    /// JSON mode: `RPUSH <queue_name>` of the JSON job.
    async fn push_json(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        let job = json!({
            "id": delivery.message_id,
            "function": self.function,
            "args": [delivery.payload, record::headers_json(delivery)],
            "kwargs": {},
            "enqueued_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        });
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(&self.queue_name).arg(job.to_string());
        let _length: i64 = client.query("RPUSH", &cmd).await?;
        Ok(())
    }

    /// RQ mode: the job hash and the queue entry, once per job id.
    #[cfg(feature = "redis-rq")]
    async fn enqueue_rq(
        &self,
        delivery: &Delivery,
        job_timeout: i64,
        result_ttl: i64,
    ) -> Result<(), OutputError> {
        let settings = rq_job::RqSettings {
            function: &self.function,
            queue_name: &self.queue_name,
            job_timeout,
            result_ttl,
        };
        let job = rq_job::job(&settings, delivery, chrono::Utc::now())?;
        let client = self.client().await?;
        let _enqueued: i64 = client
            .query("enqueueing RQ job", &rq_job::enqueue_command(&job))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_function;

    #[test]
    fn function_paths_are_checked() {
        for ok in ["tasks.process_webhook", "handle", "app.jobs.run_it"] {
            assert_eq!(check_function(ok), None, "{ok}");
        }
        for bad in [
            "",
            "os.system",
            "subprocess.run",
            "builtins.print",
            "eval",
            "app.exec",
            "app.__init__",
            "a.b.c.d",
            "1abc",
            "a-b",
            "tasks.open",
        ] {
            assert!(check_function(bad).is_some(), "{bad}");
        }
    }
}
