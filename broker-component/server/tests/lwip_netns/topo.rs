//! The test network: two namespaces joined by a veth pair (made by runscripts/lib/netns.sh, the
//! same helper the runscripts use) and the broker running inside the broker namespace, on lwIP
//! over net_af_packet or on kernel sockets. Everything is removed by `Drop`, also when the test
//! fails: the broker first, then the namespaces (with anything still running in them, all started
//! by this test), then the EAL's /var/run/dpdk/<prefix>.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use musqratt_test_support::{broker_bin, run_with_timeout, scratch_dir, wait_timeout, Lines};

/// lwIP's address (or the kernel address of the broker's veth end) and the peer's.
pub const BROKER_IP: &str = "10.99.0.2";
pub const PEER_CIDR: &str = "10.99.0.1/24";
pub const PORT: u16 = 1883;
/// EAL start-up and the first ARP exchange take longer than a kernel bind.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which network stack the broker runs on inside its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Kernel sockets on the broker's veth end (10.99.0.2/24 there): proves the harness.
    Kernel,
    /// lwIP over DPDK's net_af_packet on the broker's veth end (no kernel address there).
    LwipAfPacket,
}

/// When a test cannot run here at all; printed as `SKIPPED: ...`.
pub struct Skip(pub String);

fn netns_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runscripts/lib/netns.sh")
}

fn netns_sh_run(args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new("bash").arg(netns_sh()).args(args),
        Duration::from_secs(60),
    )
}

/// Effective uid 0, read from /proc (no libc call, so no FFI in a test).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The namespaces, veth pair, scratch directory and DPDK prefix of one test.
pub struct Net {
    pub broker_ns: String,
    pub peer_ns: String,
    pub prefix: String,
    pub dir: PathBuf,
}

impl Net {
    fn create(stack: Stack) -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{:x}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // The guard exists before anything is made, so a half-made topology is removed too.
        let net = Net {
            broker_ns: format!("musqt-b-{id}"),
            peer_ns: format!("musqt-p-{id}"),
            prefix: format!("musqt-{id}"),
            dir: scratch_dir("lwip-netns"),
        };
        let broker_cidr = format!("{BROKER_IP}/24");
        let mut args = vec![
            "pair",
            &net.broker_ns,
            "musq-dpdk",
            &net.peer_ns,
            "musq-peer",
            PEER_CIDR,
        ];
        if stack == Stack::Kernel {
            args.push(&broker_cidr);
        }
        let out = netns_sh_run(&args);
        assert!(
            out.status.success(),
            "netns.sh {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let down = netns_sh_run(&["down", &self.broker_ns, &self.peer_ns]);
        let clean = netns_sh_run(&["dpdk-clean", &self.prefix]);
        for (what, out) in [("down", down), ("dpdk-clean", clean)] {
            if !out.status.success() {
                eprintln!(
                    "netns.sh {what} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The broker process inside the broker namespace (`ip netns exec` execs it: same pid).
pub struct BrokerProc {
    child: Child,
    logs: Lines,
    readers: Vec<thread::JoinHandle<()>>,
}

impl BrokerProc {
    pub fn logs(&self) -> Vec<String> {
        self.logs.snapshot()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (the broker stops cleanly on it: workers, and on lwIP the EAL), then wait.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let s = wait_timeout(&mut self.child, Duration::from_secs(15));
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        s
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        if thread::panicking() {
            eprintln!("--- broker log ---\n{}\n---", self.logs().join("\n"));
        }
    }
}

/// One test's network and broker. Field order is drop order: the broker goes before its network.
pub struct Topo {
    pub broker: BrokerProc,
    pub net: Net,
}

impl Topo {
    /// Build the network, start the broker and wait until it serves a client in the peer
    /// namespace. `Err(Skip)` only when not root, or when the binary was built without the
    /// `lwip-dpdk` feature and `MUSQRATT_LWIP_REQUIRED` is not set (then that is a failure).
    pub fn start(stack: Stack, extra_config: &str) -> Result<Topo, Skip> {
        if !is_root() {
            return Err(Skip(format!(
                "{stack:?}: needs root (network namespaces, veth, DPDK)"
            )));
        }
        let net = Net::create(stack);
        let conf = net.dir.join("musqratt.toml");
        std::fs::write(&conf, config(stack, &net, extra_config)).expect("write musqratt.toml");
        let bin = broker_bin(Some(Path::new(env!("CARGO_BIN_EXE_musqratt"))));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.broker_ns])
            .arg(&bin)
            .arg("serve")
            .arg("-c")
            .arg(&conf)
            .arg("--in-memory")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let logs = Lines::default();
        let readers = vec![
            logs.collect(child.stdout.take().unwrap()),
            logs.collect(child.stderr.take().unwrap()),
        ];
        let mut broker = BrokerProc {
            child,
            logs,
            readers,
        };
        let want = format!("listening on mqtt://{BROKER_IP}:{PORT}");
        let deadline = Instant::now() + READY_TIMEOUT;
        while !broker.logs.wait_until(Duration::from_millis(100), |l| {
            l.iter().any(|l| l.contains(&want))
        }) {
            if !broker.is_running() {
                let status = broker.stop();
                let out = broker.logs().join("\n");
                if stack == Stack::LwipAfPacket && lacks_feature(&out) {
                    let msg = format!(
                        "{} was built without the lwip-dpdk feature \
                         (cargo build --release -p musqratt --features lwip-dpdk); it said: {out}",
                        bin.display()
                    );
                    if std::env::var_os("MUSQRATT_LWIP_REQUIRED").is_some() {
                        panic!("MUSQRATT_LWIP_REQUIRED is set, but {msg}");
                    }
                    return Err(Skip(msg));
                }
                panic!("broker exited ({status:?}) before printing `{want}`; output:\n{out}");
            }
            assert!(
                Instant::now() < deadline,
                "broker did not print `{want}` within {READY_TIMEOUT:?}; output:\n{}",
                broker.logs().join("\n")
            );
        }
        let topo = Topo { broker, net };
        topo.wait_connack();
        Ok(topo)
    }

    /// A real CONNECT/CONNACK (and SUBSCRIBE/SUBACK) from the peer namespace, retried until the
    /// path works: the log line says the listener exists, not that ARP and TCP get through.
    /// Subscribing (`-E`: exit once subscribed) publishes nothing that could be held.
    fn wait_connack(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = run_with_timeout(
                self.peer_cmd("mosquitto_sub").args([
                    "-h",
                    BROKER_IP,
                    "-p",
                    &PORT.to_string(),
                    "-d",
                    "-E",
                    "-t",
                    "netns/ready",
                ]),
                Duration::from_secs(15),
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && text.contains("received CONNACK (0)") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no CONNACK from the peer namespace within {READY_TIMEOUT:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ip netns exec PEER_NS prog`: a client in the peer namespace.
    pub fn peer_cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.net.peer_ns, prog]);
        c
    }
}

/// The broker's refusal of `stack = "lwip-dpdk"` when built without the feature: a line naming the
/// stack and the feature (or, before the feature existed, "not supported yet"). Any other early
/// exit (an EAL or port failure) is a test failure, never a skip.
fn lacks_feature(out: &str) -> bool {
    out.lines().any(|l| {
        l.contains("lwip-dpdk") && (l.contains("feature") || l.contains("not supported yet"))
    })
}

fn config(stack: Stack, net: &Net, extra: &str) -> String {
    let network = match stack {
        Stack::Kernel => "[network]\nstack = \"kernel\"\n".to_string(),
        Stack::LwipAfPacket => format!(
            "[network]\nstack = \"lwip-dpdk\"\nip = \"{BROKER_IP}/24\"\ngateway = \"{gw}\"\n\
             eal_args = [\"--no-huge\", \"--no-pci\", \"--no-shconf\", \"-m\", \"256\", \"-l\", \"0\", \
             \"--file-prefix\", \"{prefix}\", \"--vdev=net_af_packet0,iface=musq-dpdk\"]\n",
            gw = PEER_CIDR.split('/').next().unwrap_or_default(),
            prefix = net.prefix
        ),
    };
    format!("{network}\n[[listener]]\nbind = \"{BROKER_IP}:{PORT}\"\n\n{extra}\n")
}
