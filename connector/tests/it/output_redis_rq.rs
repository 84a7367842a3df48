//! `redis_rq` against a real Redis (`TEST_REDIS_URL`): JSON-mode jobs are read back from the
//! queue list; RQ mode without the `redis-rq` feature, and dangerous functions, are load errors;
//! the error kinds hold.

use serde_json::{Value, json};
use webhook_connector::output::{ErrorCategory, ErrorKind, redis_rq};

use crate::output_redis_publish::{admin, redis_host_port};
use crate::sinks::{Entry, closed_port, delivery, payload, unique};

fn connection_entry() -> Value {
    let (host, port) = redis_host_port();
    json!({"type": "redis-rq", "host": host, "port": port, "db": "0"})
}

/// Deletes a key when dropped.
struct Key(String);

impl Drop for Key {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(crate::output_redis_publish::redis_url())
            && let Ok(mut conn) = client.get_connection()
        {
            let _: Result<(), _> = redis::cmd("DEL").arg(&self.0).query(&mut conn);
        }
    }
}

#[tokio::test]
async fn json_mode_pushes_one_job_per_message_to_the_queue() {
    let mut conn = admin().await;
    let queue = Key(unique("wc_rq"));
    let entry = Entry::new(
        "redis_rq",
        json!({"function": "tasks.handle_webhook", "queue_name": queue.0, "mode": "json"}),
    )
    .connection("jobs", connection_entry());
    let out = entry.build(redis_rq::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_rq_1", payload(1)))
        .await
        .unwrap();
    out.process(&delivery("msg_rq_2", payload(2)))
        .await
        .unwrap();
    let jobs: Vec<String> = redis::cmd("LRANGE")
        .arg(&queue.0)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    let job: Value = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(job["id"], "msg_rq_1");
    assert_eq!(job["function"], "tasks.handle_webhook");
    assert_eq!(job["args"][0], payload(1));
    assert_eq!(job["args"][1]["x-event"], "order.created");
    assert_eq!(job["kwargs"], json!({}));
    let at = job["enqueued_at"].as_str().unwrap();
    assert!(chrono_like(at), "enqueued_at {at}");
    out.teardown().await;
}

/// `%Y-%m-%dT%H:%M:%S.%fZ`: 27 characters, microseconds, `Z`.
fn chrono_like(text: &str) -> bool {
    text.len() == 27
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[19] == b'.'
}

#[test]
fn rq_mode_without_the_feature_is_a_load_error_naming_it() {
    let entry = Entry::new("redis_rq", json!({"function": "tasks.run"}));
    let problems = entry.refused(redis_rq::build);
    let all = problems.errors.join("\n");
    assert!(all.contains("module-config.mode"), "{all}");
    assert!(all.contains("'redis-rq' feature"), "{all}");
    assert!(all.contains("mode = \"json\""), "{all}");
}

#[test]
fn dangerous_functions_are_refused_at_load() {
    for function in [
        "os.system",
        "eval",
        "app.__init__",
        "subprocess.run",
        "a.b.c.d",
    ] {
        let entry = Entry::new("redis_rq", json!({"function": function, "mode": "json"}));
        let problems = entry.refused(redis_rq::build);
        assert!(
            problems
                .errors
                .iter()
                .any(|e| e.contains("module-config.function")),
            "{function}: {problems:?}"
        );
    }
    let missing = Entry::new("redis_rq", json!({"mode": "json"}));
    assert!(missing.refused(redis_rq::build).errors[0].contains("function: missing field"));
}

#[tokio::test]
async fn a_closed_port_is_transient_connection() {
    let port = closed_port().await;
    let entry = Entry::new("redis_rq", json!({"function": "tasks.run", "mode": "json"}))
        .connection(
            "jobs",
            json!({"type": "redis-rq", "host": "127.0.0.1", "port": port}),
        );
    let err = entry.build(redis_rq::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
}

/// A queue key holding another type needs an operator: `Unavailable`, not a retry loop.
#[tokio::test]
async fn a_queue_key_of_another_type_is_unavailable() {
    let mut conn = admin().await;
    let queue = Key(unique("wc_rq_str"));
    let _: () = redis::cmd("SET")
        .arg(&queue.0)
        .arg("not a list")
        .query_async(&mut conn)
        .await
        .unwrap();
    let entry = Entry::new(
        "redis_rq",
        json!({"function": "tasks.run", "mode": "json", "queue_name": queue.0}),
    )
    .connection("jobs", connection_entry());
    let out = entry.build(redis_rq::build);
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::ClientError),
        "{err}"
    );
}
