//! Writes the seed corpora of every target: valid inputs of every kind each reads.
//!
//! `cd fuzz && RUSTFLAGS="--cfg fuzzing" cargo run --example seed_corpus`
//! (cargo-fuzz builds with the same cfg). Files are named `seed-*`; inputs that found bugs
//! are kept beside them as `crash-*`.

use std::fs;
use std::net::SocketAddr;

use conclave_core::{fuzzing, wire, Config, Durable, NodeId};

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(format!("corpus/{target}"))?;
    fs::write(format!("corpus/{target}/seed-{name}"), bytes)
}

/// A request frame as the runtime sends it (`conclave_quic::rpc`'s format, version 1):
/// length, version, sender, request number, budget in µs, method length, method, body.
fn request(sender: u64, number: u64, budget_micros: u32, method: &str, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&sender.to_le_bytes());
    frame.extend_from_slice(&number.to_le_bytes());
    frame.extend_from_slice(&budget_micros.to_le_bytes());
    frame.push(method.len() as u8);
    frame.extend_from_slice(method.as_bytes());
    frame.extend_from_slice(body);
    [(frame.len() as u32).to_be_bytes().to_vec(), frame].concat()
}

fn main() -> std::io::Result<()> {
    let cluster = Config::lan().cluster_id;
    let from = SocketAddr::from(([10, 0, 0, 2], 7946));
    let samples = fuzzing::sample_datagrams(cluster, NodeId(2), from, NodeId(1));
    // The envelope's head: magic, version, cluster id, sender; its checksum ends it.
    let head = wire::envelope_len(wire::Header { cluster_id: cluster, sender: NodeId(2) }) - 4;
    for (i, datagram) in samples.iter().enumerate() {
        let body = &datagram[head..datagram.len() - 4];
        // decode: mode byte 0 (raw bytes, smallest cap), then the datagram.
        write("decode", &format!("{i:02}"), &[&[0u8][..], datagram].concat())?;
        // decode: mode byte 1 (sealed body), then the body alone.
        write("decode", &format!("body-{i:02}"), &[&[1u8][..], body].concat())?;
        // node_datagram: seed, then "raw datagram from peer 2" with its length, then a timeout
        // to the next wakeup.
        let len = u16::try_from(datagram.len()).expect("samples are small").to_le_bytes();
        let program = [&[0, 0, 0, 0][..], &len, datagram, &[3, 0, 0, 0]].concat();
        write("node_datagram", &format!("{i:02}"), &program)?;
        // quic_frames: the largest limit, chunks of 1 to 23 bytes, the datagram as a
        // length-prefixed datagram sealed for the connection's member (kind 1).
        let stream = [&[1u8, body.len() as u8][..], body].concat();
        write("quic_frames", &format!("datagram-{i:02}"), &[&[3u8, 0x5a][..], &stream].concat())?;
    }

    // durable: valid files (both versions), with a leftover temporary file, states cut,
    // stores cut by a crash.
    let states = [Durable::new(0, 0, None), Durable::new(7, 3, Some(NodeId(2))), Durable::new(u64::MAX, 9, None)];
    for (i, state) in states.iter().enumerate() {
        write("durable", &format!("file-{i}"), &[&[0u8][..], &state.encode()].concat())?;
        write("durable", &format!("file-temp-{i}"), &[&[1u8][..], &state.encode()].concat())?;
    }
    let mut v1 = b"CNDS\x01\x07\x03\x01\x02".to_vec();
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    write("durable", "file-v1", &[&[0u8][..], &v1].concat())?;
    write("durable", "cut", &[2u8, 1, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9])?;
    for (i, budget) in [0u8, 3, 9, 20, 40].into_iter().enumerate() {
        let mut store = vec![3u8, 2, 5];
        store.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        store.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
        store.extend_from_slice(&[budget, i as u8, 1]);
        write("durable", &format!("store-cut-{i}"), &store)?;
    }

    // quic_frames: requests (a plain call's, a service call's with a request number), a
    // response, an oversized prefix, a frame cut short, responses of the newer statuses
    // (shed, expired, not kept).
    let frames = [
        request(7, 0, 500_000, "echo", b"hello"),
        [3u32.to_be_bytes().to_vec(), vec![0, b'o', b'k']].concat(),
        (1u32 << 24).to_be_bytes().to_vec(),
        [100u32.to_be_bytes().to_vec(), vec![1, 2, 3]].concat(),
        request(2, u64::MAX - 3, 250_000, "work", b"job"),
        [1u32.to_be_bytes().to_vec(), vec![4], 1u32.to_be_bytes().to_vec(), vec![5]].concat(),
        [1u32.to_be_bytes().to_vec(), vec![6]].concat(),
    ];
    for (i, frame) in frames.iter().enumerate() {
        write("quic_frames", &format!("frame-{i}"), &[&[3u8, 0x13][..], frame].concat())?;
    }

    // sim_plan: members, settings (bit 0: preset; the rest: voters), seed, what the heal
    // leaves out, then (time, kind, target, parameter) per fault.
    let plans: [(&str, Vec<u8>); 6] = [
        ("calm", vec![2, 10, 1, 0, 0, 0, 0]),
        ("crash-restart", vec![2, 10, 2, 0, 0, 0, 0, 20, 0, 4, 0, 120, 1, 4, 0]),
        ("partition-heal", vec![2, 10, 3, 0, 0, 0, 0, 30, 3, 0, 0b11, 150, 6, 0, 0]),
        ("amnesia-minority", vec![2, 10, 4, 0, 0, 0, 0, 30, 2, 0, 0]),
        ("lossy-clocks", vec![1, 7, 5, 0, 0, 0, 0, 10, 7, 0, 40, 40, 12, 2, 200, 90, 13, 1, 60, 100, 9, 3, 50]),
        ("isolated-forever", vec![2, 10, 6, 0, 0, 0, 1, 30, 3, 0, 0b1]),
    ];
    for (name, plan) in &plans {
        write("sim_plan", name, plan)?;
    }
    Ok(())
}
