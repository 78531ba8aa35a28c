//! A conclave member over QUIC that prints membership changes.
//!
//! ```text
//! # certificates for members 1 to 3, from a fresh development CA
//! cargo run -p conclave-quic --example node -- --gen-certs certs --ids 1,2,3
//! # three members on loopback
//! cargo run -p conclave-quic --example node -- --id 1 --listen 127.0.0.1:7001 --certs certs --state-dir state-1
//! # add --voters 1,2,3 to each to elect a leader among them
//! cargo run -p conclave-quic --example node -- --id 2 --listen 127.0.0.1:7002 --seed 127.0.0.1:7001 --certs certs --state-dir state-2
//! cargo run -p conclave-quic --example node -- --id 3 --listen 127.0.0.1:7003 --seed 127.0.0.1:7001 --certs certs --state-dir state-3
//! ```
//!
//! Each line it prints is `<elapsed ms> <what>`: `ready`, `joined n<id>`, `suspected`,
//! `failed`, `recovered`, `left`, `updated`, `conflict`, leader changes. It leaves
//! gracefully on SIGINT or SIGTERM.
//!
//! With seeds it prints `ready` only once a seed answered; if none does within
//! `--join-timeout`, or the cluster says its id already runs elsewhere, it prints
//! `refused: <why>` (one line: a certificate the seed refused, a member id in use) and
//! exits with status 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use conclave_core::{Config, Event, NodeId};
use conclave_quic::{Cluster, DevCa, TlsConfig};

#[derive(Parser, Debug)]
#[command(about = "A conclave member over QUIC that prints membership changes")]
struct Args {
    /// This member's id (its certificate must name it).
    #[arg(long, required_unless_present = "gen_certs")]
    id: Option<u64>,
    /// The UDP address to bind.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// The address to advertise (default: the listen address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A member to join through (repeatable).
    #[arg(long = "seed")]
    seeds: Vec<SocketAddr>,
    /// The directory holding ca.pem, node-<id>.pem and node-<id>.key.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// Where the member keeps its durable state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The protocol preset: lan, local or wan.
    #[arg(long, default_value = "lan")]
    config: String,
    /// Write a development CA and member certificates into this directory, then exit.
    #[arg(long)]
    gen_certs: Option<PathBuf>,
    /// The member ids to make certificates for, with --gen-certs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    ids: Vec<u64>,
    /// The voters that elect a leader (the same on every member), e.g. 1,2,3; none by default.
    #[arg(long, value_delimiter = ',')]
    voters: Vec<u64>,
    /// How long to wait for a seed to answer before giving up, in seconds.
    #[arg(long, default_value_t = 10)]
    join_timeout: u64,
}

fn name(id: NodeId) -> String {
    format!("n{}", id.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(dir) = &args.gen_certs {
        let ids: Vec<NodeId> = args.ids.iter().copied().map(NodeId).collect();
        DevCa::new("conclave example cluster")?.write_files(dir, &ids)?;
        println!("wrote certificates for {ids:?} into {}", dir.display());
        return Ok(());
    }
    let id = NodeId(args.id.ok_or("--id is required")?);
    let mut config = match args.config.as_str() {
        "lan" => Config::lan(),
        "local" => Config::local(),
        "wan" => Config::wan(),
        other => return Err(format!("unknown --config {other:?}: lan, local or wan").into()),
    };
    config.election.voters = args.voters.iter().copied().map(NodeId).collect();
    let tls = TlsConfig::from_pem_files(
        args.certs.join("ca.pem"),
        args.certs.join(format!("node-{}.pem", id.0)),
        args.certs.join(format!("node-{}.key", id.0)),
    )?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| PathBuf::from(format!("state-{}", id.0)));
    let mut builder = Cluster::builder(id).bind(args.listen).seeds(args.seeds.clone()).config(config).tls(tls);
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    let started = tokio::time::Instant::now();
    let ms = move || started.elapsed().as_millis();
    let node =
        match builder.state_dir(state_dir).handler("ping", |request| async move { Ok(request.body) }).start().await {
            Ok(node) => node,
            Err(e) => {
                // A state directory another process holds, a corrupt state file, a socket in use.
                println!("{} refused: {e}", ms());
                std::process::exit(1);
            }
        };
    // Subscribed first: the joins seen while waiting are printed after `ready`.
    let mut events = node.events();
    if let Err(e) = node.joined(Duration::from_secs(args.join_timeout)).await {
        println!("{} refused: {e}", ms());
        // No Leave: a member whose id runs elsewhere must not speak for it.
        node.abort();
        std::process::exit(1);
    }
    println!("{} ready {} at {}", ms(), name(id), node.addr());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let line = match event {
                        Event::MemberJoined(m) => format!("joined {} at {}", name(m.id), m.addr),
                        Event::MemberUpdated(m) => format!("updated {}", name(m.id)),
                        Event::MemberSuspected(m) => format!("suspected {}", name(m.id)),
                        Event::MemberFailed(m) => format!("failed {}", name(m.id)),
                        Event::MemberRecovered(m) => format!("recovered {}", name(m.id)),
                        Event::MemberLeft(m) => format!("left {}", name(m.id)),
                        Event::AddressConflict { existing, other } => format!(
                            "conflict: {} runs at {}, another process claims it at {other}",
                            name(existing.id),
                            existing.addr
                        ),
                        Event::Broadcast { origin, payload } => format!("broadcast from {} ({} B)", name(origin), payload.len()),
                        Event::LeaderElected { term, leader } => format!("leader {} in term {term}", name(leader)),
                        Event::LeaderLost { term } => format!("lost the leader of term {term}"),
                        Event::PartitionDetected { majority, minority, local_side } => {
                            format!("partition: {majority:?} keep running, {minority:?} stop; this side: {local_side:?}")
                        }
                        Event::PartitionHealed => "partition healed".to_string(),
                        Event::QuorumLost => "quorum lost: read-only".to_string(),
                        Event::QuorumRegained => "quorum regained".to_string(),
                        other => format!("{other:?}"),
                    };
                    println!("{} {line}", ms());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => println!("{} missed {missed} events", ms()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
    println!("{} leaving", ms());
    node.shutdown().await;
    Ok(())
}
