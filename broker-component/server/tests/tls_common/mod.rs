//! Shared by the TLS integration tests (tls.rs, tls_clients.rs): certificates made with rcgen,
//! a broker with a plain and a TLS listener, and mosquitto_pub / `musqratt` runners.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use musqratt_test_support::{run_with_timeout, scratch_dir, Lines, START_TIMEOUT, WAIT};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA that signs server and client certificates, written as PEM files into a directory.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    dir: PathBuf,
    name: String,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
            name: name.into(),
        }
    }

    pub fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate signed by this CA: `{file}.pem` and `{file}.key`.
    pub fn issue(&self, file: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let sans = if server {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// `musqratt serve -c CONF` with a plain and a TLS listener, both on port 0; killed on drop.
/// (The shared `Broker` passes `--listen`, which replaces the file's listeners.)
pub struct TlsBroker {
    pub child: Child,
    pub logs: Lines,
    pub plain: u16,
    pub tls: u16,
}

impl TlsBroker {
    pub fn start(dir: &Path, tls: &str, extra: &str) -> TlsBroker {
        let conf = dir.join("musqratt.toml");
        std::fs::write(
            &conf,
            format!(
                "{extra}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
                 [[listener]]\nbind = \"127.0.0.1:0\"\ntls = {{ {tls} }}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(musqratt())
            .args(["serve", "--in-memory", "-c"])
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Lines::default();
        logs.collect(child.stdout.take().unwrap());
        logs.collect(child.stderr.take().unwrap());
        let port = musqratt_test_support::listening_port;
        let up = logs.wait_until(START_TIMEOUT, |l| {
            port(l, "mqtt").is_some() && port(l, "mqtts").is_some()
        });
        let lines = logs.snapshot();
        assert!(up, "broker did not start:\n{}", lines.join("\n"));
        TlsBroker {
            child,
            plain: port(&lines, "mqtt").unwrap(),
            tls: port(&lines, "mqtts").unwrap(),
            logs,
        }
    }

    pub fn wait_for_log(&self, needle: &str) -> bool {
        self.logs
            .wait_until(WAIT, |l| l.iter().any(|l| l.contains(needle)))
    }

    pub fn count(&self, needle: &str) -> usize {
        self.logs
            .snapshot()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}", self.logs.snapshot().join("\n"));
        }
    }
}

pub fn musqratt() -> PathBuf {
    musqratt_test_support::broker_bin(Some(Path::new(env!("CARGO_BIN_EXE_musqratt"))))
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `tls = { ... }` of a listener with a server certificate from `ca`.
pub fn server_tls(ca: &Ca, extra: &str) -> String {
    let (cert, key) = ca.issue("server", "localhost", true);
    format!("cert = {:?}, key = {:?}{extra}", s(&cert), s(&key))
}

/// mosquitto_pub over TLS to 127.0.0.1:`port`; its output, whatever the status.
pub fn tls_pub(port: u16, args: &[&str]) -> Output {
    let mut c = Command::new("mosquitto_pub");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if !args.contains(&"-t") {
        c.args(["-t", "tls/t"]);
    }
    if !args.contains(&"-m") {
        c.args(["-m", "x"]);
    }
    run_with_timeout(c.args(args), Duration::from_secs(10))
}

pub fn ok(out: &Output) -> bool {
    out.status.success()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into()
}

/// `musqratt pub`/`sub` (our own client, rustls) with `--cafile`, `--cert`, `--key`.
pub fn our_client(sub: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(musqratt());
    c.args([sub, "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    c
}

pub fn hup(b: &TlsBroker) {
    let out = Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
}
