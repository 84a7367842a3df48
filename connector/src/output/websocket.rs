//! `websocket` (`docs/reference/module-contract.md` §3.4): one persistent WebSocket connection per instance, opened
//! lazily and reopened after failures, sends serialised. With `wait_for_response` each message
//! waits for one frame from the server, one message at a time.
//!
//! Outbound policy (`docs/reference/module-contract.md` §2.3): every connection, the first and each reconnect, resolves
//! the URL's host through [`admission::admit`] and opens the TCP connection to the checked
//! addresses itself; the WebSocket (and for `wss` the TLS) handshake then runs over that
//! stream with the URL's host name, so certificates are still verified against it. No lookup
//! escapes the check.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::admission;
use super::http_webhook::static_headers;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The connection and whether it is in a known state.
#[derive(Default)]
struct Conn {
    socket: Option<Socket>,
    /// False while a send is under way: a `process` dropped mid-send leaves it false, and the
    /// next call reconnects instead of reusing a half-written stream.
    clean: bool,
}

/// The `websocket` module.
pub struct WebSocketOutput {
    url: String,
    raw: bool,
    include_headers: bool,
    timeout: Duration,
    max_retries: u32,
    headers: HeaderMap,
    wait_for_response: bool,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
    /// Hosts exempt from the address rules (`allowed_hosts`).
    allowed_hosts: Vec<String>,
    conn: tokio::sync::Mutex<Conn>,
}

impl std::fmt::Debug for WebSocketOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketOutput")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Builds `websocket`.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut r = settings.config_reader();
    let url = r.string(problems, "url");
    let raw = r.choice(problems, "format", "json", &["json", "raw"]) == "raw";
    let include_headers = r.boolean(problems, "include_headers", false);
    let timeout = r.number_in(
        problems,
        "timeout",
        10.0,
        |n| n > 0.0 && n <= 3600.0,
        "in (0, 3600]",
    );
    let max_retries = r.integer_in(problems, "max_retries", 3, 1, 20);
    let header_pairs = r.string_map(problems, "headers").unwrap_or_default();
    let wait_for_response = r.boolean(problems, "wait_for_response", false);
    let allowed_hosts = r.string_list(problems, "allowed_hosts").unwrap_or_default();
    r.finish(problems, false);
    let Some(url) = url else {
        r.error(problems, "url", "missing field");
        return None;
    };
    settings.check_url(problems, "url", &url, &["ws", "wss"], &allowed_hosts);
    let headers = static_headers(settings, header_pairs, problems);
    if problems.errors.len() > before {
        return None;
    }
    Some(Box::new(WebSocketOutput {
        url,
        raw,
        include_headers,
        timeout: Duration::from_secs_f64(timeout),
        max_retries: u32::try_from(max_retries).unwrap_or(3),
        headers,
        wait_for_response,
        strict: settings.outbound_strict,
        allowed_hosts,
        conn: tokio::sync::Mutex::new(Conn::default()),
    }))
}

fn transient(message: impl Into<String>) -> OutputError {
    OutputError::transient(ErrorCategory::Connection, message)
}

impl WebSocketOutput {
    fn frame(&self, d: &Delivery) -> Message {
        if self.raw {
            return match std::str::from_utf8(&d.body) {
                Ok(text) => Message::Text(text.to_owned().into()),
                Err(_) => Message::Binary(d.body.to_vec().into()),
            };
        }
        let mut m = Map::new();
        m.insert("payload".into(), d.payload.clone());
        if self.include_headers {
            m.insert(
                "headers".into(),
                Value::Object(
                    d.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
        }
        m.insert("message_id".into(), Value::String(d.message_id.clone()));
        Message::Text(Value::Object(m).to_string().into())
    }

    async fn connect(&self) -> Result<Socket, OutputError> {
        let mut request = self.url.as_str().into_client_request().map_err(|e| {
            OutputError::permanent(ErrorCategory::Other, format!("invalid url: {e}"))
        })?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        let uri = request.uri();
        let host = uri
            .host()
            .ok_or_else(|| OutputError::permanent(ErrorCategory::Other, "url has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("wss"));
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connecting = async {
            // Connects to the addresses the policy checked: no second lookup.
            let addrs = admission::admit(&host, port, self.strict, &self.allowed_hosts).await?;
            let stream = TcpStream::connect(&addrs[..])
                .await
                .map_err(|e| transient(format!("cannot connect: {e}")))?;
            let _ = stream.set_nodelay(true);
            // The handshake (TLS for wss) uses the URL's host name, not the address.
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, None)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) if response.status().is_client_error() => {
                        OutputError::unavailable(
                            ErrorCategory::Auth,
                            format!("handshake rejected with {}", response.status().as_u16()),
                        )
                    }
                    e => transient(format!("cannot connect: {e}")),
                })
        };
        match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => Err(OutputError::transient(
                ErrorCategory::Timeout,
                "connect timed out",
            )),
            Ok(result) => result.map(|(socket, _)| socket),
        }
    }

    /// One send on the open connection, plus the response wait when configured.
    async fn send_on(&self, socket: &mut Socket, frame: Message) -> Result<(), OutputError> {
        match tokio::time::timeout(self.timeout, socket.send(frame)).await {
            Err(_) => {
                return Err(OutputError::transient(
                    ErrorCategory::Timeout,
                    "send timed out",
                ));
            }
            Ok(Err(tungstenite::Error::Capacity(e))) => {
                return Err(OutputError::permanent(
                    ErrorCategory::InvalidData,
                    format!("frame too large: {e}"),
                ));
            }
            Ok(Err(e)) => return Err(transient(format!("connection lost: {e}"))),
            Ok(Ok(())) => {}
        }
        if !self.wait_for_response {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => {
                    return Err(OutputError::transient(
                        ErrorCategory::Timeout,
                        "no response within the timeout",
                    ));
                }
                Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => return Ok(()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
                    return Err(transient("connection closed by the server"));
                }
                Ok(Some(Ok(_))) => {} // ping, pong, frames: keep waiting
                Ok(Some(Err(e))) => return Err(transient(format!("connection lost: {e}"))),
            }
        }
    }
}

#[async_trait::async_trait]
impl Output for WebSocketOutput {
    async fn setup(&self) -> Result<(), OutputError> {
        // Opened lazily: an absent peer at start-up is not an error of the configuration.
        Ok(())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let frame = self.frame(delivery);
        let mut conn = self.conn.lock().await;
        let mut last = transient("not connected");
        for _ in 0..self.max_retries {
            if !conn.clean {
                conn.socket = None;
            }
            let mut socket = match conn.socket.take() {
                Some(s) => s,
                None => match self.connect().await {
                    Ok(s) => s,
                    Err(e) if e.kind == super::ErrorKind::Transient => {
                        last = e;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            conn.clean = false;
            let result = self.send_on(&mut socket, frame.clone()).await;
            match result {
                Ok(()) => {
                    conn.socket = Some(socket);
                    conn.clean = true;
                    return Ok(());
                }
                // The server may have closed an idle connection: reconnect and resend.
                Err(e) if e.category == ErrorCategory::Connection => {
                    conn.clean = true;
                    last = e;
                }
                Err(e) => {
                    conn.clean = true;
                    return Err(e);
                }
            }
        }
        Err(last)
    }

    async fn teardown(&self) {
        let mut conn = self.conn.lock().await;
        if let Some(mut socket) = conn.socket.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
        }
    }
}
