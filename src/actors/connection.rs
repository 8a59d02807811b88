//! `BrokerConnection`: one TCP session to one broker, run under an [`actix::Supervisor`].
//!
//! A thin shell over `ConnectionCore` (`src/core/connection.rs`), which decides: the
//! lifecycle, the calls waiting for a session, correlation ids, the in-flight FIFO (Kafka answers
//! in order on one connection, so a response that is not the answer to the oldest request
//! resets the session), request timeouts, `connections.max.idle.ms`, the reconnect backoff and
//! KIP-368 re-authentication. This file moves bytes and carries out the core's actions: it
//! connects (TCP, TLS, ApiVersions keeping the highest version both sides support per API, SASL),
//! encodes each call at the negotiated version, hands frames to the session's writer task, reads
//! frames, answers calls, emits health events and counts metrics. A failed session fails every
//! request in flight with a retriable [`ConnectionError`] and stops the actor; the supervisor
//! restarts it, keeping its mailbox.
//!
//! The number of requests in flight is bounded by the callers (the sender keeps
//! `max.in.flight.requests.per.connection`), not here.

use crate::codes::ErrorCode;
use crate::core::connection::{Action, ConnectionCore, ConnectionRules, Count};
use crate::error::ConnectionError;
use crate::protocol::frame::{
    decode_response, encode_request, encode_request_segments, peek_correlation_id,
    NegotiatedVersions, Segments, MAX_RESPONSE_SIZE,
};
use crate::security::sasl::{client_nonce, unsecured_token, Next, SaslClient};
use crate::security::{SaslMechanism, SecurityConfig};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// Reply to a [`Call`]: the decoded response, or `None` when no response was expected (`acks=0`).
pub type CallResult<R> = Result<Option<<R as Request>::Response>, ConnectionError>;

/// Sends one request on this connection. The reply comes on `reply`.
///
/// A call whose `reply` receiver is gone by the time the mailbox reaches it is skipped.
pub struct Call<R: Request> {
    /// The request body; the connection adds the header and picks the version.
    pub request: R,
    /// `false` for Produce with `acks=0`: the broker sends no response, the call completes once
    /// written.
    pub expect_response: bool,
    /// Where the result goes.
    pub reply: oneshot::Sender<CallResult<R>>,
}

impl<R: Request + Send + 'static> Message for Call<R>
where
    R::Response: Send,
{
    type Result = ();
}

/// Drops the connection (failing what is in flight) so the supervisor reconnects; used after
/// a request timeout, as the Java client does.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reset {
    /// Why, for the log and the errors of requests in flight.
    pub reason: String,
    /// The session it is about; a reset for an older session is ignored. `None`: the current one.
    pub session: Option<u64>,
}

/// Settings of a connection, from [`crate::config::ProducerConfig`].
#[derive(Clone)]
pub struct ConnectionSettings {
    /// `client.id`.
    pub client_id: Arc<str>,
    /// `socket.connection.setup.timeout.ms`.
    pub connect_timeout: Duration,
    /// `reconnect.backoff.ms`.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`.
    pub reconnect_backoff_max: Duration,
    /// `request.timeout.ms`: a request in flight longer than this resets the connection.
    pub request_timeout: Duration,
    /// `connections.max.idle.ms`: a connection with nothing in flight or queued for this long
    /// is closed; the next call reconnects.
    pub max_idle: Duration,
    /// `security.protocol`, `ssl.*`, `sasl.*`.
    pub security: Arc<SecurityConfig>,
    /// The TLS client configuration (TLS protocols only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where connection and authentication counts go.
    pub(crate) shared: Arc<crate::batch::Shared>,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("client_id", &self.client_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// A byte stream to a broker: TCP, or TLS over TCP.
pub(crate) trait KafkaStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> KafkaStream for T {}
type BoxStream = Box<dyn KafkaStream>;

/// What a successful connect yields.
struct Session {
    stream: BoxStream,
    versions: NegotiatedVersions,
    /// SASL `session_lifetime_ms` (KIP-368), when the broker limits the session.
    lifetime: Option<Duration>,
}

/// Answers a request in flight with its response frame (size prefix removed) or an error.
type Completion = Box<dyn FnOnce(Result<Bytes, ConnectionError>) + Send>;

/// A call not written yet, whatever its request type.
type Pending = Box<dyn PendingCall>;

/// A [`Call`] with its request type erased, so that one queue holds them all.
trait PendingCall: Send {
    /// Answers it with `err`; it was never written.
    fn refuse(self: Box<Self>, err: ConnectionError);
    /// Encodes it for `versions` with `correlation_id`. `None`: no version we share with the
    /// broker can carry it (the caller got `UnsupportedVersion`).
    fn encode(
        self: Box<Self>,
        versions: &NegotiatedVersions,
        correlation_id: i32,
        client_id: &StrBytes,
        broker: &Arc<str>,
    ) -> Option<Encoded>;
}

/// An encoded call: its frame, and what answers it.
enum Encoded {
    /// Answered by the response with its correlation id.
    Response(Segments, Completion),
    /// `acks=0`: answered once the frame is on the socket.
    Written(Segments, Written),
}

impl<R> PendingCall for Call<R>
where
    R: Request + Send + 'static,
    R::Response: Send,
{
    fn refuse(self: Box<Self>, err: ConnectionError) {
        let _ = self.reply.send(Err(err));
    }

    fn encode(
        self: Box<Self>,
        versions: &NegotiatedVersions,
        correlation_id: i32,
        client_id: &StrBytes,
        broker: &Arc<str>,
    ) -> Option<Encoded> {
        let unsupported = || ConnectionError::UnsupportedVersion {
            broker: broker.clone(),
            api_key: R::KEY,
        };
        let Some(version) = versions.get(R::KEY) else {
            let _ = self.reply.send(Err(unsupported()));
            return None;
        };
        // Produce: the record batches are written from their own buffers (vectored I/O), not
        // copied into the frame.
        let large: Vec<Bytes> = (&self.request as &dyn std::any::Any)
            .downcast_ref::<kafka_protocol::messages::ProduceRequest>()
            .map(|p| {
                p.topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .filter_map(|d| d.records.clone())
                    .collect()
            })
            .unwrap_or_default();
        let frame = match encode_request_segments(
            &self.request,
            version,
            correlation_id,
            client_id,
            &large,
        ) {
            Ok(f) => f,
            Err(e) => {
                // The request needs a field the negotiated version lacks (e.g. KIP-360's
                // producer id in InitProducerId below v3): no version of this API we share with
                // the broker can carry it, and retrying cannot change that.
                tracing::debug!(
                    broker = %broker,
                    api_key = R::KEY,
                    version,
                    error = %e,
                    "cannot encode request at the negotiated version"
                );
                let _ = self.reply.send(Err(unsupported()));
                return None;
            }
        };
        let reply = self.reply;
        if !self.expect_response {
            // acks=0: answered once the frame is on the socket (not when it is queued), so the
            // request keeps its in-flight slot, and its batch its memory, until then.
            return Some(Encoded::Written(
                frame,
                Box::new(move |res| {
                    let _ = reply.send(res.map(|()| None));
                }),
            ));
        }
        let broker = broker.clone();
        Some(Encoded::Response(
            frame,
            Box::new(move |res| {
                let out = res.and_then(|frame| {
                    decode_response::<R>(frame, version)
                        .map(Some)
                        .map_err(|reason| ConnectionError::Malformed {
                            broker,
                            reason: reason.into(),
                        })
                });
                let _ = reply.send(out);
            }),
        ))
    }
}

type Act = Action<Pending, Completion>;

/// One session to one broker: a shell over `ConnectionCore`, which decides; this moves bytes
/// (connects, writes frames through the session's writer task, reads frames) and carries out
/// the core's actions. See the module docs.
pub struct BrokerConnection {
    node_id: i32,
    broker: Arc<str>,
    settings: ConnectionSettings,
    client_id: StrBytes,
    /// The decisions: lifecycle, queue, correlation ids, in-flight FIFO, timeouts, backoff.
    core: ConnectionCore<Pending, Completion>,
    /// The current session's versions (set before the core opens it).
    versions: NegotiatedVersions,
    /// The stream of a session connected and not opened yet (the core's `Open` takes it).
    connected: Option<BoxStream>,
    /// The current session's writer task (see [`SessionWriter`]).
    writer: Option<SessionWriter>,
    /// Timers and the reader of the current session, cancelled when it ends.
    session_handles: Vec<SpawnHandle>,
}

/// Called once a frame is on the socket (`Ok`) or will never be (`Err`): how an `acks=0`
/// request is answered, so it holds its sender's in-flight slot (and its batch) until then.
type Written = Box<dyn FnOnce(Result<(), ConnectionError>) + Send>;

/// One frame for the writer task.
struct WriterItem {
    segments: Segments,
    written: Option<Written>,
}

/// The handle of a session's writer task. Dropping it ends the task at once: frames still
/// queued are never written (a reset, retired, idle or replaced session writes nothing more on
/// its socket; the requests behind them were failed and may be retried elsewhere), and a write
/// blocked on a peer that stopped reading is abandoned.
struct SessionWriter {
    tx: mpsc::UnboundedSender<WriterItem>,
    _stop: oneshot::Sender<()>,
}

impl BrokerConnection {
    /// A connection to `broker` (`host:port`), known as `node_id` (`-1`, `-2`, ... for bootstrap
    /// servers).
    pub fn new(node_id: i32, broker: Arc<str>, settings: ConnectionSettings) -> Self {
        let client_id = StrBytes::from_string(settings.client_id.to_string());
        let rules = ConnectionRules {
            request_timeout: settings.request_timeout,
            max_idle: settings.max_idle,
            reconnect_backoff: settings.reconnect_backoff,
            reconnect_backoff_max: settings.reconnect_backoff_max,
            sasl: settings.security.protocol.uses_sasl(),
        };
        BrokerConnection {
            node_id,
            core: ConnectionCore::new(rules, node_id, broker.clone(), Instant::now()),
            broker,
            settings,
            client_id,
            versions: NegotiatedVersions::default(),
            connected: None,
            writer: None,
            session_handles: Vec::new(),
        }
    }

    /// Starts it under a supervisor on `arbiter`.
    pub fn start_supervised(
        node_id: i32,
        broker: Arc<str>,
        settings: ConnectionSettings,
        arbiter: &ArbiterHandle,
    ) -> Addr<BrokerConnection> {
        Supervisor::start_in_arbiter(arbiter, move |_| {
            BrokerConnection::new(node_id, broker, settings)
        })
    }

    /// Carries out the core's actions, in order.
    fn execute(&mut self, actions: Vec<Act>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                Action::Dial { delay } => self.dial(delay, ctx),
                Action::Open { session, reauth_in } => self.open(session, reauth_in, ctx),
                Action::Send {
                    call,
                    correlation_id,
                    session,
                } => self.write(call, correlation_id, session, ctx),
                Action::Refuse(call, err) => call.refuse(err),
                Action::Fail(done, err) => done(Err(err)),
                Action::CloseSession => {
                    self.writer = None; // the writer task shuts the stream down
                    for h in self.session_handles.drain(..) {
                        ctx.cancel_future(h);
                    }
                }
                Action::Restart => ctx.stop(),
                Action::Health(event) => self.health(event),
                Action::Count(count) => self.count(count),
            }
        }
    }

    fn health(&self, event: crate::health::HealthEvent) {
        use crate::health::HealthEvent;
        match &event {
            HealthEvent::BrokerDown { cause, .. } => {
                tracing::warn!(
                    broker = %self.broker,
                    node = self.node_id,
                    error = %cause,
                    "broker connection lost; reconnecting with backoff"
                );
            }
            HealthEvent::BrokerRestarted {
                attempt, down_for, ..
            } => {
                tracing::warn!(
                    broker = %self.broker,
                    node = self.node_id,
                    attempts = attempt,
                    down_ms = down_for.as_millis() as u64,
                    "broker connection back"
                );
            }
            _ => {}
        }
        self.settings.shared.health.emit(event);
    }

    fn count(&self, count: Count) {
        self.settings.shared.metrics.apply(count);
    }

    /// Connects after `delay` and reports the outcome to the core.
    fn dial(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let fut = connect(
            self.broker.clone(),
            self.client_id.clone(),
            self.settings.clone(),
            delay,
        );
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let now = Instant::now();
            let actions = match res {
                Ok(session) => {
                    tracing::debug!(broker = %act.broker, node = act.node_id, "connected");
                    let Session {
                        stream,
                        versions,
                        lifetime,
                    } = session;
                    act.versions = versions;
                    act.connected = Some(stream);
                    act.core.connected(now, lifetime, fastrand::f64())
                }
                Err(e) => {
                    tracing::debug!(broker = %act.broker, error = %e, "connect failed");
                    act.core.connect_failed(now, e)
                }
            };
            act.execute(actions, ctx);
        }));
    }

    /// Starts session `session`'s reader, writer task and timers.
    fn open(&mut self, session_id: u64, reauth_in: Option<Duration>, ctx: &mut Context<Self>) {
        let Some(stream) = self.connected.take() else {
            return; // unreachable: the core opens only what `dial` connected
        };
        for h in self.session_handles.drain(..) {
            ctx.cancel_future(h);
        }
        let (read, mut write) = tokio::io::split(stream);
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(MAX_RESPONSE_SIZE)
            .new_codec();
        let reader = ctx.add_stream(FramedRead::new(read, codec));
        self.session_handles.push(reader);
        let tick = (self.settings.request_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let watchdog = ctx.run_interval(tick, |act, ctx| {
            let actions = act.core.tick(Instant::now());
            act.execute(actions, ctx);
        });
        self.session_handles.push(watchdog);
        if let Some(at) = reauth_in {
            let timer = ctx.run_later(at, move |act, ctx| {
                tracing::debug!(broker = %act.broker, "re-authenticating (KIP-368)");
                let actions = act.core.reauth_due(Instant::now(), session_id);
                act.execute(actions, ctx);
            });
            self.session_handles.push(timer);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<WriterItem>();
        let (stop_tx, mut stop) = oneshot::channel::<()>();
        self.writer = Some(SessionWriter { tx, _stop: stop_tx });
        let addr = ctx.address();
        let broker = self.broker.clone();
        let write_timeout = self.settings.request_timeout;
        actix::spawn(async move {
            let mut pending: VecDeque<Bytes> = VecDeque::new();
            let mut written: Vec<Written> = Vec::new();
            let gone = |reason: &str| ConnectionError::Disconnected {
                broker: broker.clone(),
                reason: reason.into(),
            };
            let ended = loop {
                let first = tokio::select! {
                    biased;
                    _ = &mut stop => break "session ended before the frame was written",
                    first = rx.recv() => first,
                };
                let Some(first) = first else {
                    break "session ended before the frame was written";
                };
                // Coalesce what is queued into one vectored write: the frames' encoded parts
                // and the record batches they reference, without copying them together.
                let mut item = Some(first);
                while let Some(WriterItem {
                    segments,
                    written: w,
                }) = item.take().or_else(|| rx.try_recv().ok())
                {
                    pending.extend(segments);
                    written.extend(w);
                }
                let write_all = async {
                    write_segments(&mut write, &mut pending).await?;
                    write.flush().await
                };
                let res = tokio::select! {
                    biased;
                    _ = &mut stop => break "session ended before the frame was written",
                    res = tokio::time::timeout(write_timeout, write_all) => res,
                };
                let failed = match res {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("write failed: {e}")),
                    // The peer stopped reading for request.timeout.ms: the session is stuck.
                    Err(_) => Some(format!(
                        "write stalled for {} ms (request.timeout.ms)",
                        write_timeout.as_millis()
                    )),
                };
                if let Some(reason) = failed {
                    addr.do_send(Reset {
                        reason,
                        session: Some(session_id),
                    });
                    break "write failed";
                }
                for w in written.drain(..) {
                    w(Ok(()));
                }
            };
            for w in written.drain(..) {
                w(Err(gone(ended)));
            }
            // Frames queued and not written are answered too (acks=0 calls), never sent.
            rx.close();
            while let Ok(item) = rx.try_recv() {
                if let Some(w) = item.written {
                    w(Err(gone(ended)));
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), write.shutdown()).await;
        });
    }

    /// Encodes `call` and hands it to the session's writer.
    fn write(&mut self, call: Pending, correlation_id: i32, session: u64, ctx: &mut Context<Self>) {
        let Some(encoded) = call.encode(
            &self.versions,
            correlation_id,
            &self.client_id,
            &self.broker,
        ) else {
            return;
        };
        let (segments, written, done) = match encoded {
            Encoded::Response(segments, done) => (segments, None, Some(done)),
            Encoded::Written(segments, written) => (segments, Some(written), None),
        };
        let item = WriterItem { segments, written };
        let sent = match &self.writer {
            Some(w) => w.tx.send(item).map_err(|back| back.0),
            None => Err(item),
        };
        match sent {
            Ok(()) => {
                if let Some(done) = done {
                    self.core.sent(Instant::now(), correlation_id, done);
                }
            }
            Err(item) => {
                // The writer task ended (it failed a write and asked for a reset).
                let err = ConnectionError::Disconnected {
                    broker: self.broker.clone(),
                    reason: "writer closed".into(),
                };
                if let Some(w) = item.written {
                    w(Err(err.clone()));
                }
                if let Some(done) = done {
                    done(Err(err.clone()));
                }
                let actions = self.core.reset(Instant::now(), Some(session), err);
                self.execute(actions, ctx);
            }
        }
    }
}

/// Writes `segments` in order with vectored writes (up to 64 buffers per call), however the
/// stream splits them.
async fn write_segments<W: AsyncWrite + Unpin>(
    write: &mut W,
    segments: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    use bytes::Buf;
    while !segments.is_empty() {
        let slices: Vec<io::IoSlice<'_>> = segments
            .iter()
            .take(64)
            .map(|b| io::IoSlice::new(b))
            .collect();
        let mut n = write.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = segments.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Writes one request frame and reads one response frame (size prefix removed), refusing
/// lengths outside `4..=MAX_RESPONSE_SIZE` before allocating.
async fn exchange(stream: &mut BoxStream, frame: &[u8]) -> io::Result<Bytes> {
    stream.write_all(frame).await?;
    stream.flush().await?;
    let len = stream.read_u32().await?;
    let size = len as usize;
    if !(4..=MAX_RESPONSE_SIZE).contains(&size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response length {len:#010x} out of range"),
        ));
    }
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

/// A PLAINTEXT client reading a TLS listener's answer: the 4 "length" bytes are the start of a
/// TLS record (alert 0x15 or handshake 0x16, version 0x03 0x0N).
fn looks_like_tls(e: &io::Error) -> bool {
    let msg = e.to_string();
    ["0x1503", "0x1603"].iter().any(|p| msg.contains(p))
}

/// Connects (TCP, then TLS if configured), exchanges ApiVersions (v3, falling back to v0 if
/// the broker says UNSUPPORTED_VERSION), then authenticates with SASL if configured.
async fn connect(
    broker: Arc<str>,
    client_id: StrBytes,
    settings: ConnectionSettings,
    delay: Duration,
) -> Result<Session, ConnectionError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let timeout = settings.connect_timeout;
    let err = |reason: String| ConnectionError::Connect {
        broker: broker.clone(),
        reason: reason.into(),
    };
    let tls_err = |reason: String| ConnectionError::Tls {
        broker: broker.clone(),
        reason: reason.into(),
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&*broker))
        .await
        .map_err(|_| err(format!("timed out after {} ms", timeout.as_millis())))?
        .map_err(|e| err(e.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
    let mut stream: BoxStream = match &settings.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let host = broker.rsplit_once(':').map_or(&*broker, |(h, _)| h);
            let name = crate::security::tls::server_name(host).map_err(tls_err)?;
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let s = tokio::time::timeout(timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    tls_err(format!(
                        "TLS handshake timed out after {} ms (is this a TLS listener?)",
                        timeout.as_millis()
                    ))
                })?
                .map_err(|e| tls_err(crate::security::tls::describe_handshake_error(&e)))?;
            Box::new(s)
        }
    };
    let mut versions = None;
    for version in [3i16, 0] {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("actix-kafka"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let frame = encode_request(&req, version, 0, &client_id).map_err(err)?;
        let body = tokio::time::timeout(timeout, exchange(&mut stream, &frame))
            .await
            .map_err(|_| err("ApiVersions timed out".into()))?
            .map_err(|e| {
                if settings.tls.is_none() && looks_like_tls(&e) {
                    tls_err(
                        "the broker answered with TLS: this listener needs \
                             security.protocol=SSL or SASL_SSL"
                            .into(),
                    )
                } else {
                    err(format!("ApiVersions: {e}"))
                }
            })?;
        // The ApiVersions response header is always v0 (correlation id only), so an
        // UNSUPPORTED_VERSION answer in v0 layout is readable whatever we asked.
        let mut b = body.slice(4..);
        // A v0 UNSUPPORTED_VERSION answer may not walk as v3: check the layout we decode.
        let checked_version = if crate::protocol::guard::check_body(18, version, &b).is_ok() {
            version
        } else {
            crate::protocol::guard::check_body(18, 0, &b)
                .map_err(|e| err(format!("ApiVersions: {e}")))?;
            0
        };
        let response = match ApiVersionsResponse::decode(&mut b, checked_version) {
            Ok(r) => r,
            Err(_) if checked_version > 0 => {
                let mut b0 = body.slice(4..);
                crate::protocol::guard::check_body(18, 0, &b0)
                    .map_err(|e| err(format!("ApiVersions: {e}")))?;
                ApiVersionsResponse::decode(&mut b0, 0)
                    .map_err(|e| err(format!("ApiVersions decode: {e}")))?
            }
            Err(e) => return Err(err(format!("ApiVersions decode: {e}"))),
        };
        // UNSUPPORTED_VERSION: the broker answers in v0 with the versions it has; ask again.
        if ErrorCode::from_code(response.error_code) == ErrorCode::UnsupportedVersion && version > 0
        {
            continue;
        }
        if response.error_code != 0 {
            return Err(err(format!(
                "ApiVersions error code {}",
                response.error_code
            )));
        }
        versions = Some(NegotiatedVersions::negotiate(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        ));
        break;
    }
    let versions = versions.ok_or_else(|| err("ApiVersions not supported".into()))?;
    let lifetime = if settings.security.protocol.uses_sasl() {
        tokio::time::timeout(
            timeout.max(settings.request_timeout),
            authenticate(
                &mut stream,
                &broker,
                &client_id,
                &settings.security,
                &versions,
            ),
        )
        .await
        .map_err(|_| ConnectionError::Authentication {
            broker: broker.clone(),
            reason: "SASL authentication timed out".into(),
        })??
    } else {
        None
    };
    Ok(Session {
        stream,
        versions,
        lifetime,
    })
}

/// SaslHandshake v1 then SaslAuthenticate rounds (KIP-152) on a fresh connection. Returns the
/// session lifetime the broker granted (KIP-368), if any.
async fn authenticate(
    stream: &mut BoxStream,
    broker: &Arc<str>,
    client_id: &StrBytes,
    security: &SecurityConfig,
    versions: &NegotiatedVersions,
) -> Result<Option<Duration>, ConnectionError> {
    let auth = |reason: String| ConnectionError::Authentication {
        broker: broker.clone(),
        reason: reason.into(),
    };
    let io_err = |what: &str, e: io::Error| ConnectionError::Disconnected {
        broker: broker.clone(),
        reason: format!("{what}: {e}").into(),
    };
    let sasl = &security.sasl;
    let mechanism = sasl
        .mechanism
        .ok_or_else(|| auth("no supported sasl.mechanism configured".into()))?;
    let (Some(hs_version), Some(auth_version)) = (
        versions.get(SaslHandshakeRequest::KEY),
        versions.get(SaslAuthenticateRequest::KEY),
    ) else {
        return Err(auth(
            "the broker does not offer SaslHandshake v1 / SaslAuthenticate (Kafka 1.0+): \
             is this a PLAINTEXT or SSL listener? (security.protocol mismatch)"
                .into(),
        ));
    };
    let mut client = match mechanism {
        SaslMechanism::OAuthBearer => {
            let token = match (&sasl.token_provider, &sasl.unsecured_sub) {
                (Some(p), _) => p
                    .token()
                    .map_err(|e| auth(format!("token provider: {e}")))?,
                (None, Some(sub)) => unsecured_token(sub, crate::record::now_ms()),
                (None, None) => return Err(auth("no OAUTHBEARER token source".into())),
            };
            SaslClient::with_token(token)
        }
        _ => SaslClient::with_password(
            mechanism,
            sasl.username.as_deref().unwrap_or(""),
            sasl.password
                .clone()
                .unwrap_or_else(|| secrecy::SecretString::from(String::new())),
            if matches!(mechanism, SaslMechanism::Plain) {
                String::new()
            } else {
                client_nonce().map_err(auth)?
            },
        ),
    };
    let mut correlation_id = 1;
    let req =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let frame = encode_request(&req, hs_version, correlation_id, client_id)
        .map_err(|e| auth(e.to_string()))?;
    let body = exchange(stream, &frame)
        .await
        .map_err(|e| io_err("SaslHandshake", e))?;
    let hs = decode_response::<SaslHandshakeRequest>(body, hs_version)
        .map_err(|e| auth(format!("SaslHandshake: {e}")))?;
    if hs.error_code != 0 {
        let enabled: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(auth(format!(
            "the broker refused mechanism {} ({}); it enables {enabled:?}",
            mechanism.name(),
            crate::error::KafkaCode(hs.error_code)
        )));
    }
    let mut outgoing = client.start();
    let mut lifetime = None;
    // PLAIN and OAUTHBEARER take one round, SCRAM two; a broker that wants more is broken.
    for _round in 0..4 {
        correlation_id += 1;
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(outgoing));
        let frame = encode_request(&req, auth_version, correlation_id, client_id)
            .map_err(|e| auth(e.to_string()))?;
        let body = exchange(stream, &frame)
            .await
            .map_err(|e| io_err("SaslAuthenticate", e))?;
        let resp = decode_response::<SaslAuthenticateRequest>(body, auth_version)
            .map_err(|e| auth(format!("SaslAuthenticate: {e}")))?;
        if resp.error_code != 0 {
            let msg = resp
                .error_message
                .as_ref()
                .map_or_else(String::new, |m| m.as_str().chars().take(300).collect());
            return Err(auth(format!(
                "{} ({}): {msg}",
                mechanism.name(),
                crate::error::KafkaCode(resp.error_code)
            )));
        }
        if resp.session_lifetime_ms > 0 {
            lifetime = Some(Duration::from_millis(resp.session_lifetime_ms as u64));
        }
        match client.step(&resp.auth_bytes).map_err(auth)? {
            Next::Done => return Ok(lifetime),
            Next::Send(next) => outgoing = next,
        }
    }
    Err(auth("SASL exchange did not finish".into()))
}

impl Actor for BrokerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        let actions = self.core.start(Instant::now());
        self.execute(actions, ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.writer = None;
        let actions = self.core.ended();
        self.execute(actions, ctx);
    }
}

impl Supervised for BrokerConnection {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.writer = None;
        self.connected = None;
        self.session_handles.clear(); // the old context's timers and reader are gone
    }
}

impl<R> Handler<Call<R>> for BrokerConnection
where
    R: Request + Send + 'static,
    R::Response: Send,
{
    type Result = ();

    fn handle(&mut self, call: Call<R>, ctx: &mut Context<Self>) {
        if call.reply.is_closed() {
            return; // the caller gave up (timeout) while this waited in the mailbox
        }
        let actions = self.core.call(Instant::now(), Box::new(call));
        self.execute(actions, ctx);
    }
}

/// Retires a connection the pool replaced (its broker id now has another address): closes its
/// socket (or connection attempt), fails what it holds, stops its timers and never reconnects;
/// the actor ends once no address of it is left.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

impl Handler<Retire> for BrokerConnection {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        tracing::debug!(
            broker = %self.broker,
            node = self.node_id,
            "connection retired (address changed)"
        );
        // Stopping drops the socket, the reader, the timers and a connect in progress; the
        // supervisor restarts the actor only while addresses remain, and the core then stays
        // retired, failing calls fast.
        let actions = self.core.retire(Instant::now());
        self.execute(actions, ctx);
    }
}

impl Handler<Reset> for BrokerConnection {
    type Result = ();
    fn handle(&mut self, msg: Reset, ctx: &mut Context<Self>) {
        tracing::debug!(
            broker = %self.broker,
            node = self.node_id,
            reason = %msg.reason,
            "connection reset"
        );
        let actions = self.core.reset_for(Instant::now(), msg.session, msg.reason);
        self.execute(actions, ctx);
    }
}

impl StreamHandler<Result<BytesMut, io::Error>> for BrokerConnection {
    fn handle(&mut self, item: Result<BytesMut, io::Error>, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let frame = match item {
            Ok(f) => f.freeze(),
            Err(e) => {
                let err = if e.kind() == io::ErrorKind::InvalidData {
                    ConnectionError::Malformed {
                        broker: self.broker.clone(),
                        reason: e.to_string().into(),
                    }
                } else {
                    ConnectionError::Disconnected {
                        broker: self.broker.clone(),
                        reason: e.to_string().into(),
                    }
                };
                let actions = self.core.reset(now, None, err);
                self.execute(actions, ctx);
                return;
            }
        };
        let (done, actions) = self.core.response(now, peek_correlation_id(&frame));
        if let Some(done) = done {
            done(Ok(frame));
        }
        self.execute(actions, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        let actions = self.core.closed_by_peer(Instant::now());
        self.execute(actions, ctx);
    }
}

/// Sends `request` on `conn` and waits for the reply, at most `timeout` (`request.timeout.ms`;
/// the connection itself resets a session whose requests stay unanswered that long).
///
/// # Errors
/// [`ConnectionError`]s: disconnect, timeout, unsupported version, malformed response.
pub async fn call<R>(
    conn: &Addr<BrokerConnection>,
    broker: Arc<str>,
    request: R,
    expect_response: bool,
    timeout: Duration,
) -> CallResult<R>
where
    R: Request + Send + 'static,
    R::Response: Send,
{
    let (tx, rx) = oneshot::channel();
    conn.do_send(Call {
        request,
        expect_response,
        reply: tx,
    });
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(res)) => res,
        Ok(Err(_)) => Err(ConnectionError::Disconnected {
            broker,
            reason: "connection actor gone".into(),
        }),
        Err(_) => {
            // As Java's NetworkClient: a request timeout closes the connection first, so a
            // retry can never travel beside the unanswered original on the same connection.
            conn.do_send(Reset {
                reason: format!("request timed out after {} ms", timeout.as_millis()),
                session: None,
            });
            Err(ConnectionError::RequestTimeout {
                broker,
                timeout_ms: timeout.as_millis() as u64,
            })
        }
    }
}

/// The connections of one producer: one supervised [`BrokerConnection`] per broker id, created
/// on first use on the network arbiter. Bootstrap servers get ids `-1`, `-2`, ...
pub struct ConnectionPool {
    conns: dashmap::DashMap<i32, (Arc<str>, Addr<BrokerConnection>)>,
    settings: ConnectionSettings,
    arbiter: ArbiterHandle,
    bootstrap: Vec<Arc<str>>,
    rotation: std::sync::atomic::AtomicUsize,
}

impl ConnectionPool {
    /// A pool that starts its connections on `arbiter`.
    pub fn new(
        settings: ConnectionSettings,
        arbiter: ArbiterHandle,
        bootstrap: Vec<Arc<str>>,
    ) -> Self {
        ConnectionPool {
            conns: dashmap::DashMap::new(),
            settings,
            arbiter,
            bootstrap,
            rotation: Default::default(),
        }
    }

    /// Where health events go.
    pub(crate) fn health(&self) -> &crate::health::HealthHub {
        &self.settings.shared.health
    }

    /// The connection to broker `node_id` at `address`, started if needed (or replaced if the
    /// broker's address changed).
    pub fn get(&self, node_id: i32, address: &Arc<str>) -> Addr<BrokerConnection> {
        let mut entry = self.conns.entry(node_id).or_insert_with(|| {
            let addr = BrokerConnection::start_supervised(
                node_id,
                address.clone(),
                self.settings.clone(),
                &self.arbiter,
            );
            (address.clone(), addr)
        });
        if entry.0 != *address {
            entry.1.do_send(Retire);
            let addr = BrokerConnection::start_supervised(
                node_id,
                address.clone(),
                self.settings.clone(),
                &self.arbiter,
            );
            *entry = (address.clone(), addr);
        }
        entry.1.clone()
    }

    /// Drops the pool's address of every broker no longer in `cluster` (decommissioned,
    /// replaced): such a connection answers what it has in flight, closes after
    /// `connections.max.idle.ms` like any idle one, and its actor then ends (nothing holds
    /// its address). Bootstrap connections (negative ids) stay.
    pub(crate) fn forget_missing(&self, cluster: &crate::cluster::Cluster) {
        self.conns
            .retain(|id, _| *id < 0 || cluster.brokers.contains_key(id));
    }

    /// Some connection for cluster-wide requests (Metadata, InitProducerId): the known brokers
    /// in rotation, else the bootstrap servers in rotation.
    pub fn any(
        &self,
        known: &[crate::cluster::BrokerInfo],
    ) -> Option<(Arc<str>, Addr<BrokerConnection>)> {
        let n = self
            .rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !known.is_empty() {
            let b = &known[n % known.len()];
            return Some((b.address.clone(), self.get(b.node_id, &b.address)));
        }
        if self.bootstrap.is_empty() {
            return None;
        }
        let i = n % self.bootstrap.len();
        let address = self.bootstrap[i].clone();
        Some((address.clone(), self.get(-(i as i32) - 1, &address)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A connection whose broker moved to another address is retired by the pool: its socket
    /// (here: a connection attempt waiting for the ApiVersions answer) is closed at once, and
    /// it does not reconnect to the old address.
    #[actix_rt::test]
    async fn replaced_connection_is_closed() {
        let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let new = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (old_addr, new_addr) = (old.local_addr().unwrap(), new.local_addr().unwrap());
        let settings = ConnectionSettings {
            client_id: "t".into(),
            connect_timeout: Duration::from_secs(30),
            reconnect_backoff: Duration::from_millis(10),
            reconnect_backoff_max: Duration::from_millis(10),
            request_timeout: Duration::from_secs(30),
            max_idle: Duration::from_secs(540),
            security: Arc::new(crate::security::SecurityConfig::defaults()),
            tls: None,
            shared: Default::default(),
        };
        let pool = ConnectionPool::new(settings, actix::Arbiter::current(), Vec::new());
        let first = pool.get(5, &Arc::from(old_addr.to_string()));
        let (mut sock, _) = old.accept().await.unwrap();
        // The broker's address changes in metadata: the pool replaces the connection.
        let second = pool.get(5, &Arc::from(new_addr.to_string()));
        drop(first);
        let _ = new.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // the ApiVersions request
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the replaced connection's socket is still open"
        );
        // And it does not come back to the old address.
        let again = tokio::time::timeout(Duration::from_millis(500), old.accept()).await;
        assert!(again.is_err(), "the retired connection reconnected");
        drop(second);
    }
}
