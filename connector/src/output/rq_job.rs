//! The RQ-compatible job of `redis_rq` (`docs/reference/module-contract.md` §3.7, feature `redis-rq`): the
//! `rq:job:<id>` hash that RQ's `Job.restore` reads, and the atomic enqueue.
//!
//! - **Job id:** the `message_id`. RQ accepts only ids matching `[A-Za-z0-9_-]+` (it refuses
//!   others in `validate_job_id` and splits `Job.fetch` ids at `:`), while relay message ids may
//!   also hold `.` and `:`; such ids are mapped to the UUIDv5 of the message id, which is just as
//!   stable, so redeliveries still find the same job.
//! - **Hash:** `data` = zlib of the pickle of `(function, None, (payload, headers), {})`,
//!   `created_at` and `enqueued_at` (`%Y-%m-%dT%H:%M:%S.%fZ`), `status=queued`, `origin`,
//!   `description`, `timeout`, `result_ttl` — what RQ writes for a queued job, less the empty
//!   callback and worker fields (`Job.restore` of RQ 1.x–3.x treats missing fields as unset).
//! - **Enqueue:** one server-side script does `EXISTS` (idempotence: an existing job succeeds
//!   without enqueuing again), `HSET`, `RPUSH rq:queue:<queue>` and `SADD rq:queues`. The spec
//!   asks for `MULTI`/`EXEC`; a script is just as atomic and also covers the existence check, which
//!   a transaction cannot without `WATCH` (unusable on the shared multiplexed connection).

use std::io::Write as _;

use flate2::Compression;
use flate2::write::ZlibEncoder;

use super::pickle::{self, Py};
use super::{Delivery, ErrorCategory, OutputError, record};

/// `EXISTS` + `HSET` + `RPUSH` + `SADD`, atomically. KEYS: job hash, queue list, queue set.
/// ARGV: job id, then the hash's field/value pairs. Returns 1 when enqueued, 0 when the job
/// already existed.
pub(crate) const ENQUEUE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
";

/// RQ's key prefix (`RQ_KEY_PREFIX`, default `rq`).
const PREFIX: &str = "rq";

/// What an RQ job of this instance needs besides the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RqSettings<'a> {
    pub(crate) function: &'a str,
    pub(crate) queue_name: &'a str,
    pub(crate) job_timeout: i64,
    pub(crate) result_ttl: i64,
}

/// One job, ready for [`ENQUEUE_SCRIPT`].
#[derive(Debug)]
pub(crate) struct RqJob {
    pub(crate) id: String,
    pub(crate) keys: [String; 3],
    pub(crate) fields: Vec<(&'static str, Vec<u8>)>,
}

/// The RQ job id of `message_id` (see the module documentation).
pub(crate) fn job_id(message_id: &str) -> String {
    let valid = !message_id.is_empty()
        && message_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        message_id.to_owned()
    } else {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, message_id.as_bytes()).to_string()
    }
}

/// The job of `d`, created at `now`.
pub(crate) fn job(
    s: &RqSettings<'_>,
    d: &Delivery,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RqJob, OutputError> {
    let id = job_id(&d.message_id);
    let headers = record::headers_json(d);
    let args = [Py::Json(&d.payload), Py::Json(&headers)];
    let data = pickle::dumps(&Py::Tuple(&[
        Py::Str(s.function),
        Py::None,
        Py::Tuple(&args),
        Py::EmptyDict,
    ]));
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    let compressed = z.write_all(&data).and_then(|()| z.finish()).map_err(|e| {
        OutputError::permanent(ErrorCategory::InvalidData, format!("compressing job: {e}"))
    })?;
    let at = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let text = |v: String| v.into_bytes();
    let fields = vec![
        ("data", compressed),
        ("created_at", text(at.clone())),
        ("enqueued_at", text(at)),
        ("status", text("queued".into())),
        ("origin", text(s.queue_name.to_owned())),
        (
            "description",
            text(format!(
                "{}(payload, headers) for webhook {} message {}",
                s.function, d.webhook_id, d.message_id
            )),
        ),
        ("timeout", text(s.job_timeout.to_string())),
        ("result_ttl", text(s.result_ttl.to_string())),
    ];
    let queue_key = format!("{PREFIX}:queue:{}", s.queue_name);
    Ok(RqJob {
        keys: [
            format!("{PREFIX}:job:{id}"),
            queue_key,
            format!("{PREFIX}:queues"),
        ],
        id,
        fields,
    })
}

/// The `EVAL` command that enqueues `job`.
pub(crate) fn enqueue_command(job: &RqJob) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ENQUEUE_SCRIPT).arg(job.keys.len());
    for key in &job.keys {
        cmd.arg(key);
    }
    cmd.arg(&job.id);
    for (name, value) in &job.fields {
        cmd.arg(*name).arg(value.as_slice());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_message_ids_are_the_job_id_and_others_map_stably() {
        assert_eq!(job_id("msg_0190f7c2a1b3-x"), "msg_0190f7c2a1b3-x");
        let mapped = job_id("msg.1:2");
        assert_eq!(mapped, job_id("msg.1:2"), "stable across redeliveries");
        assert_ne!(mapped, job_id("msg.1:3"));
        assert!(
            mapped
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
    }
}
