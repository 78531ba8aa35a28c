//! [`Cluster`]: the handle a service holds, and [`ClusterBuilder`], which starts it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use conclave_core::resilience::Policy;
use conclave_core::{Command, Config, Event, InitialClusterState, Member, Mode, Node, NodeConfig, NodeId, Tags};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::client::{self, ServiceClient, ServiceFigures};
use crate::clock::{Clock, TokioClock};
use crate::driver::{self, Input, Shared};
use crate::error::Error;
use crate::metrics::{latency_histogram, AtomicCounters, Metrics};
use crate::rpc::{self, HandlerResult, Request, DEFAULT_MAX_FRAME};
use crate::server::Server;
use crate::state::{StateDir, Storage};
use crate::tls::TlsConfig;

/// The most bytes of answers a member's idempotency window keeps, by default.
pub const DEFAULT_KEPT_ANSWERS: usize = 64 << 20;

/// Settings of a member; [`ClusterBuilder::start`] starts it. Made by [`Cluster::builder`].
pub struct ClusterBuilder {
    id: NodeId,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    config: Config,
    initial_cluster_state: Option<InitialClusterState>,
    tags: Tags,
    tls: Option<TlsConfig>,
    storage: Option<Box<dyn Storage>>,
    state_dir: Option<PathBuf>,
    rng_seed: Option<u64>,
    deterministic: bool,
    socket: Option<Arc<dyn quinn::AsyncUdpSocket>>,
    clock: Option<Arc<dyn Clock>>,
    handlers: BTreeMap<String, rpc::Handler>,
    limits: Limits,
    /// The worker side of a resilience policy: the concurrency limit and the idempotency
    /// window requests are served under.
    serving: Policy,
    /// The most bytes of answers the idempotency window keeps.
    kept_answers: usize,
}

/// Bounds on what the runtime holds and accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_pending: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) events: usize,
    pub(crate) inputs: usize,
    /// How long a request's frame may take to arrive whole.
    pub(crate) request_timeout: Duration,
    /// Requests (bidirectional streams) a peer may have open on one connection at once.
    pub(crate) max_streams: u32,
    /// Membership datagrams a connection may deliver per second, on average (a burst of
    /// as many is allowed).
    pub(crate) datagram_rate: u32,
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("id", &self.id)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl ClusterBuilder {
    /// Member `id` (the id its certificate names), with `Config::lan()`, binding
    /// `127.0.0.1:0` until told otherwise.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            seeds: Vec::new(),
            config: Config::lan(),
            initial_cluster_state: None,
            tags: Tags::new(),
            tls: None,
            storage: None,
            state_dir: None,
            rng_seed: None,
            deterministic: false,
            socket: None,
            clock: None,
            handlers: BTreeMap::new(),
            limits: Limits {
                max_frame: DEFAULT_MAX_FRAME,
                max_connections: 256,
                max_pending: 64,
                idle_timeout: Duration::from_secs(10),
                events: 1024,
                inputs: 4096,
                request_timeout: Duration::from_secs(10),
                max_streams: 64,
                datagram_rate: 1000,
            },
            serving: Policy::default(),
            kept_answers: DEFAULT_KEPT_ANSWERS,
        }
    }

    /// The UDP address to bind.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address other members reach this one at (default: the bound address, which
    /// must then not be unspecified).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Members to join through (retried with backoff until one answers).
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// The protocol settings (the same on every member).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// What the operator says of the cluster this voter starts into, should its state be
    /// empty (etcd's `--initial-cluster-state`): `New` votes at once, `Existing` waits
    /// for the terms of a majority of the voters that vote, or for
    /// [`Cluster::resume_voting`]. Ignored when the state holds what the member persisted;
    /// `start` fails on a member that does not vote. See [`InitialClusterState`].
    pub fn initial_cluster_state(mut self, state: InitialClusterState) -> Self {
        self.initial_cluster_state = Some(state);
        self
    }

    /// The metadata this member publishes.
    pub fn tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The TLS material: the cluster CA, this member's certificate and key.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The directory where the member's durable state is kept (created if missing).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Another place for the durable state (instead of a state directory).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Box::new(storage));
        self
    }

    /// Seeds the core's RNG (default: a fresh random seed).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Makes the QUIC endpoint deterministic: its RNG is seeded from the RNG seed and its
    /// connection ids come from a counter. For simulation only: connection ids become
    /// guessable.
    pub fn deterministic(mut self) -> Self {
        self.deterministic = true;
        self
    }

    /// Runs over this socket instead of binding a UDP socket (a simulated network).
    pub fn socket(mut self, socket: Arc<dyn quinn::AsyncUdpSocket>) -> Self {
        self.socket = Some(socket);
        self
    }

    /// Reads time from this clock (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The largest RPC frame, request or response (default 1 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.limits.max_frame = bytes;
        self
    }

    /// The most connections kept open (default 256); beyond it the least recently used
    /// is closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// How long a connection may go without hearing from its peer (default 10 s); a
    /// keep-alive is sent at a third of it.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// How long a request may take to arrive whole (default 10 s): a stream whose request
    /// frame is not complete by then is reset and counted (`rpc_timed_out`), so a peer that
    /// opens streams and never writes holds them no longer.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.request_timeout = timeout;
        self
    }

    /// How many requests a peer may have in flight on one connection (default 64): QUIC
    /// grants it no more streams until one ends.
    pub fn max_streams(mut self, n: u32) -> Self {
        self.limits.max_streams = n;
        self
    }

    /// How many membership datagrams one connection may deliver per second, with a burst
    /// of as many (default 1000; a member sends a few per probe period). Beyond it they are
    /// dropped and counted (`datagrams_flooded`), so one peer's flood cannot crowd out the
    /// others' probes.
    pub fn datagram_rate(mut self, per_second: u32) -> Self {
        self.limits.datagram_rate = per_second;
        self
    }

    /// How many events a subscriber may fall behind before it is told it lagged (default 1024).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.limits.events = n;
        self
    }

    /// Serves requests under the worker side of `policy` (default: [`Policy::default`]'s,
    /// 64 requests at once and a window of 10,000 requests for 60 s):
    ///
    /// - past its `concurrency_limit` of requests running at once, a request is shed
    ///   unserved (counted in `rpc_shed`); its caller hears "overloaded", and a
    ///   [`ServiceClient`] retries elsewhere. `None`: no limit.
    /// - within its `idempotency` window, a request a [`ServiceClient`]
    ///   sends again (a retry, a hedge, under the same request number) runs once: a copy of
    ///   a request in progress waits for its answer, a later copy gets the answer kept
    ///   (`rpc_duplicates`). `None`: no window.
    ///
    /// Every request carries the time its caller gives it; a request whose time runs out
    /// is dropped, its handler stopped (`rpc_expired`). The client side of `policy` is not
    /// read here: it is [`Cluster::service`]'s.
    pub fn serving(mut self, policy: &Policy) -> Self {
        self.serving.concurrency_limit = policy.concurrency_limit;
        self.serving.idempotency.clone_from(&policy.idempotency);
        self
    }

    /// The most bytes of answers the idempotency window keeps (default 64 MiB). An answer
    /// past it is not kept: a later copy of its request hears that it ran and its answer is
    /// gone, and is not run again.
    pub fn kept_answers(mut self, bytes: usize) -> Self {
        self.kept_answers = bytes;
        self
    }

    /// Serves `method` with `f`.
    pub fn handler<F, Fut>(mut self, method: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers.insert(method.to_string(), rpc::handler(f));
        self
    }

    /// Binds, starts the driver and joins the seeds. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Cluster, Error> {
        let tls = self.tls.ok_or_else(|| Error::Config("no TLS configuration: call .tls(..)".into()))?;
        if tls.node_id() != Some(self.id) {
            return Err(Error::IdentityMismatch { cert: tls.node_id(), configured: self.id });
        }
        self.config.validate().map_err(conclave_core::Error::from)?;
        let limits = self.limits;
        if limits.max_connections == 0
            || limits.events == 0
            || limits.max_frame < 16
            || limits.idle_timeout.is_zero()
            || limits.request_timeout.is_zero()
            || limits.max_streams == 0
            || limits.datagram_rate == 0
        {
            return Err(Error::Config(
                "max_connections, event_capacity, idle_timeout, request_timeout, max_streams and datagram_rate \
                 must be positive, max_frame at least 16 B"
                    .into(),
            ));
        }
        self.serving.validate()?;
        let storage: Box<dyn Storage> = match (self.storage, self.state_dir) {
            (Some(storage), None) => storage,
            (None, Some(dir)) => Box::new(open_exclusive(&dir).await?),
            (None, None) => return Err(Error::Config("no state directory: call .state_dir(..)".into())),
            (Some(_), Some(_)) => return Err(Error::Config("both a state directory and a storage were given".into())),
        };
        let durable = storage.load()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(TokioClock::new()));
        let rng_seed = self.rng_seed.unwrap_or_else(random_seed);

        let (mut server_config, mut client_config) = tls.quinn_configs()?;
        let transport = Arc::new(driver::transport_config(&self.config, limits));
        server_config.transport_config(transport.clone());
        client_config.transport_config(transport);
        let endpoint_config = driver::endpoint_config(&tls, self.deterministic.then_some(rng_seed));
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = match self.socket {
            Some(socket) => socket,
            None => runtime.wrap_udp_socket(std::net::UdpSocket::bind(self.bind)?)?,
        };
        let endpoint =
            quinn::Endpoint::new_with_abstract_socket(endpoint_config, Some(server_config), socket, runtime)?;
        let local = endpoint.local_addr()?;
        let advertise = self.advertise.unwrap_or(local);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(Error::Config(format!(
                "cannot advertise {advertise}: set .advertise(..) to a reachable address"
            )));
        }

        let mut node_config = NodeConfig::new(self.id, advertise, self.config.clone(), rng_seed);
        node_config.durable = durable;
        node_config.tags = self.tags;
        node_config.initial_cluster_state = self.initial_cluster_state;
        let node = Node::new(node_config, clock.now())?;
        let (inputs_tx, inputs_rx) = mpsc::channel(limits.inputs);
        let (events, _) = broadcast::channel(limits.events);
        let shared = Arc::new(Shared {
            id: self.id,
            addr: advertise,
            limits,
            endpoint,
            client_config,
            pool: Mutex::new(driver::Pool::default()),
            counters: AtomicCounters::default(),
            latency: Mutex::new(latency_histogram()),
            members: RwLock::new(node.members().cloned().collect()),
            members_version: AtomicU64::new(node.view_version()),
            leadership: Mutex::new((node.term(), node.leader(), node.mode())),
            stats: Mutex::new(node.stats()),
            events,
            handlers: RwLock::new(self.handlers),
            inputs: inputs_tx,
            stopped: Mutex::new(None),
            joined: AtomicBool::new(false),
            last_refusal: Mutex::new(None),
            id_taken: Mutex::new(None),
            partition: Mutex::new(node.partition().cloned()),
            server: Server::new(self.serving.concurrency_limit, self.serving.idempotency, self.kept_answers),
            resilience: Mutex::new(ServiceFigures::default()),
            clock: clock.clone(),
        });
        let mut node = node;
        let mut storage = storage;
        tokio::spawn(driver::accept(shared.clone()));
        if !self.seeds.is_empty() {
            // Joining queues datagrams only: nothing to refuse.
            let _ = node.handle_command(clock.now(), Command::Join(self.seeds));
        }
        // A restarted member's new incarnation is durable before `start` returns.
        driver::act(&mut node, &shared, storage.as_mut())?;
        driver::publish(&node, &shared);
        let driver = tokio::spawn(driver::drive(node, shared.clone(), clock, storage, inputs_rx));
        Ok(Cluster { shared, driver: Mutex::new(Some(driver)) })
    }
}

/// The state directory, held for as long as the member runs. A previous run in this
/// process (an aborted handle whose task is still being dropped) may take a moment to let
/// go of it: waited for up to two seconds.
async fn open_exclusive(dir: &std::path::Path) -> Result<StateDir, crate::StateError> {
    let mut waits = 100;
    loop {
        match StateDir::open_exclusive(dir) {
            Err(crate::StateError::InUse { .. }) if waits > 0 => {
                waits -= 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// A fresh random number: the core's RNG seed when none is given, a service client's
/// seed and the start of its request numbers.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // std's per-process random hash keys, without a dependency for one number.
    #[allow(clippy::disallowed_types, reason = "used for its random keys, not for iteration")]
    let state = std::collections::hash_map::RandomState::new();
    let mut hasher = state.build_hasher();
    hasher.write_u64(0x636f_6e63_6c61_7665);
    hasher.finish()
}

/// A running member: its events, view, RPC and metrics. Call [`Cluster::shutdown`] to
/// leave gracefully; dropping the handle stops the member without leaving (as
/// [`Cluster::abort`] does), and the others will find it failed.
#[derive(Debug)]
pub struct Cluster {
    shared: Arc<Shared>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Settings for member `id`.
    pub fn builder(id: NodeId) -> ClusterBuilder {
        ClusterBuilder::new(id)
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address this member advertises.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The address the QUIC endpoint is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.shared.endpoint.local_addr()?)
    }

    /// A new subscription to membership events. A subscriber that falls more than the
    /// event capacity behind gets `RecvError::Lagged(missed)` once, then the newest events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// This member's view: every member it knows, itself included, with its state.
    pub fn members(&self) -> Vec<Member> {
        read(&self.shared.members).clone()
    }

    /// A number that changes whenever [`Cluster::members`] does (a member comes or is
    /// forgotten, or a member's state, incarnation, address or tags change): poll it, and
    /// copy the members only when it moved. The members read after it are at least as new
    /// as it says. It only goes up while this member runs (the core's
    /// `Node::view_version`).
    pub fn members_version(&self) -> u64 {
        self.shared.members_version.load(Ordering::Acquire)
    }

    /// The leader this member knows (see `core::Config::election`), as of the latest
    /// event or at most 100 ms ago. Not a lease: a leader that must act alone checks its
    /// lease in the core, where the clock and the lease are read together.
    pub fn leader(&self) -> Option<NodeId> {
        lock(&self.shared.leadership).1
    }

    /// The election term this member knows.
    pub fn term(&self) -> u64 {
        lock(&self.shared.leadership).0
    }

    /// Whether this member's side of a partition runs ([`Mode::Normal`]) or went read-only.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.leadership).2
    }

    /// Serves `method` with `f` from now on (replacing any handler of that name).
    pub fn handle<F, Fut>(&self, method: &str, f: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let mut handlers = self.shared.handlers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        handlers.insert(method.to_string(), rpc::handler(f));
    }

    /// Calls `method` on member `target` with `body`, waiting at most `deadline` for the
    /// answer: one attempt, no retry (a [`ServiceClient`] retries, fails over and hedges).
    /// The target is told the deadline, and drops the work when it passes.
    pub async fn call(
        &self,
        target: NodeId,
        method: &str,
        body: impl Into<Bytes>,
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        client::call(&self.shared, target, method, body.into(), deadline).await
    }

    /// A client of the service `policy` names (its workers: the members its
    /// [`TagFilter`](conclave_core::resilience::TagFilter) matches), calling them through
    /// every resilience policy `policy` turns on; see [`ServiceClient`]. An error if the
    /// policy is impossible. Must run inside a tokio runtime (the client is a task).
    pub fn service(&self, policy: Policy) -> Result<ServiceClient, Error> {
        client::service(&self.shared, policy)
    }

    /// A snapshot of the metrics.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            rpc_latency_us: lock(&self.shared.latency).clone(),
            counters: self.shared.counters.snapshot(),
            core: *lock(&self.shared.stats),
            resilience: lock(&self.shared.resilience).total(),
        }
    }

    /// The runtime's counters alone (cheaper than [`Cluster::metrics`], which copies the
    /// latency histogram).
    pub fn counters(&self) -> crate::Counters {
        self.shared.counters.snapshot()
    }

    /// Publishes new tags.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), Error> {
        self.command(Command::SetTags(tags)).await
    }

    /// Delivers a small payload once to every member (as [`Event::Broadcast`]).
    pub async fn broadcast(&self, payload: Vec<u8>) -> Result<(), Error> {
        self.command(Command::Broadcast(payload)).await
    }

    /// The operator's word that this voter, started on an empty state and waiting before it
    /// votes again, may vote (`Command::ResumeVoting`; see [`InitialClusterState`]). Does
    /// nothing on a member that does not wait.
    pub async fn resume_voting(&self) -> Result<(), Error> {
        self.command(Command::ResumeVoting).await
    }

    /// Tells the core that `id` could not be reached (it probes it at once).
    pub async fn report_unreachable(&self, id: NodeId) -> Result<(), Error> {
        self.command(Command::ReportUnreachable(id)).await
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.shared.inputs.send(Input::Command(command, reply)).await.map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?.map_err(Error::from)
    }

    fn stopped(&self) -> Error {
        Error::Stopped(lock(&self.shared.stopped).clone().unwrap_or_else(|| "shut down".into()))
    }

    /// Why the driver stopped, if it did (a failed state write stops it, and so does
    /// finding this member's id taken).
    pub fn stopped_reason(&self) -> Option<String> {
        lock(&self.shared.stopped).clone()
    }

    /// Waits until this member is in the cluster: a seed answered (at once for a member
    /// started without seeds). An error if its id is taken ([`Error::IdInUse`]: the
    /// member stopped), if it stopped otherwise, or if no seed answered within `within`
    /// ([`Error::JoinTimeout`], saying what went wrong on the way: a refused certificate,
    /// no answer); it keeps trying after a timeout. A service that must not run outside
    /// its cluster calls this after [`ClusterBuilder::start`].
    pub async fn joined(&self, within: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(holder) = *lock(&self.shared.id_taken) {
                return Err(Error::IdInUse { id: self.shared.id, holder });
            }
            if let Some(why) = lock(&self.shared.stopped).clone() {
                return Err(Error::Stopped(why));
            }
            if self.shared.joined.load(Ordering::Acquire) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let why = self.last_refusal().unwrap_or_else(|| "no answer (is a seed running there?)".into());
                return Err(Error::JoinTimeout { within, why });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last reason a connection of this member's failed: a dial refused (the peer's
    /// certificate is not from this member's CA, say) or a connection the peer closed with
    /// an error (it refused this member's certificate). In one line, naming the address.
    pub fn last_refusal(&self) -> Option<String> {
        lock(&self.shared.last_refusal).clone()
    }

    /// Leaves gracefully (the others see `MemberLeft`), then closes every connection and
    /// the endpoint. Idempotent.
    pub async fn shutdown(&self) {
        let (done, left) = oneshot::channel();
        if self.shared.inputs.send(Input::Shutdown(done)).await.is_ok() {
            let _ = left.await;
            // The Leave datagrams are queued on their connections; give them a moment to go.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let driver = lock(&self.driver).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        self.shared.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }

    /// Stops at once without leaving: the driver is aborted and the endpoint closed, so
    /// peers hear nothing more from this member (they also see its connections close,
    /// which a crash would not show them; the multi-process test covers a real `kill -9`).
    pub fn abort(&self) {
        if let Some(driver) = lock(&self.driver).take() {
            driver.abort();
        }
        *lock(&self.shared.stopped) = Some("aborted".into());
        self.shared.endpoint.close(0u32.into(), b"abort");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(driver) = lock(&self.driver).take() {
            driver.abort();
            self.shared.endpoint.close(0u32.into(), b"dropped");
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every value behind these locks is replaced or updated whole: a panic elsewhere
    // cannot leave it half-written, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // As for `lock`.
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
