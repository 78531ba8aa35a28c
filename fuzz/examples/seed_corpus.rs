//! Writes the seed corpora: valid datagrams of every message kind.
//!
//! `cd fuzz && RUSTFLAGS="--cfg fuzzing" cargo run --example seed_corpus`
//! (cargo-fuzz builds with the same cfg).

use std::fs;
use std::net::SocketAddr;

use conclave_core::{fuzzing, Config, NodeId};

fn main() -> std::io::Result<()> {
    let cluster = Config::lan().cluster_id;
    let from = SocketAddr::from(([10, 0, 0, 2], 7946));
    let samples = fuzzing::sample_datagrams(cluster, NodeId(2), from, NodeId(1));
    fs::create_dir_all("corpus/decode")?;
    fs::create_dir_all("corpus/node_datagram")?;
    for (i, datagram) in samples.iter().enumerate() {
        // decode: mode byte 0 (raw bytes, smallest cap), then the datagram.
        fs::write(format!("corpus/decode/seed-{i:02}"), [&[0u8][..], datagram].concat())?;
        // decode: mode byte 1 (sealed body), then the body alone.
        fs::write(format!("corpus/decode/seed-body-{i:02}"), [&[1u8][..], &datagram[25..]].concat())?;
        // node_datagram: seed, then "raw datagram from peer 2" with its length, then a timeout
        // to the next wakeup.
        let len = u16::try_from(datagram.len()).expect("samples are small").to_le_bytes();
        let program = [&[0, 0, 0, 0][..], &len, datagram, &[3, 0, 0, 0]].concat();
        fs::write(format!("corpus/node_datagram/seed-{i:02}"), program)?;
    }
    Ok(())
}
