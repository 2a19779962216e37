//! The command line (DESIGN.md §4, a contract). Only `serve` exists so far.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "musqratt",
    version,
    about = "The MusQraTT MQTT 3.1.1/5.0 broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable); replaces the file's listeners.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Directory of the durable store.
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep all state in memory only.
    #[arg(long)]
    pub in_memory: bool,
    /// Hold messages published to topics nobody subscribes to.
    #[arg(long, value_name = "on|off")]
    pub hold: Option<OnOff>,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl ServeArgs {
    /// Defaults, then the file, then the flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        if !self.listen.is_empty() {
            s.listeners = self.listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            s.storage_dir = dir.clone();
            s.in_memory = false;
        }
        if self.in_memory {
            s.in_memory = true;
        }
        if let Some(hold) = self.hold {
            s.hold_enabled = hold == OnOff::On;
        }
        Ok(s)
    }

    pub fn workers(&self) -> usize {
        self.workers
            .map(NonZeroUsize::get)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
    }
}
