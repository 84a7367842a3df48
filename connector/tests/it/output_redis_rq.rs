//! `redis_rq` against a real Redis (`TEST_REDIS_URL`): JSON-mode jobs are read back from the
//! queue list; RQ mode without the `redis-rq` feature, and dangerous functions, are load errors;
//! the error kinds hold. With the feature, RQ-mode jobs are run by a real RQ worker (PyPI `rq`,
//! installed by `scripts/services.sh redis`), see `rq_mode` below. JSON mode also over TLS, to a
//! redis-server started by the test.

use serde_json::{Value, json};
use webhook_connector::output::{ErrorCategory, ErrorKind, redis_rq};

use crate::output_redis_publish::{admin, redis_host_port, tls_redis};
use crate::private_server::Pki;
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

#[tokio::test]
async fn json_mode_over_tls_pushes_a_job_read_back_over_tls() {
    let pki = Pki::new();
    let server = tls_redis(&pki, false).await;
    let queue = unique("wc_rq_tls");
    let entry = Entry::new(
        "redis_rq",
        json!({"function": "tasks.handle_webhook", "queue_name": queue, "mode": "json"}),
    )
    .connection(
        "jobs",
        json!({"type": "redis", "host": "127.0.0.1", "port": server.port, "tls": true,
               "tls_ca_cert_file": pki.file("ca.pem")}),
    );
    let out = entry.build(redis_rq::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_rq_tls", payload(5)))
        .await
        .unwrap();
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}", server.port),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(pki.path("ca.pem")).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let jobs: Vec<String> = redis::cmd("LRANGE")
        .arg(&queue)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let job: Value = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(job["id"], "msg_rq_tls");
    assert_eq!(job["args"][0], payload(5));
    out.teardown().await;
}

/// `%Y-%m-%dT%H:%M:%S.%fZ`: 27 characters, microseconds, `Z`.
fn chrono_like(text: &str) -> bool {
    text.len() == 27
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[19] == b'.'
}

#[cfg(not(feature = "redis-rq"))]
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

/// RQ mode (feature `redis-rq`, `docs/reference/module-contract.md` §3.7, §9): jobs written by the module are run by a
/// real RQ worker in burst mode, whose job function (`tests/fixtures/wc_rq_tasks.py`) records
/// the arguments it received in Redis.
#[cfg(feature = "redis-rq")]
mod rq_mode {
    use std::process::Command;

    use serde_json::{Value, json};
    use webhook_connector::output::pickle::{Py, dumps};
    use webhook_connector::output::redis_rq;

    use super::connection_entry;
    use crate::output_redis_publish::{admin, redis_url};
    use crate::sinks::{Entry, delivery, unique};

    /// Deletes every key matching the patterns when dropped (jobs, queues, RQ's registries).
    struct Keys(Vec<String>);

    impl Drop for Keys {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let queues: Vec<String> = redis::cmd("SMEMBERS")
                .arg("rq:queues")
                .query(&mut conn)
                .unwrap_or_default();
            for queue in queues {
                if self
                    .0
                    .iter()
                    .any(|p| queue.contains(p.trim_matches('*').trim_start_matches("rq:*")))
                {
                    let _: Result<(), _> = redis::cmd("SREM")
                        .arg("rq:queues")
                        .arg(&queue)
                        .query(&mut conn);
                }
            }
            for pattern in &self.0 {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query(&mut conn)
                    .unwrap_or_default();
                for key in keys {
                    let _: Result<(), _> = redis::cmd("DEL").arg(&key).query(&mut conn);
                    let _: Result<(), _> = redis::cmd("SREM")
                        .arg("rq:queues")
                        .arg(&key)
                        .query(&mut conn);
                }
            }
        }
    }

    /// Runs `python3` with `args`, `stdin` piped in; fails the test (saying how to install RQ)
    /// when Python or RQ is missing.
    fn python(args: &[&str], envs: &[(&str, String)], stdin: &[u8]) -> String {
        use std::io::Write as _;
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut child = Command::new("python3")
            .args(args)
            .env("PYTHONPATH", fixtures)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed for the RQ-mode tests");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "python3 {args:?} failed (is RQ installed? scripts/services.sh redis installs it):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// JSON that needs care in pickle: integers past 64 bits (both signs), the i64 edges,
    /// floats, non-BMP and escaped text, nesting, empty containers, unicode keys.
    fn tricky() -> Value {
        serde_json::from_str(
            r#"{"big": 123456789012345678901234567890, "neg_big": -9223372036854775809,
                "max": 9223372036854775807, "min": -9223372036854775808, "u64": 18446744073709551615,
                "small": [0, 1, 255, 256, 65535, 65536, -1, -256, 2147483647, -2147483648, 4294967296],
                "f": [1.5, -0.25, 0.1, 1.0], "t": true, "fa": false, "n": null,
                "text": "snow ☃ clef 𝄞 nul \u0000 quote \" back \\ tab \t",
                "ключ": {"a": [[], {}, [null, {"b": [1, [2, [3]]]}]]}, "": ""}"#,
        )
        .unwrap()
    }

    /// Pickles made by the connector load in Python to the same values (compared as JSON text
    /// re-parsed with exact numbers).
    #[test]
    fn pickled_json_round_trips_through_python() {
        let value = tricky();
        let loaded = python(
            &[
                "-c",
                "import pickle,sys,json; print(json.dumps(pickle.loads(sys.stdin.buffer.read()), ensure_ascii=False))",
            ],
            &[],
            &dumps(&Py::Json(&value)),
        );
        let back: Value = serde_json::from_str(&loaded).unwrap();
        assert_eq!(back, value, "{loaded}");
        let tuple = dumps(&Py::Tuple(&[
            Py::Str("f"),
            Py::None,
            Py::Tuple(&[Py::Json(&value)]),
            Py::EmptyDict,
        ]));
        let repr = python(
            &[
                "-c",
                "import pickle,sys; v=pickle.loads(sys.stdin.buffer.read()); print(type(v).__name__, len(v), v[0], v[1], type(v[2]).__name__, v[3])",
            ],
            &[],
            &tuple,
        );
        assert_eq!(repr.trim(), "tuple 4 f None tuple {}");
    }

    /// The job hash holds what §3.7 lists; a second enqueue of the same message id does not push
    /// again (idempotent); `data` is zlib + pickle of `(function, None, (payload, headers), {})`.
    #[tokio::test]
    async fn rq_jobs_are_written_once_per_message_id() {
        let mut conn = admin().await;
        let queue = unique("wc_rqq");
        let id = unique("msg_rq");
        let _keys = Keys(vec![format!("rq:*{queue}*"), format!("rq:job:{id}*")]);
        let out = Entry::new(
            "redis_rq",
            json!({"function": "wc_rq_tasks.record", "queue_name": queue}),
        )
        .connection("jobs", connection_entry())
        .build(redis_rq::build);
        out.setup().await.unwrap();
        let d = delivery(&id, tricky());
        out.process(&d).await.unwrap();
        out.process(&d).await.unwrap();
        let queued: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("rq:queue:{queue}"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(queued, vec![id.clone()], "enqueued once");
        let member: bool = redis::cmd("SISMEMBER")
            .arg("rq:queues")
            .arg(format!("rq:queue:{queue}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(member);
        let hash: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(format!("rq:job:{id}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let text = |k: &str| String::from_utf8(hash[k].clone()).unwrap();
        assert_eq!(text("status"), "queued");
        assert_eq!(text("origin"), queue);
        assert_eq!(text("timeout"), "180");
        assert_eq!(text("result_ttl"), "500");
        for k in ["created_at", "enqueued_at"] {
            let at = text(k);
            assert!(super::chrono_like(&at), "{k} {at}");
        }
        let data = python(
            &[
                "-c",
                "import pickle,sys,json,zlib; print(json.dumps(pickle.loads(zlib.decompress(sys.stdin.buffer.read())), ensure_ascii=False))",
            ],
            &[],
            &hash["data"],
        );
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(
            data,
            json!(["wc_rq_tasks.record", null, [tricky(), {"content-type": "application/json", "x-event": "order.created"}], {}])
        );

        // A message id RQ would refuse (`.` and `:`) gets a stable UUID job id: still once.
        let odd = format!("{id}.part:2");
        let odd_job = format!(
            "rq:job:{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, odd.as_bytes())
        );
        let _odd_key = Keys(vec![odd_job.clone()]);
        out.process(&delivery(&odd, json!(1))).await.unwrap();
        out.process(&delivery(&odd, json!(1))).await.unwrap();
        let len: i64 = redis::cmd("LLEN")
            .arg(format!("rq:queue:{queue}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, 2);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&odd_job)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{odd_job}");
        out.teardown().await;
    }

    /// A real RQ worker (`rq worker --burst`) runs the enqueued job, and the function receives
    /// exactly `(payload, headers)`; RQ then marks the job finished.
    #[tokio::test]
    async fn a_real_rq_worker_runs_the_job_with_payload_and_headers() {
        let mut conn = admin().await;
        let queue = unique("wc_rqw");
        let id = unique("msg_rqw");
        let result_key = unique("wc_rq_result");
        let _keys = Keys(vec![
            format!("rq:*{queue}*"),
            format!("rq:*{id}*"),
            result_key.clone(),
        ]);
        let out = Entry::new(
            "redis_rq",
            json!({"function": "wc_rq_tasks.record", "queue_name": queue, "job_timeout": 60}),
        )
        .connection("jobs", connection_entry())
        .build(redis_rq::build);
        out.setup().await.unwrap();
        let mut d = delivery(&id, tricky());
        d.headers.insert("x-unicode".into(), "größe ☃".into());
        out.process(&d).await.unwrap();

        let url = redis_url();
        let worker_queue = queue.clone();
        let envs = [
            ("WC_RQ_RESULT_URL", url.clone()),
            ("WC_RQ_RESULT_KEY", result_key.clone()),
        ];
        let log = tokio::task::spawn_blocking(move || {
            python(
                &[
                    "-m",
                    "rq.cli",
                    "worker",
                    "--burst",
                    "--url",
                    &url,
                    "--name",
                    &format!("wc-test-{worker_queue}"),
                    &worker_queue,
                ],
                &envs,
                b"",
            )
        })
        .await
        .unwrap();

        let results: Vec<String> = redis::cmd("LRANGE")
            .arg(&result_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(results.len(), 1, "the job ran once; worker log:\n{log}");
        let got: Value = serde_json::from_str(&results[0]).unwrap();
        let headers = json!({"content-type": "application/json", "x-event": "order.created", "x-unicode": "größe ☃"});
        assert_eq!(got["args"], json!([tricky(), headers]));
        assert_eq!(got["types"], json!(["dict", "dict"]));
        let status: String = redis::cmd("HGET")
            .arg(format!("rq:job:{id}"))
            .arg("status")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(status, "finished", "worker log:\n{log}");
    }
}
