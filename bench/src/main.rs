//! musqratt-bench: a load generator for MQTT brokers, built to never be the
//! bottleneck (pre-encoded batches, one write per batch, 1 MiB reads, no
//! allocation per message) and to say so: every result line carries the CPU
//! time of the broker and of the generator over the measurement window.
//!
//! Each run is one scenario against one broker, bounded in time, and prints one
//! JSON line. scripts/bench.sh runs them all against Mosquitto and MusQraTT;
//! docs/benchmarks.md explains the method.
#![forbid(unsafe_code)]

mod args;
mod conns;
mod flow;
mod proto;
mod scenarios;
mod slices;
mod stats;
mod stream;

use args::Args;
use scenarios::Common;

const USAGE: &str = "\
usage: musqratt-bench SCENARIO [--flag value]...

scenarios:
  fan-in     N publishers -> 1 subscriber    --publishers 8 [--same-topic]
  fan-out    1 publisher -> N subscribers     --subscribers 8
  pairs      N publisher -> subscriber pairs  --pairs 8
  latency    1 publisher at a fixed rate      --rate 1000
             in turns with a second generator [--slice-ms 250 --turn 0|1]
  conns      M idle clients: RSS per client   --clients 19000 --procs 4 --threads 2
             and connects/s                   --src 127.0.0.2-9 --settle 1

common flags:
  --host 127.0.0.1 --port 1883   the broker
  --broker NAME --broker-pid PID  for the result line and its CPU / RSS readings
  --label TEXT                    names the row in the comparison table
  --qos 0|1|2 --payload 64        payload >= 20 bytes (publisher, sequence, timestamp)
  --duration 5 --warmup 0.5       seconds of measurement, after a warm-up
  --inflight 64                   QoS 1/2: unacknowledged publishes per publisher
  --batch 256                     QoS 0: publishes per write
  --coalesce-us 200               subscribers nap after a read under 16 KiB (latency: 0)
  --slow-us N                     print each latency sample over N us to stderr (diagnostics)
  --v5                            MQTT 5.0 (default 3.1.1)
";

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = raw.first().cloned() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    if matches!(scenario.as_str(), "-h" | "--help" | "help") {
        print!("{USAGE}");
        return;
    }
    let result = Args::parse(&raw[1..]).and_then(|a| dispatch(&scenario, &a));
    match result {
        Ok(Some(line)) => println!("{line}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("musqratt-bench {scenario}: {e}");
            std::process::exit(1);
        }
    }
}

fn dispatch(scenario: &str, a: &Args) -> Result<Option<String>, String> {
    if scenario == "conns-worker" {
        return conns::worker(a).map(|_| None);
    }
    let c = Common::from_args(scenario, a)?;
    let run = match scenario {
        "fan-in" => scenarios::fan_in,
        "fan-out" => scenarios::fan_out,
        "pairs" => scenarios::pairs,
        "latency" => scenarios::latency,
        "conns" => conns::run,
        _ => return Err(format!("unknown scenario\n{USAGE}")),
    };
    // Read every flag before running, so a typo fails before the broker is loaded.
    check_flags(scenario, a)?;
    run(&c, a).map(Some)
}

/// Asks for each scenario's own flags once so `finish` can reject the rest.
fn check_flags(scenario: &str, a: &Args) -> Result<(), String> {
    let own: &[&str] = match scenario {
        "fan-in" => &["publishers", "same-topic"],
        "fan-out" => &["subscribers"],
        "pairs" => &["pairs"],
        "latency" => &["rate", "slice-ms", "turn"],
        "conns" => &["clients", "procs", "threads", "src", "settle"],
        _ => &[],
    };
    for k in own {
        a.opt(k);
    }
    a.finish()
}
