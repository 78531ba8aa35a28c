//! Hostile peers against a three-member cluster on loopback, one after another: what the
//! cluster did, the honest callers' success rate and p99 during each attack, and the
//! process's peak resident memory. Prints the table of BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p conclave-quic --example hostile -- --seconds 10
//! ```
//!
//! The attacks are those of the `hostile` test (`tests/attacks/mod.rs`), run longer.

use std::time::Duration;

use clap::Parser;

#[path = "../tests/attacks/mod.rs"]
mod attacks;

use attacks::{Attack, Harness, Outcome};

#[derive(Parser, Debug)]
#[command(about = "Hostile peers against a cluster on loopback, with honest callers")]
struct Args {
    /// How long each attack runs, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// What the cluster did, from n1's counters.
fn what_it_did(o: &Outcome) -> String {
    let (b, a) = (&o.before, &o.after);
    match o.attack {
        Attack::NoCertificate | Attack::OtherCa => {
            format!("refused {} handshakes (handshakes_failed)", a.handshakes_failed - b.handshakes_failed)
        }
        Attack::SpoofedId => format!(
            "dropped {} datagrams (datagrams_spoofed), refused {} requests (rpc_spoofed)",
            a.datagrams_spoofed - b.datagrams_spoofed,
            a.rpc_spoofed - b.rpc_spoofed
        ),
        Attack::BadFrames => format!("refused {} requests with a reason (rpc_refused)", a.rpc_refused - b.rpc_refused),
        Attack::Slowloris => format!(
            "granted {} streams at once, reset {} after the request timeout (rpc_timed_out)",
            attacks::MAX_STREAMS,
            a.rpc_timed_out - b.rpc_timed_out
        ),
        Attack::DatagramFlood => format!(
            "dropped {} over the rate (datagrams_flooded), passed {} to the core, which refused {}",
            a.datagrams_flooded - b.datagrams_flooded,
            a.datagrams_received - b.datagrams_received,
            o.core_dropped
        ),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    println!("| hostile peer | what n1 did | membership | honest calls ok | honest p99 | peak RSS (before) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for attack in Attack::ALL {
        let harness = Harness::new(Duration::from_secs(15)).await;
        let o = attacks::under_attack(&harness, attack, duration).await;
        let honest_events = o.events.len();
        println!(
            "| {} | {} | {} | {}/{} ({:.2} %) | {:.1} ms | {} MiB ({} MiB) |",
            attack.name(),
            what_it_did(&o),
            if o.membership_intact && honest_events == 0 {
                "kept, no event".to_string()
            } else {
                format!("{honest_events} events")
            },
            o.ok,
            o.calls,
            o.success_rate() * 100.0,
            o.p99_us() as f64 / 1000.0,
            o.rss_peak_kib / 1024,
            o.rss_before_kib / 1024,
        );
        eprintln!("  {}: the attacker saw: {}", attack.name(), o.attacker_saw);
        harness.shutdown().await;
    }
}
