//! `BrokerConnection`: one TCP session to one broker, run under an [`actix::Supervisor`].
//!
//! It owns the socket, the correlation ids and the queue of requests in flight. On start it
//! connects (after a reconnect backoff if this is a restart), exchanges ApiVersions and keeps
//! the highest version both sides support per API. Requests are written in order; Kafka
//! answers in order on one connection, so responses are matched against the front of the
//! in-flight queue and a wrong correlation id resets the connection. Any read error, EOF,
//! oversized or malformed frame fails every request in flight with a retriable
//! [`ConnectionError`] and stops the actor; the supervisor restarts it, keeping its mailbox.
//!
//! The number of requests in flight is bounded by the callers (the sender keeps
//! `max.in.flight.requests.per.connection`), not here.

use crate::error::ConnectionError;
use crate::protocol::frame::{
    decode_response, encode_request, peek_correlation_id, NegotiatedVersions, MAX_RESPONSE_SIZE,
};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// `false` for Produce with `acks=0`: the broker sends no response, the call completes once written.
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
#[derive(Clone, Debug)]
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
}

type Completion = Box<dyn FnOnce(Result<Bytes, ConnectionError>) + Send>;

struct InFlight {
    correlation_id: i32,
    sent: Instant,
    complete: Completion,
}

/// One session to one broker. See the module docs.
pub struct BrokerConnection {
    node_id: i32,
    broker: Arc<str>,
    settings: ConnectionSettings,
    client_id: StrBytes,
    /// Consecutive failed sessions; drives the reconnect backoff.
    failures: u32,
    versions: NegotiatedVersions,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    in_flight: VecDeque<InFlight>,
    next_correlation_id: i32,
    /// Incremented on every successful connect.
    session: u64,
    /// Calls that arrived while connecting (first attempt of a session cycle).
    queued: Vec<QueuedCall>,
    /// Why the last connect attempt failed; while set, calls fail fast with it instead of
    /// waiting for the reconnect backoff.
    last_error: Option<ConnectionError>,
}

type QueuedCall = Box<dyn FnOnce(&mut BrokerConnection, &mut Context<BrokerConnection>) + Send>;

impl BrokerConnection {
    /// A connection to `broker` (`host:port`), known as `node_id` (`-1`, `-2`, ... for bootstrap servers).
    pub fn new(node_id: i32, broker: Arc<str>, settings: ConnectionSettings) -> Self {
        let client_id = StrBytes::from_string(settings.client_id.to_string());
        BrokerConnection {
            node_id,
            broker,
            settings,
            client_id,
            failures: 0,
            versions: NegotiatedVersions::default(),
            writer: None,
            in_flight: VecDeque::new(),
            next_correlation_id: 1,
            session: 0,
            queued: Vec::new(),
            last_error: None,
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

    fn backoff(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        crate::backoff::exponential(
            self.settings.reconnect_backoff,
            self.settings.reconnect_backoff_max,
            self.failures,
        )
    }

    fn fail_in_flight(&mut self, err: ConnectionError) {
        for f in self.in_flight.drain(..) {
            (f.complete)(Err(err.clone()));
        }
    }

    fn disconnected(&self, reason: impl Into<Arc<str>>) -> ConnectionError {
        ConnectionError::Disconnected {
            broker: self.broker.clone(),
            reason: reason.into(),
        }
    }

    fn shut(&mut self, err: ConnectionError, ctx: &mut Context<Self>) {
        tracing::debug!(broker = %self.broker, node = self.node_id, error = %err, "connection reset");
        self.writer = None;
        self.fail_in_flight(err);
        self.failures += 1;
        ctx.stop();
    }
}

/// Connects and exchanges ApiVersions (v3, falling back to v0 if the broker says
/// UNSUPPORTED_VERSION).
async fn connect(
    broker: Arc<str>,
    client_id: StrBytes,
    timeout: Duration,
    delay: Duration,
) -> Result<(TcpStream, NegotiatedVersions), ConnectionError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let err = |reason: String| ConnectionError::Connect {
        broker: broker.clone(),
        reason: reason.into(),
    };
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(&*broker))
        .await
        .map_err(|_| err(format!("timed out after {} ms", timeout.as_millis())))?
        .map_err(|e| err(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| err(e.to_string()))?;
    for version in [3i16, 0] {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("actix-kafka"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let frame = encode_request(&req, version, 0, &client_id).map_err(err)?;
        let exchange = async {
            stream.write_all(&frame).await?;
            let len = stream.read_u32().await? as usize;
            if !(4..=MAX_RESPONSE_SIZE).contains(&len) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("ApiVersions response length {len} out of range"),
                ));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| err("ApiVersions timed out".into()))?
            .map_err(|e| err(format!("ApiVersions: {e}")))?;
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
        if response.error_code == 35 && version > 0 {
            continue;
        }
        if response.error_code != 0 {
            return Err(err(format!(
                "ApiVersions error code {}",
                response.error_code
            )));
        }
        let versions = NegotiatedVersions::negotiate(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        );
        return Ok((stream, versions));
    }
    Err(err("ApiVersions not supported".into()))
}

impl Actor for BrokerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        let delay = self.backoff();
        let fut = connect(
            self.broker.clone(),
            self.client_id.clone(),
            self.settings.connect_timeout,
            delay,
        );
        // Calls arriving meanwhile are queued (first attempt) or failed fast (while a broker
        // stays unreachable, so callers retry on their own backoff and deadlines).
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((stream, versions)) => {
                tracing::debug!(broker = %act.broker, node = act.node_id, "connected");
                act.failures = 0;
                act.last_error = None;
                act.session += 1;
                let session = act.session;
                act.versions = versions;
                let (read, mut write) = stream.into_split();
                let codec = LengthDelimitedCodec::builder()
                    .length_field_length(4)
                    .max_frame_length(MAX_RESPONSE_SIZE)
                    .new_codec();
                ctx.add_stream(FramedRead::new(read, codec));
                // Requests are answered in order: if the oldest one waits longer than
                // request.timeout.ms, the session is stuck; reset it (as the Java client does).
                let timeout = act.settings.request_timeout;
                let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
                ctx.run_interval(tick, move |act, ctx| {
                    if act
                        .in_flight
                        .front()
                        .is_some_and(|f| f.sent.elapsed() > timeout)
                    {
                        let err = ConnectionError::RequestTimeout {
                            broker: act.broker.clone(),
                            timeout_ms: timeout.as_millis() as u64,
                        };
                        act.shut(err, ctx);
                    }
                });
                let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
                act.writer = Some(tx);
                let addr = ctx.address();
                actix::spawn(async move {
                    while let Some(first) = rx.recv().await {
                        // Coalesce what is queued into one write.
                        let mut res = write.write_all(&first).await;
                        while res.is_ok() {
                            match rx.try_recv() {
                                Ok(more) => res = write.write_all(&more).await,
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = res {
                            addr.do_send(Reset {
                                reason: format!("write failed: {e}"),
                                session: Some(session),
                            });
                            break;
                        }
                    }
                    let _ = write.shutdown().await;
                });
                for q in std::mem::take(&mut act.queued) {
                    q(act, ctx);
                }
            }
            Err(e) => {
                tracing::debug!(broker = %act.broker, error = %e, "connect failed");
                act.failures += 1;
                act.last_error = Some(e.clone());
                for q in std::mem::take(&mut act.queued) {
                    q(act, ctx); // fails fast now that last_error is set
                }
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        let err = self.disconnected("connection actor stopped");
        self.fail_in_flight(err.clone());
        self.last_error.get_or_insert(err);
        for q in std::mem::take(&mut self.queued) {
            q(self, ctx);
        }
    }
}

impl Supervised for BrokerConnection {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.writer = None;
        let err = self.disconnected("connection restarting");
        self.fail_in_flight(err);
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
        let Some(writer) = self.writer.clone() else {
            match &self.last_error {
                Some(err) => {
                    let _ = call.reply.send(Err(err.clone()));
                }
                None => self
                    .queued
                    .push(Box::new(move |act, ctx| Handler::handle(act, call, ctx))),
            }
            return;
        };
        let Some(version) = self.versions.get(R::KEY) else {
            let _ = call.reply.send(Err(ConnectionError::UnsupportedVersion {
                broker: self.broker.clone(),
                api_key: R::KEY,
            }));
            return;
        };
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let frame = match encode_request(&call.request, version, correlation_id, &self.client_id) {
            Ok(f) => f,
            Err(e) => {
                let _ = call.reply.send(Err(ConnectionError::Malformed {
                    broker: self.broker.clone(),
                    reason: format!("cannot encode request: {e}").into(),
                }));
                return;
            }
        };
        if writer.send(frame).is_err() {
            let err = self.disconnected("writer closed");
            let _ = call.reply.send(Err(err.clone()));
            self.shut(err, ctx);
            return;
        }
        let reply = call.reply;
        if !call.expect_response {
            let _ = reply.send(Ok(None));
            return;
        }
        let broker = self.broker.clone();
        self.in_flight.push_back(InFlight {
            correlation_id,
            sent: Instant::now(),
            complete: Box::new(move |res| {
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
        });
    }
}

impl Handler<Reset> for BrokerConnection {
    type Result = ();
    fn handle(&mut self, msg: Reset, ctx: &mut Context<Self>) {
        if msg.session.is_some_and(|s| s != self.session) {
            return;
        }
        let err = self.disconnected(msg.reason);
        self.shut(err, ctx);
    }
}

impl StreamHandler<Result<BytesMut, io::Error>> for BrokerConnection {
    fn handle(&mut self, item: Result<BytesMut, io::Error>, ctx: &mut Context<Self>) {
        let frame = match item {
            Ok(f) => f.freeze(),
            Err(e) => {
                let err = if e.kind() == io::ErrorKind::InvalidData {
                    ConnectionError::Malformed {
                        broker: self.broker.clone(),
                        reason: e.to_string().into(),
                    }
                } else {
                    self.disconnected(e.to_string())
                };
                self.shut(err, ctx);
                return;
            }
        };
        let cid = peek_correlation_id(&frame);
        match self.in_flight.front() {
            Some(front) if Some(front.correlation_id) == cid => {
                let f = self.in_flight.pop_front().expect("front exists");
                (f.complete)(Ok(frame));
            }
            front => {
                let reason = format!(
                    "unexpected correlation id {:?} (expected {:?})",
                    cid,
                    front.map(|f| f.correlation_id)
                );
                let err = ConnectionError::Malformed {
                    broker: self.broker.clone(),
                    reason: reason.into(),
                };
                self.shut(err, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        let err = self.disconnected("closed by the broker");
        self.shut(err, ctx);
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
        Err(_) => Err(ConnectionError::RequestTimeout {
            broker,
            timeout_ms: timeout.as_millis() as u64,
        }),
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
