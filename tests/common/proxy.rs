//! A loopback TCP proxy for fault injection between a Kafka client and one broker.
//!
//! [`Proxy::start`] listens on `127.0.0.1:<free port>` and forwards every connection to the
//! upstream broker. It understands just enough of the protocol to
//!
//! * frame requests and responses (4-byte size prefix) and remember, per connection and in
//!   order, the API key / version / correlation id of every request that expects a response;
//! * rewrite the broker addresses in Metadata responses (upstream port -> proxy port), so the
//!   client keeps talking through the proxies instead of connecting to the advertised address
//!   (works for Tansu and for librdkafka's mock cluster; see [`Proxy::start_group`] for a
//!   cluster with several brokers);
//! * apply one-shot faults queued with [`Proxy::inject`] to the next matching response
//!   ([`Fault`]), or answer the next matching request itself without forwarding it
//!   ([`Proxy::fail_next_requests`]: a Produce error the broker never saw).
//!
//! The proxy runs on a thread of its own (current-thread tokio runtime), so it keeps working
//! while the test thread blocks. Dropping the [`Proxy`] closes the listener and every
//! connection. All methods are synchronous and cheap.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Kafka API keys used with [`Proxy::inject`].
pub const PRODUCE: i16 = 0;
pub const METADATA: i16 = 3;
pub const API_VERSIONS: i16 = 18;
pub const INIT_PRODUCER_ID: i16 = 22;

/// Requests and responses larger than this are refused by the proxy itself (it closes the
/// connection); far above anything the tests send.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// What to do with the next response of a given API (see [`Proxy::inject`]). Each fault is
/// applied once, to the first matching response on any connection of that proxy.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The request was forwarded (the broker processed it); drop its response and close both
    /// sides of the connection.
    CutBeforeResponse,
    /// Hold the response (and everything behind it on that connection) this long.
    Stall(Duration),
    /// Send these bytes instead of the response; then close both sides if `close`, else keep
    /// forwarding the following responses.
    Raw { bytes: Vec<u8>, close: bool },
    /// Send these bytes, then the real response.
    InjectBefore(Vec<u8>),
    /// Send the size prefix and the first half of the response, then close both sides.
    Truncate,
    /// Forward the response with a different correlation id.
    WrongCorrelationId,
    /// Keep the size and correlation id, replace every following byte with garbage.
    GarbageBody,
    /// A well-framed response with the right correlation id whose first array claims
    /// 2^31 - 1 (or 2^31 - 2, flexible) elements.
    HugeArrayCount,
    /// Produce only: forward the response with every partition's error code set to this code
    /// (the broker wrote the data; the client is told it failed).
    ErrorAfterForward(i16),
    /// Produce only: forward the broker's response edited by this function (a broker that
    /// answers something else than what was asked: a missing partition, a negative offset, a
    /// throttle time...).
    ProduceEdit(fn(&mut ProduceResponse)),
    /// Metadata only: forward the broker's response edited by this function (addresses are
    /// still rewritten to the proxies afterwards).
    MetadataEdit(fn(&mut MetadataResponse)),
}

/// Counters of one proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Requests forwarded to the broker.
    pub requests_forwarded: u64,
    /// Responses forwarded to the client (possibly rewritten).
    pub responses_forwarded: u64,
    /// Faults of [`Proxy::inject`] applied.
    pub faults_applied: u64,
    /// Requests answered by [`Proxy::fail_next_requests`].
    pub requests_failed: u64,
    /// Metadata responses whose broker addresses were rewritten.
    pub metadata_rewritten: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests_forwarded: AtomicU64,
    responses_forwarded: AtomicU64,
    faults_applied: AtomicU64,
    requests_failed: AtomicU64,
    metadata_rewritten: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    response_faults: Mutex<VecDeque<(i16, Fault)>>,
    request_faults: Mutex<VecDeque<(i16, i16)>>,
    /// Minimum time between forwarding a request of this API and forwarding its response.
    latency: Mutex<HashMap<i16, Duration>>,
    /// upstream port -> proxy port; shared by the proxies of a group.
    rewrite: Arc<Mutex<HashMap<u16, u16>>>,
    counters: Counters,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
    /// [`Proxy::stop_reading`]: the proxy reads nothing from its clients.
    not_reading: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn take_response_fault(&self, api_key: i16) -> Option<Fault> {
        let mut q = self.response_faults.lock().unwrap();
        let i = q.iter().position(|(k, _)| *k == api_key)?;
        let f = q.remove(i).map(|(_, f)| f);
        if f.is_some() {
            self.counters.faults_applied.fetch_add(1, Ordering::SeqCst);
        }
        f
    }

    fn take_request_fault(&self, api_key: i16) -> Option<i16> {
        let mut q = self.request_faults.lock().unwrap();
        let i = q.iter().position(|(k, _)| *k == api_key)?;
        q.remove(i).map(|(_, code)| code)
    }
}

/// One proxy (listener + connections) in front of one broker. See the module docs.
pub struct Proxy {
    /// `127.0.0.1:port` the clients connect to.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of `upstream` (e.g. a Tansu broker), rewriting Metadata responses so
    /// that `upstream`'s port is replaced by the proxy's.
    pub fn start(upstream: SocketAddr) -> Proxy {
        Self::start_group(&[upstream]).pop().expect("one proxy")
    }

    /// One proxy per broker of a cluster, sharing one address rewrite table: Metadata responses
    /// seen by any of them advertise the proxies instead of the brokers.
    pub fn start_group(upstreams: &[SocketAddr]) -> Vec<Proxy> {
        let rewrite = Arc::new(Mutex::new(HashMap::new()));
        upstreams
            .iter()
            .map(|u| Self::start_with(*u, rewrite.clone()))
            .collect()
    }

    fn start_with(upstream: SocketAddr, rewrite: Arc<Mutex<HashMap<u16, u16>>>) -> Proxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        rewrite.lock().unwrap().insert(upstream.port(), addr.port());
        let shared = Arc::new(Shared {
            upstream,
            response_faults: Mutex::new(VecDeque::new()),
            request_faults: Mutex::new(VecDeque::new()),
            latency: Mutex::new(HashMap::new()),
            rewrite,
            counters: Counters::default(),
            connections: Mutex::new(Vec::new()),
            not_reading: std::sync::atomic::AtomicBool::new(false),
        });
        let (tx, rx) = oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, s) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task: sockets close.
            })
            .expect("spawn proxy thread");
        Proxy {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `fault` for the next response to a request with API key `api_key`.
    pub fn inject(&self, api_key: i16, fault: Fault) {
        self.shared
            .response_faults
            .lock()
            .unwrap()
            .push_back((api_key, fault));
    }

    /// The next `n` Produce requests are not forwarded: the proxy answers each itself with
    /// `error_code` for every partition in it (the broker never sees the data).
    pub fn fail_next_requests(&self, api_key: i16, error_code: i16, n: usize) {
        assert_eq!(
            api_key, PRODUCE,
            "only Produce requests can be answered by the proxy"
        );
        let mut q = self.shared.request_faults.lock().unwrap();
        for _ in 0..n {
            q.push_back((api_key, error_code));
        }
    }

    /// Every response to a request with API key `api_key` is forwarded no earlier than
    /// `latency` after its request was (a slow broker / long round trip; pipelined requests
    /// overlap). `Duration::ZERO` turns it off.
    pub fn set_latency(&self, api_key: i16, latency: Duration) {
        let mut l = self.shared.latency.lock().unwrap();
        if latency.is_zero() {
            l.remove(&api_key);
        } else {
            l.insert(api_key, latency);
        }
    }

    /// Faults queued and not applied yet (responses and requests).
    pub fn faults_pending(&self) -> usize {
        self.shared.response_faults.lock().unwrap().len()
            + self.shared.request_faults.lock().unwrap().len()
    }

    /// Response faults ([`Proxy::inject`]) queued and not applied yet.
    pub fn response_faults_pending(&self) -> usize {
        self.shared.response_faults.lock().unwrap().len()
    }

    /// A broker that stops reading: from now on the proxy reads nothing more from its clients'
    /// sockets (requests already read are still forwarded and answered), so once the socket
    /// buffers are full the clients' writes block. [`Proxy::resume_reading`] undoes it.
    pub fn stop_reading(&self) {
        self.shared.not_reading.store(true, Ordering::SeqCst);
    }

    /// Reads from the clients again (see [`Proxy::stop_reading`]).
    pub fn resume_reading(&self) {
        self.shared.not_reading.store(false, Ordering::SeqCst);
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.shared.response_faults.lock().unwrap().clear();
        self.shared.request_faults.lock().unwrap().clear();
    }

    /// Closes every open connection (both sides) now; new connections are accepted as usual.
    pub fn kill_connections(&self) {
        for h in self.shared.connections.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            connections: c.connections.load(Ordering::SeqCst),
            requests_forwarded: c.requests_forwarded.load(Ordering::SeqCst),
            responses_forwarded: c.responses_forwarded.load(Ordering::SeqCst),
            faults_applied: c.faults_applied.load(Ordering::SeqCst),
            requests_failed: c.requests_failed.load(Ordering::SeqCst),
            metadata_rewritten: c.metadata_rewritten.load(Ordering::SeqCst),
        }
    }

    /// Waits (blocking, polling every 5 ms) until `cond(stats)` holds; false on timeout.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&ProxyStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.stats()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(connection(client, shared.clone()));
        let mut conns = shared.connections.lock().unwrap();
        conns.retain(|h| !h.is_finished());
        conns.push(task.abort_handle());
    }
}

/// What the client is owed next on a connection, in request order.
enum Pending {
    /// The broker's response to this request.
    Upstream {
        api_key: i16,
        version: i16,
        correlation_id: i32,
        /// When the request was forwarded (for [`Proxy::set_latency`]).
        forwarded: tokio::time::Instant,
    },
    /// A response made up by the proxy (full frame with size prefix).
    Synth(Bytes),
}

async fn read_frame(r: &mut OwnedReadHalf) -> std::io::Result<Bytes> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

async fn write_frame(w: &mut OwnedWriteHalf, body: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await
}

fn closed(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_string())
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return; // the client sees the connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Pending>();

    let requests = pump_requests(cr, sw, tx, shared.clone());
    let responses = pump_responses(sr, cw, rx, shared);
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
    // Both halves of both sockets are dropped here: the client and the broker see a close.
}

/// Client -> broker: forwards requests (or answers them, see [`Proxy::fail_next_requests`])
/// and tells the response side, in order, what the client is owed.
async fn pump_requests(
    mut cr: OwnedReadHalf,
    mut sw: OwnedWriteHalf,
    tx: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    loop {
        while shared.not_reading.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let frame = read_frame(&mut cr).await?;
        if frame.len() < 8 {
            return Err(closed("short request"));
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let produce = if api_key == PRODUCE {
            decode_produce_request(&frame, version)
        } else {
            None
        };
        let expects_response = produce.as_ref().is_none_or(|p| p.acks != 0);
        if let Some(p) = &produce {
            if let Some(code) = shared.take_request_fault(api_key) {
                shared
                    .counters
                    .requests_failed
                    .fetch_add(1, Ordering::SeqCst);
                if expects_response {
                    let resp = produce_error_response(p, version, correlation_id, code);
                    tx.send(Pending::Synth(resp))
                        .map_err(|_| closed("writer gone"))?;
                }
                continue;
            }
        }
        write_frame(&mut sw, &frame).await?;
        shared
            .counters
            .requests_forwarded
            .fetch_add(1, Ordering::SeqCst);
        if expects_response {
            tx.send(Pending::Upstream {
                api_key,
                version,
                correlation_id,
                forwarded: tokio::time::Instant::now(),
            })
            .map_err(|_| closed("writer gone"))?;
        }
    }
}

/// Broker -> client: forwards the responses in request order, applying the queued faults and
/// the Metadata address rewrite.
async fn pump_responses(
    mut sr: OwnedReadHalf,
    mut cw: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    while let Some(p) = rx.recv().await {
        let (api_key, version, correlation_id) = match p {
            Pending::Synth(frame) => {
                cw.write_all(&frame).await?;
                continue;
            }
            Pending::Upstream {
                api_key,
                version,
                correlation_id,
                forwarded,
            } => {
                let latency = shared.latency.lock().unwrap().get(&api_key).copied();
                if let Some(latency) = latency {
                    // Responses keep their order; each leaves no earlier than `latency` after
                    // its request was forwarded (pipelined requests overlap, as on a slow link).
                    tokio::time::sleep_until(forwarded + latency).await;
                }
                (api_key, version, correlation_id)
            }
        };
        let frame = read_frame(&mut sr).await?;
        let fault = shared.take_response_fault(api_key);
        // Only the broker's own Metadata responses are decoded for the address rewrite, never
        // a response a fault made up or mangled.
        let genuine = matches!(
            fault,
            None | Some(Fault::Stall(_))
                | Some(Fault::InjectBefore(_))
                | Some(Fault::MetadataEdit(_))
        );
        let frame = match fault {
            None => frame,
            Some(Fault::CutBeforeResponse) => return Err(closed("cut before response")),
            Some(Fault::Stall(d)) => {
                tokio::time::sleep(d).await;
                frame
            }
            Some(Fault::Raw { bytes, close }) => {
                cw.write_all(&bytes).await?;
                if close {
                    cw.flush().await?;
                    return Err(closed("raw bytes then close"));
                }
                continue;
            }
            Some(Fault::InjectBefore(bytes)) => {
                cw.write_all(&bytes).await?;
                frame
            }
            Some(Fault::Truncate) => {
                let mut buf = Vec::new();
                buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                buf.extend_from_slice(&frame[..frame.len() / 2]);
                cw.write_all(&buf).await?;
                cw.flush().await?;
                return Err(closed("truncated response then close"));
            }
            Some(Fault::WrongCorrelationId) => {
                let mut f = frame.to_vec();
                let wrong = correlation_id ^ 0x5a5a_5a5a;
                f[..4].copy_from_slice(&wrong.to_be_bytes());
                Bytes::from(f)
            }
            Some(Fault::GarbageBody) => {
                let mut f = frame.to_vec();
                for (i, b) in f.iter_mut().enumerate().skip(4) {
                    *b = 0xa5 ^ (i as u8).wrapping_mul(31);
                }
                Bytes::from(f)
            }
            Some(Fault::HugeArrayCount) => huge_array_response(api_key, version, correlation_id),
            Some(Fault::ErrorAfterForward(code)) => {
                produce_response_with_error(&frame, version, code).unwrap_or(frame)
            }
            Some(Fault::ProduceEdit(edit)) => {
                edit_response::<ProduceResponse>(&frame, version, edit).unwrap_or(frame)
            }
            Some(Fault::MetadataEdit(edit)) => {
                edit_response::<MetadataResponse>(&frame, version, edit).unwrap_or(frame)
            }
        };
        let frame = if api_key == METADATA && genuine {
            match rewrite_metadata(&frame, version, &shared.rewrite) {
                Some(f) => {
                    shared
                        .counters
                        .metadata_rewritten
                        .fetch_add(1, Ordering::SeqCst);
                    f
                }
                None => frame,
            }
        } else {
            frame
        };
        write_frame(&mut cw, &frame).await?;
        shared
            .counters
            .responses_forwarded
            .fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

struct ProduceInfo {
    acks: i16,
    /// (topic, partitions)
    topics: Vec<(StrBytes, Vec<i32>)>,
}

fn decode_produce_request(frame: &Bytes, version: i16) -> Option<ProduceInfo> {
    let mut b = frame.clone();
    RequestHeader::decode(&mut b, ProduceRequest::header_version(version)).ok()?;
    let req = ProduceRequest::decode(&mut b, version).ok()?;
    Some(ProduceInfo {
        acks: req.acks,
        topics: req
            .topic_data
            .iter()
            .map(|t| {
                (
                    t.name.0.clone(),
                    t.partition_data.iter().map(|p| p.index).collect(),
                )
            })
            .collect(),
    })
}

fn encode_response<M: Encodable>(
    body: &M,
    header_version: i16,
    version: i16,
    correlation_id: i32,
) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .expect("encode response header");
    body.encode(&mut buf, version)
        .expect("encode response body");
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// A full frame (with size prefix): a ProduceResponse failing every partition of `p`.
fn produce_error_response(p: &ProduceInfo, version: i16, correlation_id: i32, code: i16) -> Bytes {
    let resp = ProduceResponse::default().with_responses(
        p.topics
            .iter()
            .map(|(name, parts)| {
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(name.clone()))
                    .with_partition_responses(
                        parts
                            .iter()
                            .map(|&i| {
                                PartitionProduceResponse::default()
                                    .with_index(i)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_response(
        &resp,
        ProduceResponse::header_version(version),
        version,
        correlation_id,
    )
}

/// The broker's Produce response (no size prefix) with every partition's error code replaced.
fn produce_response_with_error(frame: &Bytes, version: i16, code: i16) -> Option<Bytes> {
    let hv = ProduceResponse::header_version(version);
    let mut b = frame.clone();
    let header = ResponseHeader::decode(&mut b, hv).ok()?;
    let mut resp = ProduceResponse::decode(&mut b, version).ok()?;
    for t in &mut resp.responses {
        for p in &mut t.partition_responses {
            p.error_code = code;
        }
    }
    Some(encode_response(&resp, hv, version, header.correlation_id).slice(4..))
}

/// The broker's response (no size prefix) decoded, edited and encoded again.
fn edit_response<M: Decodable + Encodable + HeaderVersion>(
    frame: &Bytes,
    version: i16,
    edit: fn(&mut M),
) -> Option<Bytes> {
    let hv = M::header_version(version);
    let mut b = frame.clone();
    let header = ResponseHeader::decode(&mut b, hv).ok()?;
    let mut resp = M::decode(&mut b, version).ok()?;
    edit(&mut resp);
    Some(encode_response(&resp, hv, version, header.correlation_id).slice(4..))
}

/// A response (no size prefix) with the right correlation id whose first array claims 2^31
/// elements in a few bytes.
fn huge_array_response(api_key: i16, version: i16, correlation_id: i32) -> Bytes {
    let header_version = match api_key {
        PRODUCE => ProduceResponse::header_version(version),
        METADATA => MetadataResponse::header_version(version),
        _ => 0,
    };
    let flexible = header_version >= 1;
    let mut b = BytesMut::new();
    b.put_i32(correlation_id);
    if flexible {
        b.put_u8(0); // no tagged fields in the header
    }
    if api_key == METADATA && version >= 3 {
        b.put_i32(0); // throttle_time_ms
    }
    if flexible {
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // uvarint 2^31 - 1: 2^31 - 2 elements
    } else {
        b.put_i32(i32::MAX);
    }
    b.extend_from_slice(&[0u8; 16]);
    b.freeze()
}

/// The Metadata response (no size prefix) with every broker whose port is in `map` moved to
/// `127.0.0.1:<proxy port>`; `None` if nothing changed or it does not decode.
fn rewrite_metadata(frame: &Bytes, version: i16, map: &Mutex<HashMap<u16, u16>>) -> Option<Bytes> {
    let hv = MetadataResponse::header_version(version);
    let mut b = frame.clone();
    let header = ResponseHeader::decode(&mut b, hv).ok()?;
    let mut resp = MetadataResponse::decode(&mut b, version).ok()?;
    let map = map.lock().unwrap();
    let mut changed = false;
    for broker in &mut resp.brokers {
        if let Some(&proxy_port) = u16::try_from(broker.port).ok().and_then(|p| map.get(&p)) {
            broker.host = StrBytes::from_static_str("127.0.0.1");
            broker.port = i32::from(proxy_port);
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    Some(encode_response(&resp, hv, version, header.correlation_id).slice(4..))
}
