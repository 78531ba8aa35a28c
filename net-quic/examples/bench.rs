//! The runtime's benchmark, over loopback, in one run:
//!
//! 1. RPC round trips, conclave `call` against a plain quinn echo (same TLS, same frames,
//!    same payloads), at 1 and 64 concurrent requests: p50, p99, throughput, ratios.
//! 2. Three `example node` processes with `Config::lan()`: time to form a cluster, and
//!    from `kill -9` of one to `MemberFailed` at both others.
//!
//! ```text
//! cargo build --release -p conclave-quic --examples
//! cargo run --release -p conclave-quic --example bench -- [--seconds 3] [--payload 64]
//! ```

#![allow(clippy::disallowed_methods, reason = "a benchmark of real processes reads the real clock")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use conclave_core::{Config, MemberState, NodeId};
use conclave_quic::{quinn, Cluster, DevCa, MemoryStorage};
use hdrhistogram::Histogram;
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Request and response payload, in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Skip the multi-process part.
    #[arg(long)]
    no_processes: bool,
}

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

#[derive(Clone, Copy)]
struct Figures {
    p50_us: u64,
    p99_us: u64,
    per_sec: f64,
}

/// What a measurement gathers: round trips and how long they took in all.
struct Sample {
    histogram: Histogram<u64>,
    elapsed: f64,
}

impl Sample {
    fn new() -> Self {
        Self { histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"), elapsed: 0.0 }
    }

    fn figures(&self) -> Figures {
        Figures {
            p50_us: self.histogram.value_at_quantile(0.5),
            p99_us: self.histogram.value_at_quantile(0.99),
            per_sec: self.histogram.len() as f64 / self.elapsed,
        }
    }
}

/// Runs `concurrency` loops of `call` for `seconds`, recording each round trip into `sample`.
async fn measure<F, Fut>(sample: &mut Sample, concurrency: usize, seconds: f64, call: Arc<F>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                while Instant::now() < end {
                    let t = Instant::now();
                    call().await;
                    h.saturating_record(t.elapsed().as_micros() as u64);
                }
                h
            })
        })
        .collect();
    for task in tasks {
        sample.histogram.add(task.await.expect("a measuring task does not panic")).expect("same bounds");
    }
    sample.elapsed += started.elapsed().as_secs_f64();
}

/// Measures both in alternating slices (ten each), so both see the same load from
/// anything else on the machine.
async fn compare<A, AF, B, BF>(concurrency: usize, seconds: f64, a: A, b: B) -> (Figures, Figures)
where
    A: Fn() -> AF + Send + Sync + 'static,
    AF: std::future::Future<Output = ()> + Send,
    B: Fn() -> BF + Send + Sync + 'static,
    BF: std::future::Future<Output = ()> + Send,
{
    let (a, b) = (Arc::new(a), Arc::new(b));
    for _ in 0..200 {
        a().await;
        b().await;
    }
    let (mut sa, mut sb) = (Sample::new(), Sample::new());
    let slice = seconds / 10.0;
    for _ in 0..10 {
        measure(&mut sa, concurrency, slice, a.clone()).await;
        measure(&mut sb, concurrency, slice, b.clone()).await;
    }
    (sa.figures(), sb.figures())
}

async fn write_frame(send: &mut quinn::SendStream, payload: &[u8]) {
    send.write_all(&(payload.len() as u32).to_be_bytes()).await.expect("write");
    send.write_all(payload).await.expect("write");
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.expect("read");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    recv.read_exact(&mut body).await.expect("read");
    body
}

/// A plain quinn echo server and a client connected to it, with the cluster's TLS.
async fn plain_quinn(ca: &DevCa) -> quinn::Connection {
    let (server_config, _) = ca.tls(NodeId(101)).unwrap().quinn_configs().unwrap();
    let (_, client_config) = ca.tls(NodeId(102)).unwrap().quinn_configs().unwrap();
    let server = quinn::Endpoint::server(server_config, LOOPBACK).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let body = read_frame(&mut recv).await;
                        write_frame(&mut send, &body).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    let mut client = quinn::Endpoint::client(LOOPBACK).unwrap();
    client.set_default_client_config(client_config);
    client.connect(addr, conclave_quic::tls::SERVER_NAME).unwrap().await.unwrap()
}

async fn conclave_pair(ca: &DevCa) -> (Arc<Cluster>, Cluster) {
    let start = |id: u64, seeds: Vec<SocketAddr>| {
        Cluster::builder(NodeId(id))
            .bind(LOOPBACK)
            .seeds(seeds)
            .config(Config::lan())
            .tls(ca.tls(NodeId(id)).unwrap())
            .storage(MemoryStorage::new())
            .handler("echo", |request| async move { Ok(request.body) })
            .start()
    };
    let server = start(2, vec![]).await.unwrap();
    let client = start(1, vec![server.addr()]).await.unwrap();
    while !client.members().iter().any(|m| m.id == NodeId(2) && m.state == MemberState::Alive) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (Arc::new(client), server)
}

fn example_node() -> PathBuf {
    let exe = std::env::current_exe().expect("a program knows its own path");
    exe.parent().expect("examples live in a directory").join("node")
}

/// Three processes with lan defaults: formation time and kill -9 detection time.
fn processes() -> Result<(Duration, Duration), String> {
    let bin = example_node();
    if !bin.exists() {
        return Err(format!("{} is missing: cargo build --release -p conclave-quic --examples", bin.display()));
    }
    let dir = std::env::temp_dir().join(format!("conclave-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    DevCa::new("bench").map_err(|e| e.to_string())?.write_files(dir.join("certs"), &ids).map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let started = std::time::Instant::now();
    let mut children = Vec::new();
    for i in 0..3 {
        let mut command = Command::new(&bin);
        command
            .args(["--id", &(i + 1).to_string(), "--listen", &addrs[i].to_string(), "--config", "lan"])
            .arg("--certs")
            .arg(dir.join("certs"))
            .arg("--state-dir")
            .arg(dir.join(format!("state-{}", i + 1)))
            .stdout(Stdio::piped());
        if i > 0 {
            command.args(["--seed", &addrs[0].to_string()]);
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((i, line));
            }
        });
        children.push(child);
    }
    let mut joined = [0usize; 3];
    while joined.iter().any(|&j| j < 2) {
        let (i, line) = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "no formation within 30 s")?;
        if line.contains(" joined n") {
            joined[i] += 1;
        }
    }
    let formed = started.elapsed();
    let killed = std::time::Instant::now();
    children[2].kill().map_err(|e| e.to_string())?;
    let _ = children[2].wait();
    let mut failed = [false; 2];
    while !(failed[0] && failed[1]) {
        let (i, line) = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "no failure verdict within 30 s")?;
        if i < 2 && line.ends_with("failed n3") {
            failed[i] = true;
        }
    }
    let detected = killed.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((formed, detected))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let ca = DevCa::new("bench").unwrap();
    let payload = Bytes::from(vec![7u8; args.payload]);
    let (client, _server) = conclave_pair(&ca).await;
    let plain = plain_quinn(&ca).await;
    println!(
        "RPC round trips over loopback, {} B payloads, {} s per row (in ten slices alternating with the other row)",
        args.payload, args.seconds
    );
    println!("{:<12} {:>5} {:>9} {:>9} {:>12}", "", "conc", "p50 µs", "p99 µs", "req/s");
    for concurrency in [1, 64] {
        let (c, p, conn, q) = (client.clone(), payload.clone(), plain.clone(), payload.clone());
        let (ours, theirs) = compare(
            concurrency,
            args.seconds,
            move || {
                let (c, p) = (c.clone(), p.clone());
                async move {
                    c.call(NodeId(2), "echo", p, Duration::from_secs(5)).await.expect("echo answers");
                }
            },
            move || {
                let (conn, q) = (conn.clone(), q.clone());
                async move {
                    let (mut send, mut recv) = conn.open_bi().await.expect("open");
                    write_frame(&mut send, &q).await;
                    let _ = send.finish();
                    read_frame(&mut recv).await;
                }
            },
        )
        .await;
        for (name, f) in [("conclave", ours), ("plain quinn", theirs)] {
            println!("{name:<12} {concurrency:>5} {:>9} {:>9} {:>12.0}", f.p50_us, f.p99_us, f.per_sec);
        }
        println!(
            "{:<12} {concurrency:>5} {:>8.2}x {:>8.2}x {:>11.2}x   (conclave / plain; goals: p50 <= 1.2x, throughput >= 0.8x)",
            "ratio",
            ours.p50_us as f64 / theirs.p50_us as f64,
            ours.p99_us as f64 / theirs.p99_us as f64,
            ours.per_sec / theirs.per_sec,
        );
    }
    if !args.no_processes {
        match processes() {
            Ok((formed, detected)) => {
                println!("three example-node processes, Config::lan(): formed in {formed:?} (goal <= 1 s)");
                println!("kill -9 of one -> MemberFailed at both others in {detected:?} (goal <= 5 s)");
            }
            Err(e) => println!("processes: {e}"),
        }
    }
}
