//! `musqratt`: the MusQraTT broker binary. See docs/architecture.md.
#![forbid(unsafe_code)]

mod acl_file;
mod cli;
mod client;
mod config;
mod conn;
mod inbox;
mod memory;
mod netstack;
mod passwd;
mod password_file;
mod sched;
mod server;
mod tls_config;
mod transport;
mod websocket;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// The musl build's allocator (scripts/build-musl.sh enables the feature): see docs/runtime.md.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // mosquitto_pub/mosquitto_sub exit 1 on a bad command line; clap's default is 2.
            let client = std::env::args()
                .nth(1)
                .is_some_and(|a| matches!(a.as_str(), "pub" | "sub" | "shell"));
            return match (e.use_stderr(), client) {
                (false, _) => ExitCode::SUCCESS,
                (true, true) => ExitCode::FAILURE,
                (true, false) => ExitCode::from(2),
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // rustls warns about every client that sends an IP address as SNI (mosquitto_pub
            // -h 127.0.0.1 does): a client's choice, harmless, and one line per connection.
            // The broker logs failed handshakes itself (transport/tls.rs).
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,rustls::msgs::handshake=error")),
        )
        .with_writer(std::io::stderr)
        // Plain text when piped, so tests and log files can grep messages.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        cli::Command::Serve(args) => {
            let settings = match args.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match server::run(&settings, args.workers()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Shell(a) => match a.broker.tls_files().config() {
            Ok(tls) => client::repl::run(&a.broker.host, a.broker.port, a.broker.version, tls),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Pub(a) => client::pubsub::publish(&a),
        cli::Command::Sub(a) => client::pubsub::subscribe(&a),
        cli::Command::Passwd(a) => passwd::run(&a),
    }
}
