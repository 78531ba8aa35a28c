//! The driver: the one task that owns a member's [`Node`], and the connection tasks that
//! feed it. Written once, over any `quinn::AsyncUdpSocket` and any [`Clock`]: the
//! production runtime and the turmoil engine run this code.
//!
//! - [`drive`] runs the core's loop: it drains `poll_output` in order (a `Persist` is
//!   stored and synced before any later output is acted on), feeds datagrams and
//!   commands, and calls `handle_timeout` when `poll_timeout` comes due.
//! - Membership datagrams travel as QUIC datagrams over a bounded pool of connections,
//!   one per peer address, dialled on first use and replaced by a newer one from the same
//!   address (a restarted peer). A datagram for a member (`Transmit::to_id`) at an
//!   address none of its connections came from goes over the newest connection its
//!   certificate opened, incoming or outgoing: a member behind a NAT is reached where it
//!   connects from, not at the address it advertises, and that address is dialled only
//!   when no connection to the member is up (see `Pool::route`).
//! - Every connection's peer id comes from its certificate ([`crate::tls`]); the core reads
//!   each datagram once, with that id (`Node::handle_datagram_from`), and refuses one whose
//!   envelope names another sender; a request that claims one is refused here. Both are
//!   counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use conclave_core::partition::Decision;
use conclave_core::{Command, Config, Event, Member, Mode, Node, NodeId, Output, Stats, Transmit, WireError};
use hdrhistogram::Histogram;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::client::ServiceFigures;
use crate::clock::Clock;
use crate::cluster::{lock, Limits};
use crate::metrics::AtomicCounters;
use crate::rpc;
use crate::server::{self, Server};
use crate::state::Storage;
use crate::tls::{peer_id, TlsConfig, SERVER_NAME};

/// What the driver is told.
pub(crate) enum Input {
    /// A datagram from a connection whose certificate names member `peer` (the core
    /// checks the envelope's sender against it).
    Datagram { from: SocketAddr, peer: NodeId, bytes: Bytes },
    /// An application command, answered once the core took it.
    Command(Command, oneshot::Sender<Result<(), conclave_core::Error>>),
    /// Leave, drain, stop.
    Shutdown(oneshot::Sender<()>),
}

/// What the driver, the connection tasks and the handle share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) limits: Limits,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) pool: Mutex<Pool>,
    pub(crate) counters: AtomicCounters,
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// The members, as of [`Shared::members_version`].
    pub(crate) members: RwLock<Vec<Member>>,
    /// The core's view version (`Node::view_version`) the members were copied at.
    pub(crate) members_version: AtomicU64,
    /// The election term, the leader this member knows, and its side's mode.
    pub(crate) leadership: Mutex<(u64, Option<NodeId>, Mode)>,
    pub(crate) stats: Mutex<Stats>,
    /// The partition this member decided, if any (service clients skip the minority).
    pub(crate) partition: Mutex<Option<Decision>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) handlers: RwLock<BTreeMap<String, rpc::Handler>>,
    pub(crate) inputs: mpsc::Sender<Input>,
    pub(crate) stopped: Mutex<Option<String>>,
    /// Whether the core has joined (a seed answered), as of the last publish.
    pub(crate) joined: AtomicBool,
    /// The last reason a dial or a connection of this member's failed, in a line.
    pub(crate) last_refusal: Mutex<Option<String>>,
    /// Where the member that holds this member's id runs, once the core said the id is
    /// taken (`Event::IdInUse`).
    pub(crate) id_taken: Mutex<Option<SocketAddr>>,
    /// The clock the driver reads (service clients and the server read it too).
    pub(crate) clock: Arc<dyn Clock>,
    /// The concurrency limit and idempotency window requests are served under.
    pub(crate) server: Server,
    /// What the service clients made from this member did.
    pub(crate) resilience: Mutex<ServiceFigures>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("id", &self.id).field("addr", &self.addr).finish_non_exhaustive()
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// ----- QUIC settings ------------------------------------------------------------------

/// The transport settings: datagrams large enough for the core's `max_datagram`, the
/// idle timeout with a keep-alive at a third of it.
pub(crate) fn transport_config(config: &Config, limits: Limits) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // A QUIC datagram costs its packet's header, frame header and AEAD tag (under 72 B):
    // start the path at a size that carries the core's largest datagram. The path must
    // carry UDP payloads of `max_datagram + 72` B (1472 with the default 1400: Ethernet).
    let mtu = u16::try_from(config.max_datagram + 72).unwrap_or(u16::MAX).max(1200);
    transport.initial_mtu(mtu);
    transport.datagram_receive_buffer_size(Some(1 << 20));
    // An idle timeout above 2^62 µs is refused; any configured one is far below.
    if let Ok(idle) = quinn::IdleTimeout::try_from(limits.idle_timeout) {
        transport.max_idle_timeout(Some(idle));
    }
    transport.keep_alive_interval(Some(limits.idle_timeout / 3));
    // What one peer may make this member hold: a few requests' worth of unread bytes per
    // connection, `max_streams` requests at once (one frame each way per stream), no
    // unidirectional streams (conclave opens none).
    let window = u32::try_from(limits.max_frame.saturating_mul(2).saturating_add(64 * 1024)).unwrap_or(u32::MAX);
    transport.receive_window(quinn::VarInt::from_u32(window));
    transport.stream_receive_window(quinn::VarInt::from_u32(
        u32::try_from(limits.max_frame.saturating_add(4)).unwrap_or(u32::MAX),
    ));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_streams));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    transport
}

/// The endpoint settings. The stateless-reset key is derived from the member's private
/// key, so a restarted member resets its peers' connections to its previous run at once
/// instead of leaving them to time out. `deterministic`: a seeded RNG and counted
/// connection ids (simulation).
pub(crate) fn endpoint_config(tls: &TlsConfig, deterministic: Option<u64>) -> quinn::EndpointConfig {
    let digest = ring::digest::digest(&ring::digest::SHA256, &tls.reset_key_material());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref());
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    if let Some(seed) = deterministic {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        config.rng_seed(Some(bytes));
        let counter = Arc::new(AtomicU64::new(0));
        config.cid_generator(move || Box::new(CountedCids { salt: seed, counter: counter.clone() }));
    }
    config
}

/// Connection ids from a counter (per endpoint), for runs that must repeat exactly.
struct CountedCids {
    salt: u64,
    counter: Arc<AtomicU64>,
}

impl quinn::ConnectionIdGenerator for CountedCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        quinn::ConnectionId::new(&(self.salt.rotate_left(17) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

// ----- the driver -----------------------------------------------------------------------

/// Runs member `node` until shutdown or a failed state write.
pub(crate) async fn drive(
    mut node: Node,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    mut storage: Box<dyn Storage>,
    mut inputs: mpsc::Receiver<Input>,
) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    let mut published = clock.now();
    loop {
        match act(&mut node, &shared, storage.as_mut()) {
            Ok(changed) => {
                let now = clock.now();
                if changed || now.saturating_duration_since(published) >= PUBLISH_EVERY {
                    publish(&node, &shared);
                    published = now;
                }
            }
            Err(e) => {
                *lock(&shared.stopped) = Some(format!("stopped: the durable state could not be stored: {e}"));
                return;
            }
        }
        if let Some(done) = shutdown.take() {
            let _ = done.send(());
            *lock(&shared.stopped) = Some("shut down".into());
            return;
        }
        if lock(&shared.id_taken).is_some() {
            // The core stopped: its id runs elsewhere. Close without a Leave (it would
            // speak for the member that runs).
            shared.endpoint.close(3u32.into(), b"member id in use");
            return;
        }
        let now = clock.now();
        let wake = node.poll_timeout();
        if wake.is_some_and(|t| t <= now) {
            node.handle_timeout(now);
            continue;
        }
        let sleep = wake.map_or(Duration::from_secs(3600), |t| t.saturating_duration_since(now));
        // `biased`: tokio would otherwise pick a branch from an unseeded RNG. Timeouts
        // are not starved: a due one is handled above before any input.
        tokio::select! {
            biased;
            input = inputs.recv() => match input {
                Some(Input::Datagram { from, peer, bytes }) => {
                    // The core counts what it refuses; the runtime's counters say why.
                    let taken = node.handle_datagram_from(clock.now(), from, peer, &bytes);
                    bump(Intake::of(&taken).counter(&shared.counters));
                }
                Some(Input::Command(command, reply)) => {
                    let _ = reply.send(node.handle_command(clock.now(), command));
                }
                Some(Input::Shutdown(done)) => {
                    let _ = node.handle_command(clock.now(), Command::Leave);
                    shutdown = Some(done);
                }
                None => return,
            },
            () = tokio::time::sleep(sleep) => node.handle_timeout(clock.now()),
        }
    }
}

/// Drains the core's outputs in order; a `Persist` is stored before anything after it.
/// Returns whether an event was emitted (the view changed).
pub(crate) fn act(node: &mut Node, shared: &Arc<Shared>, storage: &mut dyn Storage) -> Result<bool, crate::StateError> {
    let mut changed = false;
    while let Some(output) = node.poll_output() {
        match output {
            Output::Persist(durable) => storage.store(&durable)?,
            Output::Transmit(t) => transmit(shared, t),
            Output::Event(event) => {
                changed = true;
                if let Event::IdInUse { holder } = &event {
                    *lock(&shared.id_taken) = Some(holder.addr);
                    *lock(&shared.stopped) = Some(format!(
                        "member id {:?} is already running at {}: this process stopped without joining",
                        shared.id, holder.addr
                    ));
                }
                // No subscriber is not an error.
                let _ = shared.events.send(event);
            }
        }
    }
    Ok(changed)
}

/// Copies the node's view (when it changed) and counters to where the handle reads them.
pub(crate) fn publish(node: &Node, shared: &Shared) {
    let version = node.view_version();
    // The members were copied at start, at the version the node had then.
    if version != shared.members_version.load(Ordering::Acquire) {
        let mut members = shared.members.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *members = node.members().cloned().collect();
        shared.members_version.store(version, Ordering::Release);
    }
    *lock(&shared.leadership) = (node.term(), node.leader(), node.mode());
    *lock(&shared.stats) = node.stats();
    *lock(&shared.partition) = node.partition().cloned();
    shared.joined.store(node.is_joined(), Ordering::Release);
}

/// The view is published on every event, and looked at at least this often (incarnations
/// and addresses can change without one; the members are copied only when the core's
/// view version moved).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

// ----- the connection pool ------------------------------------------------------------

/// Connections by peer address, indexed by their peers' ids.
#[derive(Default)]
pub(crate) struct Pool {
    slots: BTreeMap<SocketAddr, Slot>,
    /// Where the newest pooled connection of each member is (the address of a `Ready`
    /// slot whose certificate names it), incoming or outgoing.
    by_id: BTreeMap<NodeId, SocketAddr>,
    /// The last few addresses each member's connections were pooled at: its own
    /// addresses, where it is reached directly (see [`Pool::route`]).
    seen_at: BTreeMap<NodeId, Vec<SocketAddr>>,
    tick: u64,
}

/// The addresses remembered per member (a member behind a NAT that rebinds comes from a
/// new one now and then).
const SEEN_AT_KEPT: usize = 4;

enum Slot {
    /// A handshake is under way; datagrams wait for it (a bounded number).
    Dialing(Vec<Bytes>),
    /// An authenticated connection, its peer's id (from its certificate) and when it was
    /// last used (for eviction).
    Ready { conn: quinn::Connection, id: NodeId, used: u64 },
}

impl Pool {
    /// Puts `conn` in the pool for `addr` (replacing any older one: the newest connection
    /// from an address is the live one), returns the datagrams that waited for it and the
    /// connection evicted to stay within `max`, if any.
    fn insert(
        &mut self,
        addr: SocketAddr,
        conn: quinn::Connection,
        id: NodeId,
        max: usize,
    ) -> (Vec<Bytes>, Option<quinn::Connection>) {
        self.tick += 1;
        let pending = match self.slots.insert(addr, Slot::Ready { conn, id, used: self.tick }) {
            Some(Slot::Dialing(pending)) => pending,
            Some(Slot::Ready { id: old, .. }) => {
                if old != id {
                    self.reindex(old);
                }
                Vec::new()
            }
            None => Vec::new(),
        };
        self.by_id.insert(id, addr);
        let seen = self.seen_at.entry(id).or_default();
        if !seen.contains(&addr) {
            if seen.len() == SEEN_AT_KEPT {
                seen.remove(0);
            }
            seen.push(addr);
        }
        let mut evicted = None;
        if self.slots.len() > max {
            let oldest = self
                .slots
                .iter()
                .filter_map(|(a, s)| match s {
                    Slot::Ready { used, .. } if *a != addr => Some((*used, *a)),
                    _ => None,
                })
                .min();
            if let Some((_, a)) = oldest {
                evicted = self.forget(a);
            }
        }
        (pending, evicted)
    }

    /// Forgets `conn` if it is still the one for its address.
    fn remove(&mut self, addr: SocketAddr, conn: &quinn::Connection) {
        if matches!(self.slots.get(&addr), Some(Slot::Ready { conn: c, .. }) if c.stable_id() == conn.stable_id()) {
            self.forget(addr);
        }
    }

    /// Removes the slot at `addr`; returns its connection if it had one.
    fn forget(&mut self, addr: SocketAddr) -> Option<quinn::Connection> {
        match self.slots.remove(&addr)? {
            Slot::Ready { conn, id, .. } => {
                self.reindex(id);
                Some(conn)
            }
            Slot::Dialing(_) => None,
        }
    }

    /// Points `id`'s entry at its most recently used connection left, if any.
    fn reindex(&mut self, id: NodeId) {
        let newest = self
            .slots
            .iter()
            .filter_map(|(a, s)| match s {
                Slot::Ready { id: i, used, .. } if *i == id => Some((*used, *a)),
                _ => None,
            })
            .max();
        match newest {
            Some((_, addr)) => self.by_id.insert(id, addr),
            None => self.by_id.remove(&id),
        };
    }

    /// The slot a datagram for `to` (member `to_id`, when known) goes to.
    ///
    /// A member behind a NAT connects from another address than the one it advertises,
    /// and cannot be dialled there: a datagram for it at an address none of its
    /// connections came from goes over its newest connection. An address one of its
    /// connections came from is its own, and is used (dialled if need be) even when it
    /// has a connection elsewhere: a member that restarted at another address must not
    /// answer for the one the core still holds at the old address, or the core could
    /// never find the old one gone and take the new one.
    fn route(&self, to: SocketAddr, to_id: Option<NodeId>) -> SocketAddr {
        let Some(want) = to_id else { return to };
        let own = |addr: SocketAddr| self.seen_at.get(&want).is_some_and(|seen| seen.contains(&addr));
        match self.slots.get(&to) {
            Some(Slot::Ready { id, .. }) if *id == want => to,
            _ if own(to) => to,
            _ => self.by_id.get(&want).copied().unwrap_or(to),
        }
    }

    /// The pooled connection to `addr` and its peer's id.
    pub(crate) fn ready(&mut self, addr: SocketAddr) -> Option<(quinn::Connection, NodeId)> {
        self.tick += 1;
        match self.slots.get_mut(&addr) {
            Some(Slot::Ready { conn, id, used }) => {
                *used = self.tick;
                Some((conn.clone(), *id))
            }
            _ => None,
        }
    }
}

/// Sends one membership datagram: over the connection [`Pool::route`] picks, dialling
/// `t.to` if none is up.
fn transmit(shared: &Arc<Shared>, t: Transmit) {
    let Transmit { to, to_id, payload } = t;
    let payload = Bytes::from(payload);
    let mut pool = lock(&shared.pool);
    pool.tick += 1;
    let tick = pool.tick;
    let via = pool.route(to, to_id);
    if via != to {
        if let Some(Slot::Ready { conn, used, .. }) = pool.slots.get_mut(&via) {
            *used = tick;
            match conn.send_datagram(payload.clone()) {
                Ok(()) => return bump(&shared.counters.datagrams_sent),
                // That connection is gone: the member's own address is what is left.
                Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                    pool.forget(via);
                }
                Err(_) => return bump(&shared.counters.datagrams_unsent),
            }
        }
    }
    match pool.slots.get_mut(&to) {
        Some(Slot::Ready { conn, used, .. }) => {
            *used = tick;
            match conn.send_datagram(payload.clone()) {
                Ok(()) => bump(&shared.counters.datagrams_sent),
                Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                    // Dial again; this datagram waits for the new connection.
                    pool.forget(to);
                    pool.slots.insert(to, Slot::Dialing(vec![payload]));
                    drop(pool);
                    tokio::spawn(dial(shared.clone(), to));
                }
                Err(_) => bump(&shared.counters.datagrams_unsent),
            }
        }
        Some(Slot::Dialing(pending)) => {
            if pending.len() < shared.limits.max_pending {
                pending.push(payload);
            } else {
                bump(&shared.counters.datagrams_unsent);
            }
        }
        None => {
            pool.slots.insert(to, Slot::Dialing(vec![payload]));
            drop(pool);
            tokio::spawn(dial(shared.clone(), to));
        }
    }
}

/// Dials `addr` for the pool.
async fn dial(shared: Arc<Shared>, addr: SocketAddr) {
    match connect(&shared, addr).await {
        Ok((conn, id)) => adopt(&shared, conn, id),
        Err(why) => {
            refused(&shared, format!("connecting to {addr}: {why}"));
            let mut pool = lock(&shared.pool);
            if let Some(Slot::Dialing(pending)) = pool.slots.remove(&addr) {
                shared.counters.datagrams_unsent.fetch_add(pending.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Notes why a connection of this member's failed (for `Cluster::last_refusal`).
fn refused(shared: &Shared, why: String) {
    bump(&shared.counters.connections_refused);
    *lock(&shared.last_refusal) = Some(why);
}

/// Opens an authenticated connection to `addr` and reads its peer's id.
pub(crate) async fn connect(shared: &Shared, addr: SocketAddr) -> Result<(quinn::Connection, NodeId), String> {
    let connecting =
        shared.endpoint.connect_with(shared.client_config.clone(), addr, SERVER_NAME).map_err(|e| e.to_string())?;
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            bump(&shared.counters.handshakes_failed);
            return Err(e.to_string());
        }
    };
    match peer_id(&conn) {
        Some(id) => Ok((conn, id)),
        None => {
            bump(&shared.counters.connections_without_id);
            conn.close(1u32.into(), b"certificate names no member");
            Err("the peer's certificate names no member".into())
        }
    }
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            // A failed handshake (no certificate, another CA) ends here.
            let Ok(conn) = incoming.await else {
                bump(&shared.counters.handshakes_failed);
                return;
            };
            match peer_id(&conn) {
                Some(id) => adopt(&shared, conn, id),
                None => {
                    bump(&shared.counters.connections_without_id);
                    conn.close(1u32.into(), b"certificate names no member");
                }
            }
        });
    }
}

/// Pools an authenticated connection and starts its reader tasks.
pub(crate) fn adopt(shared: &Arc<Shared>, conn: quinn::Connection, id: NodeId) {
    bump(&shared.counters.connections_opened);
    let addr = conn.remote_address();
    let (pending, evicted) = lock(&shared.pool).insert(addr, conn.clone(), id, shared.limits.max_connections);
    if let Some(old) = evicted {
        bump(&shared.counters.connections_evicted);
        old.close(0u32.into(), b"evicted");
    }
    for payload in pending {
        match conn.send_datagram(payload) {
            Ok(()) => bump(&shared.counters.datagrams_sent),
            Err(_) => bump(&shared.counters.datagrams_unsent),
        }
    }
    tokio::spawn(read_datagrams(shared.clone(), conn.clone(), id));
    tokio::spawn(accept_streams(shared.clone(), conn, id));
}

/// Passes `conn`'s datagrams to the driver, with the member its certificate names (the
/// core refuses one whose envelope names another).
async fn read_datagrams(shared: Arc<Shared>, conn: quinn::Connection, id: NodeId) {
    let from = conn.remote_address();
    let mut bucket = TokenBucket::new(shared.limits.datagram_rate, tokio::time::Instant::now());
    loop {
        let bytes = match conn.read_datagram().await {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Some(why) = peer_refusal(&e) {
                    refused(&shared, format!("{from} ({id:?}) closed the connection: {why}"));
                }
                break;
            }
        };
        if !bucket.take(tokio::time::Instant::now()) {
            bump(&shared.counters.datagrams_flooded);
            continue;
        }
        match shared.inputs.try_send(Input::Datagram { from, peer: id, bytes }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => bump(&shared.counters.datagrams_overflow),
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    lock(&shared.pool).remove(from, &conn);
}

/// Why the peer closed a connection, when it closed it with an error (a refused
/// certificate, a protocol violation): not when it closed it normally, timed out or the
/// connection was closed here.
fn peer_refusal(e: &quinn::ConnectionError) -> Option<String> {
    match e {
        quinn::ConnectionError::TransportError(t) => Some(t.to_string()),
        quinn::ConnectionError::ConnectionClosed(c) if c.error_code != quinn::TransportErrorCode::NO_ERROR => {
            Some(c.to_string())
        }
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code != quinn::VarInt::from_u32(0) => {
            Some(format!("{c}"))
        }
        _ => None,
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` kept.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl TokenBucket {
    fn new(rate: u32, now: tokio::time::Instant) -> Self {
        Self { rate: f64::from(rate), tokens: f64::from(rate), at: now }
    }

    /// Takes a token if one is left.
    fn take(&mut self, now: tokio::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// What became of a datagram that arrived on a connection from member `peer`, as the
/// core's answer to `Node::handle_datagram_from` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intake {
    /// Its envelope read and named `peer`: the core took it, or refused its body
    /// (counted in the core's `Stats::dropped`).
    Accept,
    /// Its envelope names another member than the connection's certificate.
    Spoofed,
    /// No readable envelope of this cluster: truncated, larger than `max_datagram`,
    /// damaged, foreign.
    Malformed,
}

impl Intake {
    /// Sorts the core's answer to one datagram.
    pub(crate) fn of(taken: &Result<(), WireError>) -> Self {
        match taken {
            Err(WireError::WrongSender { .. }) => Self::Spoofed,
            Ok(()) | Err(WireError::Malformed | WireError::Invalid { .. }) => Self::Accept,
            // The envelope's own errors, and any the core adds later.
            Err(_) => Self::Malformed,
        }
    }

    /// The runtime's counter for it.
    fn counter(self, counters: &AtomicCounters) -> &AtomicU64 {
        match self {
            Self::Accept => &counters.datagrams_received,
            Self::Spoofed => &counters.datagrams_spoofed,
            Self::Malformed => &counters.datagrams_malformed,
        }
    }
}

/// Serves `conn`'s requests, one stream each.
async fn accept_streams(shared: Arc<Shared>, conn: quinn::Connection, id: NodeId) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(server::serve(shared.clone(), id, send, recv));
    }
}
