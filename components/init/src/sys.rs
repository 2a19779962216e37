//! The thin syscall layer: every call to the kernel lives here, through nix's safe wrappers.
//! Decisions are made by the pure modules; these functions only perform them and turn errors
//! into the one console line init prints before powering off.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cmdline::{Config, NetMode};
use crate::disk::{self, MountOutcome, Step};
use crate::dpdk;
use crate::modules;
use crate::shutdown::ExitStatus;

/// Where the data disk goes.
pub const DATA_DIR: &str = "/data";

/// Set once /data is mounted, so that every way to power off (the normal path, a fatal error,
/// a panic) unmounts it first.
static DATA_MOUNTED: AtomicBool = AtomicBool::new(false);

/// One console line. Errors are ignored: there is nowhere else to report them.
pub fn log(line: &str) {
    let _ = writeln!(io::stderr(), "init: {line}");
}

pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// The last act of init: sync, unmount /data (read-only remount if busy), power off. Never
/// returns: should the reboot call fail, PID 1 sleeps instead of exiting (an exiting PID 1
/// panics the kernel).
pub fn power_off() -> ! {
    nix::unistd::sync();
    if DATA_MOUNTED.swap(false, Ordering::SeqCst) {
        match nix::mount::umount2(DATA_DIR, MntFlags::empty()) {
            Ok(()) => log("unmounted /data"),
            Err(e) => {
                log(&format!("umount /data: {e}; remounting it read-only"));
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                if let Err(e) =
                    nix::mount::mount(None::<&str>, DATA_DIR, None::<&str>, flags, None::<&str>)
                {
                    log(&format!("remount /data read-only: {e}"));
                }
            }
        }
        nix::unistd::sync();
    }
    log("powering off");
    // reboot returns only on failure (its Ok type is Infallible).
    if let Some(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF).err() {
        log(&format!("reboot(RB_POWER_OFF): {e}; halting here"));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Prints the failure line and powers off.
pub fn fatal(line: &str) -> ! {
    log(line);
    power_off()
}

/// Ctrl-Alt-Del then sends SIGINT to PID 1 instead of rebooting at once, so it stops the
/// broker cleanly.
pub fn disable_ctrl_alt_del() -> Result<(), String> {
    nix::sys::reboot::set_cad_enabled(false).map_err(|e| format!("disable Ctrl-Alt-Del: {e}"))
}

/// If the kernel found no /dev/console in the initramfs, init starts without fds 0–2 and
/// every line (ours and the broker's) would vanish. After devtmpfs is mounted the console
/// exists: open it onto 0, 1 and 2.
pub fn ensure_console() {
    if nix::fcntl::fcntl(io::stderr(), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    let Ok(console) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    let _ = nix::unistd::dup2_stdin(&console);
    let _ = nix::unistd::dup2_stdout(&console);
    let _ = nix::unistd::dup2_stderr(&console);
    if console.as_raw_fd() <= 2 {
        // It landed on one of 0–2 itself: dropping it would close that descriptor again.
        let _ = console.into_raw_fd();
    }
}

fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data)
}

fn mkdir(dir: &str) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))
}

const HARDENED: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// /proc, first of all: the kernel command line, which says everything else, is in it.
pub fn mount_proc() -> Result<String, String> {
    mkdir("/proc")?;
    mount("proc", "/proc", "proc", HARDENED, None)
        .map_err(|e| format!("mount proc on /proc: {e}"))?;
    fs::read_to_string("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))
}

/// sysfs, devtmpfs and hugetlbfs. hugetlbfs only matters to DPDK: in kernel mode its failure
/// is a warning, not a reason to stop.
pub fn mount_early(net: NetMode) -> Result<(), String> {
    mkdir("/sys")?;
    mount("sysfs", "/sys", "sysfs", HARDENED, None)
        .map_err(|e| format!("mount sysfs on /sys: {e}"))?;
    mkdir("/dev")?;
    // EBUSY: the kernel mounted devtmpfs itself (CONFIG_DEVTMPFS_MOUNT with a root device).
    match mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    ) {
        Ok(()) | Err(Errno::EBUSY) => {}
        Err(e) => return Err(format!("mount devtmpfs on /dev: {e}")),
    }
    ensure_console();
    let huge = mkdir("/dev/hugepages").and_then(|()| {
        mount(
            "hugetlbfs",
            "/dev/hugepages",
            "hugetlbfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        )
        .map_err(|e| format!("mount hugetlbfs on /dev/hugepages: {e}"))
    });
    match (huge, net) {
        (Ok(()), _) => Ok(()),
        (Err(e), NetMode::Dpdk) => Err(e),
        (Err(e), NetMode::Kernel) => {
            log(&format!(
                "{e} (not needed with musqratt.net=kernel; continuing)"
            ));
            Ok(())
        }
    }
}

/// Loads the modules of /etc/modules-load and /etc/modules-load.<mode>, in order.
pub fn load_modules(cfg: &Config) -> Result<usize, String> {
    let mut loaded = 0;
    for list in modules::list_paths(crate::cmdline::module_list_name(cfg)) {
        let text = match fs::read_to_string(&list) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("read {list}: {e}")),
        };
        for m in modules::parse_list(&text) {
            let what = format!("load module {} ({list} line {})", m.path, m.line);
            let file = File::open(&m.path).map_err(|e| format!("{what}: {e}"))?;
            let params = CString::new(m.params.as_str()).map_err(|e| format!("{what}: {e}"))?;
            let flags = nix::kmod::ModuleInitFlags::empty();
            if let Err(e) = nix::kmod::finit_module(&file, &params, flags) {
                if !modules::load_result_ok(Some(e as i32)) {
                    return Err(format!("{what}: {e}"));
                }
            }
            loaded += 1;
        }
    }
    Ok(loaded)
}

/// With `net=dpdk`, before any module is loaded: every NIC DPDK gets (`musqratt.nic=`, else
/// each virtio-net PCI function) has its `driver_override` set to the configured driver, so
/// no kernel driver (virtio_pci, loaded for the disk, or a NIC driver) binds it
/// (crate::dpdk). Returns the addresses; none is an error with `net=dpdk`.
pub fn claim_nics(cfg: &Config) -> Result<Vec<String>, String> {
    const DEVICES: &str = "/sys/bus/pci/devices";
    if cfg.net != NetMode::Dpdk {
        return Ok(Vec::new());
    }
    let nics = if cfg.nics.is_empty() {
        let entries = fs::read_dir(DEVICES).map_err(|e| format!("read {DEVICES}: {e}"))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let id = |f: &str| {
                fs::read_to_string(dir.join(f))
                    .ok()
                    .and_then(|t| dpdk::parse_id(&t))
            };
            if let (Some(vendor), Some(device)) = (id("vendor"), id("device")) {
                if dpdk::is_virtio_net(vendor, device) {
                    found.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        if found.is_empty() {
            return Err(
                "net=dpdk: no virtio-net PCI device, and no musqratt.nic= naming another".into(),
            );
        }
        found
    } else {
        cfg.nics.clone()
    };
    let driver = cfg.nic_driver.sysfs_name();
    for nic in &nics {
        let path = format!("{DEVICES}/{nic}/driver_override");
        if !Path::new(&format!("{DEVICES}/{nic}")).exists() {
            return Err(format!("net=dpdk: no PCI device {nic} (musqratt.nic=)"));
        }
        fs::write(&path, driver).map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(nics)
}

/// After the modules are loaded: checks that each claimed NIC is under its driver, asking the
/// PCI core to probe it once more if not (the driver was loaded before the override, or
/// probing raced).
pub fn bind_nics(nics: &[String], cfg: &Config) -> Result<(), String> {
    let driver = cfg.nic_driver.sysfs_name();
    let bound = |nic: &str| {
        fs::read_link(format!("/sys/bus/pci/devices/{nic}/driver"))
            .is_ok_and(|l| l.file_name().is_some_and(|n| n == driver))
    };
    for nic in nics {
        if !bound(nic) {
            let _ = fs::write("/sys/bus/pci/drivers_probe", nic);
        }
        if !bound(nic) {
            return Err(format!(
                "PCI {nic} is not bound to {driver} (is it in /etc/modules-load.{}? with vfio-pci: is the IOMMU on?)",
                crate::cmdline::module_list_name(cfg)
            ));
        }
        log(&format!("NIC {nic} handed to {driver} for DPDK"));
    }
    Ok(())
}

/// Writes the broker's configuration for `net=dpdk` (crate::dpdk::CONFIG_PATH).
pub fn write_dpdk_config(text: &str) -> Result<&'static str, String> {
    let path = dpdk::CONFIG_PATH;
    if let Some(dir) = Path::new(path).parent() {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("write {path}: {e}"))?;
    Ok(path)
}

/// Polls `ready` every 20 ms for up to `limit`: a driver's device (the disk node, eth0) may
/// appear a little after its module finished loading.
pub(crate) fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn try_mount_data(dev: &str, fstype: &str) -> MountOutcome {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME;
    match mount(dev, DATA_DIR, fstype, flags, None) {
        Ok(()) => MountOutcome::Mounted,
        Err(e) => MountOutcome::Failed(e as i32),
    }
}

fn head_is_zero(dev: &str) -> Option<bool> {
    let mut head = Vec::with_capacity(disk::BLANK_PROBE_BYTES);
    File::open(dev)
        .and_then(|f| {
            f.take(disk::BLANK_PROBE_BYTES as u64)
                .read_to_end(&mut head)
        })
        .ok()?;
    Some(disk::is_blank(&head))
}

/// Mounts the data disk on /data (creating its filesystem if it is blank). `Ok(None)`: no
/// `musqratt.data`, the broker runs in memory.
pub fn mount_data(cfg: &Config) -> Result<Option<&'static str>, String> {
    let Some(data) = cfg.data.as_deref() else {
        return Ok(None);
    };
    let mut found = None;
    let present = wait_for(Duration::from_secs(5), || {
        found = find_data_device(data);
        found.is_some()
    });
    let dev = match found {
        Some(dev) if present => dev,
        _ => {
            return Err(format!(
            "data disk {data}: no such device after 5 s (is its driver, e.g. virtio_blk, loaded?)"
        ))
        }
    };
    if dev != data {
        log(&format!("data disk {data} is {dev}"));
    }
    let dev = dev.as_str();
    mkdir(DATA_DIR)?;
    let fstype = cfg.fstype.as_str();
    let mut step =
        disk::after_first_mount(try_mount_data(dev, fstype), fstype, || head_is_zero(dev));
    if step == Step::CreateFilesystem {
        log(&format!(
            "data disk {dev} is blank: creating a filesystem ({} -q -F {dev})",
            cfg.mkfs
        ));
        let args = ["-q", "-F", dev].map(String::from);
        let status = run(&cfg.mkfs, &args).map_err(|e| format!("data disk {dev}: {e}"))?;
        if status != ExitStatus::Code(0) {
            return Err(format!("data disk {dev}: {} failed: {status}", cfg.mkfs));
        }
        step = disk::after_mkfs_mount(try_mount_data(dev, fstype), fstype);
    }
    match step {
        Step::Ready => {
            DATA_MOUNTED.store(true, Ordering::SeqCst);
            Ok(Some(DATA_DIR))
        }
        Step::Fail(why) => Err(format!("data disk {dev}: {why}")),
        // after_mkfs_mount never asks for a second mkfs; say so rather than loop or panic.
        Step::CreateFilesystem => Err(format!("data disk {dev}: still blank after mkfs")),
    }
}

/// `musqratt.data=`: a device path, or `PARTLABEL=name` (a GPT partition's name, as the
/// kernel reports it in /sys/class/block/*/uevent: there is no udev for /dev/disk/by-*).
fn find_data_device(data: &str) -> Option<String> {
    let Some(label) = data.strip_prefix("PARTLABEL=") else {
        return Path::new(data).exists().then(|| data.to_string());
    };
    let entries = fs::read_dir("/sys/class/block").ok()?;
    for entry in entries.flatten() {
        let Ok(uevent) = fs::read_to_string(entry.path().join("uevent")) else {
            continue;
        };
        if let Some(name) = disk::partition_named(&uevent, label) {
            let dev = format!("/dev/{name}");
            return Path::new(&dev).exists().then_some(dev);
        }
    }
    None
}

/// The signals init acts on, read through a signalfd so that one poll loop handles them,
/// child exits and the power button without any signal handler.
pub struct Signals(SignalFd);

/// Stop requests: SIGTERM, SIGINT (Ctrl-Alt-Del), SIGPWR and SIGUSR2 (busybox's poweroff).
pub const STOP_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGUSR2,
];

/// Blocks the signals (so they queue until read) and opens the signalfd. Call first thing:
/// a SIGTERM during boot then waits and stops the broker as soon as it runs. Children do not
/// inherit the block: `spawn` clears the mask in the child.
pub fn block_signals() -> Result<Signals, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in STOP_SIGNALS {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("block signals: {e}"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map(Signals)
        .map_err(|e| format!("signalfd: {e}"))
}

impl Signals {
    pub fn fd(&self) -> &SignalFd {
        &self.0
    }

    /// Drains pending signals; returns the stop requests among them (SIGCHLD is implied by
    /// reaping, which the caller does on every wake-up).
    pub fn drain(&self) -> Vec<i32> {
        let mut stops = Vec::new();
        while let Ok(Some(info)) = self.0.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo != Signal::SIGCHLD as i32 {
                stops.push(signo);
            }
        }
        stops
    }
}

/// Every /dev/input/event* device, non-blocking, for the power button (see input.rs).
pub fn open_input_devices() -> Vec<File> {
    let Ok(dir) = fs::read_dir("/dev/input") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter_map(|e| {
            OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                .open(e.path())
                .ok()
        })
        .collect()
}

/// Reads what an input device has; true if the power key was pressed.
pub fn read_power_key(mut dev: &File) -> bool {
    let mut buf = [0u8; crate::input::EVENT_SIZE * 16];
    let mut pressed = false;
    while let Ok(n) = dev.read(&mut buf) {
        if n == 0 {
            break;
        }
        pressed |= crate::input::power_key_pressed(&buf[..n]);
    }
    pressed
}

/// Starts `program` with `args` (argv[0] is the program), our environment, and the console
/// as stdio. Not std's Command: it leaves the child our signal mask, and init blocks SIGTERM
/// (caught by the supervise test: a broker that never dies of SIGTERM). posix_spawn with
/// SETSIGMASK/SETSIGDEF starts the child with nothing blocked and default dispositions.
pub fn spawn(program: &str, args: &[String]) -> Result<Pid, String> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    let cstr = |s: &str| CString::new(s).map_err(|e| format!("start {program}: {e}"));
    let mut argv = vec![cstr(program)?];
    for a in args {
        argv.push(cstr(a)?);
    }
    let env = std::env::vars()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sigdefault = SigSet::empty();
    sigdefault.add(Signal::SIGCHLD);
    for s in STOP_SIGNALS {
        sigdefault.add(s);
    }
    let err = |e: Errno| format!("start {program}: {e}");
    let mut attr = PosixSpawnAttr::init().map_err(err)?;
    attr.set_sigmask(&SigSet::empty()).map_err(err)?;
    attr.set_sigdefault(&sigdefault).map_err(err)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )
    .map_err(err)?;
    let actions = PosixSpawnFileActions::init().map_err(err)?;
    nix::spawn::posix_spawn(program, &actions, &attr, &argv, &env).map_err(err)
}

/// Starts /bin/musqratt with these arguments; its stdout and stderr are ours (the console).
/// The reaper loop collects it like every other child.
pub fn spawn_broker(program: &str, args: &[String]) -> Result<Pid, String> {
    spawn(program, args)
}

/// Runs a program to completion (mkfs, before the supervision loop starts).
fn run(program: &str, args: &[String]) -> Result<ExitStatus, String> {
    let pid = spawn(program, args)?;
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                return Ok(ExitStatus::Signal(sig as i32, core))
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("wait for {program}: {e}")),
        }
    }
}

/// Reaps every exited child (PID 1 inherits orphans); returns the broker's status if it was
/// among them.
pub fn reap(broker: Pid) -> Option<ExitStatus> {
    let mut found = None;
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == broker => {
                found = Some(ExitStatus::Code(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, core)) if pid == broker => {
                found = Some(ExitStatus::Signal(sig as i32, core))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

pub fn send_signal(pid: Pid, sig: Signal) {
    // ESRCH means it is already gone; the reaper reports how it ended.
    let _ = nix::sys::signal::kill(pid, sig);
}

/// Helper for poll: the signalfd and input devices as borrowed fds.
pub fn poll_fds<'a>(signals: &'a Signals, inputs: &[&'a File]) -> Vec<nix::poll::PollFd<'a>> {
    let mut fds = vec![nix::poll::PollFd::new(
        signals.fd().as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    fds.extend(
        inputs
            .iter()
            .map(|&f| nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN)),
    );
    fds
}
