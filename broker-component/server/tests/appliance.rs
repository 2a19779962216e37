//! The appliance, booted for real (docs/appliance.md): `runscripts/appliance.sh` starts the image
//! of `make image` in QEMU, once with DPDK's virtio PMD under lwIP driving the guest's NIC
//! (`NET=dpdk`) and once on the guest kernel's sockets (`NET=kernel`). Each test waits for a
//! real CONNECT/CONNACK through the port forward (QEMU accepts TCP before the guest listens),
//! publishes a retained QoS 1 message and a held one with mosquitto_pub, receives both with
//! mosquitto_sub, powers the appliance off (the script presses the ACPI power button; it exits
//! 0 only after init's clean power-off), boots it again from the same data disk and receives
//! the retained message from the store. It prints the boot-to-ready times.
//!
//! Runs only with `MUSQRATT_APPLIANCE_TEST=1` (`make test-appliance`, part of `make test`,
//! which builds the image first); otherwise it prints why it skipped. A guest panic, an early
//! QEMU exit or a missing step fails it with the console log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use musqratt_test_support::raw::{self, Version};
use musqratt_test_support::{free_port, scratch_dir};

/// A boot under software emulation takes seconds; this bounds a broken one.
const BOOT_LIMIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn enabled() -> bool {
    if std::env::var_os("MUSQRATT_APPLIANCE_TEST").is_some_and(|v| v == "1") {
        let image = repo().join("target/appliance/initramfs.cpio.lz4");
        assert!(
            image.exists(),
            "{} missing: run `make image`",
            image.display()
        );
        true
    } else {
        println!("SKIPPED: set MUSQRATT_APPLIANCE_TEST=1 (make test-appliance boots the image)");
        false
    }
}

/// One boot of the appliance; powered off (and checked) by `power_off`, killed on drop.
struct Appliance {
    script: Option<Child>,
    net: &'static str,
    port: u16,
    console: PathBuf,
}

impl Appliance {
    fn boot(net: &'static str, env: &[(&str, String)], dir: &Path) -> (Appliance, Duration) {
        let port = free_port();
        let console = dir.join(format!("console-{port}.log"));
        let start = Instant::now();
        let script = Command::new(repo().join("runscripts/appliance.sh"))
            .env("NET", net)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PORT", port.to_string())
            .env("DISK", dir.join("data.img"))
            .env("CONSOLE_LOG", &console)
            .env("QUIET", "1")
            .stdin(Stdio::null())
            .spawn()
            .expect("start runscripts/appliance.sh");
        let mut a = Appliance {
            script: Some(script),
            net,
            port,
            console,
        };
        let ready = a.wait_ready();
        (a, ready.duration_since(start))
    }

    /// The console log without the broker's colours (the console is a terminal to it).
    fn console(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters… final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) && c != '[' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn fail(&mut self, what: &str) -> ! {
        if let Some(mut s) = self.script.take() {
            let _ = s.kill();
            let _ = s.wait();
            // The script's QEMU is in its own session: stop it too.
            let _ = Command::new("pkill")
                .args(["-f", &format!("hostfwd=tcp:127.0.0.1:{}-", self.port)])
                .status();
        }
        panic!(
            "NET={}: {what}\n--- console ---\n{}---",
            self.net,
            self.console()
        );
    }

    /// Until a CONNECT is answered by a CONNACK (a fresh connection per attempt: the forward
    /// accepts and then drops connections while nothing listens in the guest).
    fn wait_ready(&mut self) -> Instant {
        let deadline = Instant::now() + BOOT_LIMIT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self
                .script
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                self.fail(&format!(
                    "the appliance stopped before it was ready ({status})"
                ));
            }
            if connack(&addr) {
                return Instant::now();
            }
            if Instant::now() > deadline {
                self.fail("no CONNACK within the boot limit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the script = the power button; the script exits 0 only after init's power-off.
    fn power_off(mut self) {
        let Some(mut script) = self.script.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &script.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = script.try_wait().expect("wait for the script") {
                break s;
            }
            if Instant::now() > deadline {
                self.script = Some(script);
                self.fail("no power-off within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let console = self.console();
        if !status.success() {
            self.fail(&format!(
                "the appliance did not power off cleanly ({status})"
            ));
        }
        for line in ["musqratt::server: stopped", "init: powering off"] {
            if !console.contains(line) {
                self.fail(&format!("no `{line}` on the console"));
            }
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut s) = self.script.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &s.id().to_string()])
                .status();
            let _ = s.wait();
        }
    }
}

fn connack(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(&raw::connect(Version::V311, "appliance-probe"))
        .is_err()
    {
        return false;
    }
    let mut b = [0u8; 4];
    s.read_exact(&mut b).is_ok() && b == [0x20, 2, 0, 0]
}

fn mosquitto_pub(a: &mut Appliance, args: &[&str]) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &a.port.to_string(), "-V", "mqttv5"])
        .args(args)
        .output()
        .expect("run mosquitto_pub");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        a.fail(&format!("mosquitto_pub {args:?}: {err}"));
    }
}

/// One message on `topic`, printed as `topic payload`.
fn mosquitto_sub_one(a: &mut Appliance, topic: &str) -> String {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &a.port.to_string(), "-V", "mqttv5"])
        .args(["-q", "1", "-t", topic, "-C", "1", "-W", "20", "-v"])
        .output()
        .expect("run mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        a.fail(&format!("mosquitto_sub {topic}: {err}"));
    }
    text
}

/// `how` names the variant in the output; `env` is passed to runscripts/appliance.sh (with the
/// scratch directory as `{dir}`).
fn smoke(net: &'static str, how: &str, env: &[(&str, &str)], driver_line: &str) {
    if !enabled() {
        return;
    }
    let dir = scratch_dir(&format!("appliance-{net}-{how}"));
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| (*k, v.replace("{dir}", &dir.to_string_lossy())))
        .collect();
    let retained = format!("kept across a power-off ({net})");
    let held = format!("held until someone subscribes ({net})");

    let (mut a, first) = Appliance::boot(net, &env, &dir);
    println!(
        "NET={net} ({how}): boot-to-ready {:.2} s (first boot, blank data disk)",
        first.as_secs_f64()
    );
    mosquitto_pub(
        &mut a,
        &["-q", "1", "-r", "-t", "appliance/retained", "-m", &retained],
    );
    mosquitto_pub(&mut a, &["-q", "1", "-t", "appliance/held", "-m", &held]);
    let got = mosquitto_sub_one(&mut a, "appliance/retained");
    if got != format!("appliance/retained {retained}") {
        a.fail(&format!("retained message: got {got:?}"));
    }
    let got = mosquitto_sub_one(&mut a, "appliance/held");
    if got != format!("appliance/held {held}") {
        a.fail(&format!("held message: got {got:?}"));
    }
    if !a.console().contains(driver_line) {
        a.fail(&format!(
            "the console does not name the NIC driver (`{driver_line}`)"
        ));
    }
    a.power_off();

    let (mut a, second) = Appliance::boot(net, &env, &dir);
    println!(
        "NET={net} ({how}): boot-to-ready {:.2} s (second boot, data disk in use)",
        second.as_secs_f64()
    );
    let got = mosquitto_sub_one(&mut a, "appliance/retained");
    if got != format!("appliance/retained {retained}") {
        a.fail(&format!("retained message after the reboot: got {got:?}"));
    }
    if !a.console().contains("retained=1") {
        a.fail("the broker did not log the retained message it restored");
    }
    a.power_off();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn appliance_dpdk_virtio_pmd() {
    smoke(
        "dpdk",
        "uio_pci_generic",
        &[],
        "Probe PCI driver: net_virtio (1af4:1000)",
    );
}

/// The NIC behind an IOMMU and vfio-pci, as on a physical machine (docs/deploy-dpdk.md).
#[test]
fn appliance_dpdk_vfio_pci_behind_an_iommu() {
    smoke(
        "dpdk",
        "vfio-pci",
        &[("NIC_DRIVER", "vfio-pci")],
        "EAL: Using IOMMU type 1",
    );
}

#[test]
fn appliance_kernel_sockets() {
    smoke(
        "kernel",
        "kernel",
        &[],
        "init: network: eth0 (virtio_net) 10.0.2.15/24",
    );
}

/// The boot medium of `make boot-disk` (a copy: its data partition changes), booted by UEFI
/// firmware through systemd-boot, its data partition found by name.
#[test]
fn appliance_uefi_boot_disk() {
    if !enabled() {
        return;
    }
    let image = repo().join("target/appliance/musqratt-boot.img");
    assert!(
        image.exists(),
        "{} missing: run `make boot-disk`",
        image.display()
    );
    let dir = scratch_dir("appliance-boot-disk-copy");
    let copy = dir.join("boot.img");
    // cp --sparse: the 1 GiB data partition is mostly holes.
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&copy)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "copy {}", image.display());
    smoke(
        "dpdk",
        "uefi-disk",
        &[("BOOT", "disk"), ("BOOT_IMG", &copy.to_string_lossy())],
        "init: data disk PARTLABEL=musqratt-data is /dev/vda2",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
