//! Budgets shared by every node through Redis: one Lua GCRA script, atomic inside Redis and run
//! on Redis's clock (so nodes' clocks do not matter). Checks that arrive while a call is in
//! flight travel together in the next one (group commit): under load one round trip and one
//! script run serve many requests, and an idle node still answers each check at once.

use std::time::Duration;

use palisade_core::net::is_this_machine;
use redis::ConnectionAddr;
use tokio::sync::{mpsc, oneshot};

/// The GCRA step over every key of a call (adapted from go-redis/redis_rate, BSD-2): each
/// bucket's theoretical arrival time lives in one key with an expiry. `ARGV[1]` is the period
/// in seconds, `ARGV[i + 1]` the budget of `KEYS[i]`; a key named twice is counted twice, in
/// order. Returns, per key: allowed 0|1, remaining, retry_after s, reset_after s.
const GCRA_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = (t[1] - 1700000000) + t[2] / 1000000
local period = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local burst = tonumber(ARGV[i + 1])
  local interval = period / burst
  local tat = tonumber(redis.call("GET", key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local diff = now - (new_tat - interval * burst)
  if diff < 0 then
    out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = tostring(-diff); out[#out + 1] = tostring(tat - now)
  else
    redis.call("SET", key, tostring(new_tat), "EX", math.ceil(new_tat - now) + 1)
    out[#out + 1] = 1; out[#out + 1] = math.floor(diff / interval); out[#out + 1] = "0"
    out[#out + 1] = tostring(new_tat - now)
  end
end
return out
"#;

/// The most checks one call carries.
const MAX_BATCH: usize = 128;
/// Checks waiting for a call; past it a check fails at once (and the configured fallback applies).
const MAX_WAITING: usize = 8192;

/// Redis's answer for one key: allowed, remaining, retry-after and reset (seconds, as text).
pub(crate) type Answer = (i64, i64, String, String);

struct Pending {
    key: String,
    limit: u32,
    reply: oneshot::Sender<Result<Answer, String>>,
}

/// The node's handle on the shared budgets.
pub(crate) struct SharedBudgets {
    queue: mpsc::Sender<Pending>,
}

impl SharedBudgets {
    /// Connects lazily (a Redis that is down at start is an alert later, not a failed start) and
    /// starts the task that makes the calls.
    pub(crate) fn connect(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let client = redis_client(url, ca_pem)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| format!("redis_url is not usable: {err}"))?;
        let (queue, waiting) = mpsc::channel(MAX_WAITING);
        tokio::spawn(call_in_batches(connection, waiting));
        Ok(Self { queue })
    }

    /// Counts one request against `key`'s budget of `limit` a minute.
    pub(crate) async fn check(&self, key: String, limit: u32) -> Result<Answer, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending { key, limit, reply })
            .map_err(|_| "too many checks waiting for Redis".to_owned())?;
        answer.await.map_err(|_| "the Redis caller stopped".to_owned())?
    }
}

/// A client for `url`. `rediss://` is TLS with the certificate and host name verified against the
/// system's CAs, or only those in `ca_pem`; turning the checks off (`#insecure`) is refused. A
/// plain `redis://` to another machine is warned about: counters and the password cross the
/// network readable.
fn redis_client(url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, String> {
    let unusable = |err: redis::RedisError| format!("redis_url is not usable: {err}");
    let client = redis::Client::open(url).map_err(unusable)?;
    match client.get_connection_info().addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => Err("redis_url turns certificate checks off (#insecure): \
             remove that; to trust a private CA, set redis_ca_file to its PEM file"
            .into()),
        ConnectionAddr::TcpTls { .. } => {
            // The redis crate builds its TLS on the process's default rustls provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let Some(pem) = ca_pem else { return Ok(client) };
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
            redis::Client::build_with_tls(url, certificates).map_err(unusable)
        }
        _ if ca_pem.is_some() => Err("redis_ca_file is set but redis_url is not a rediss:// (TLS) URL".into()),
        ConnectionAddr::Tcp(host, _) if !is_this_machine(host) => {
            tracing::warn!(
                host = %host,
                "redis_url reaches another machine without TLS: use rediss:// (the rate-limit counters and the \
                 Redis password cross the network readable)"
            );
            Ok(client)
        }
        _ => Ok(client),
    }
}

/// How `url` reaches Redis, for `controls check` (E1): evidence, or the problem.
pub(crate) fn judge_link(url: &str) -> Result<String, String> {
    let client = redis::Client::open(url).map_err(|err| format!("redis_url is not usable: {err}"))?;
    match client.get_connection_info().addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => {
            Err("redis_url turns certificate checks off (#insecure)".into())
        }
        ConnectionAddr::TcpTls { host, .. } => Ok(format!("Redis at {host} over TLS, certificate verified")),
        ConnectionAddr::Tcp(host, _) if !is_this_machine(host) => {
            Err(format!("Redis at {host} is reached without TLS: use rediss://"))
        }
        _ => Ok("Redis on this machine".into()),
    }
}

async fn call_in_batches(mut connection: redis::aio::ConnectionManager, mut waiting: mpsc::Receiver<Pending>) {
    let script = redis::Script::new(GCRA_SCRIPT);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut call = script.prepare_invoke();
        call.arg(60);
        for pending in &batch {
            call.key(&pending.key).arg(pending.limit);
        }
        let answers: redis::RedisResult<Vec<Answer>> = call.invoke_async(&mut connection).await;
        match answers {
            Ok(answers) if answers.len() == batch.len() => {
                for (pending, answer) in batch.drain(..).zip(answers) {
                    let _ = pending.reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let why = format!("Redis answered {} checks for {}", answers.len(), batch.len());
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(why.clone()));
                }
            }
            Err(err) => {
                let why = err.to_string();
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{judge_link, redis_client};

    #[test]
    fn controls_judge_the_redis_link() {
        assert!(judge_link("rediss://redis.internal:6380").unwrap().contains("over TLS"));
        assert!(judge_link("redis://127.0.0.1:6379").unwrap().contains("this machine"));
        assert!(judge_link("redis+unix:///run/redis.sock").unwrap().contains("this machine"));
        assert!(judge_link("redis://redis.internal:6379").unwrap_err().contains("without TLS"));
    }

    #[test]
    fn tls_without_certificate_checks_is_refused_before_any_connection() {
        let refused = redis_client("rediss://redis.internal:6380/#insecure", None).unwrap_err();
        assert!(refused.contains("#insecure"), "{refused}");
        assert!(redis_client("rediss://redis.internal:6380", None).is_ok());
    }
}
