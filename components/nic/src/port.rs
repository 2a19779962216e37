//! An ethdev port with one rx and one tx queue: set-up, rx/tx bursts, link and statistics.
//!
//! Thread-safety: a `Port` is `Send` (open it on one thread, move it to the poll thread) but
//! not `Sync`: DPDK's queue functions are not thread-safe per queue, so one thread at a time
//! uses a port, which `&mut self` on rx/tx enforces.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::{Arc, Mutex};

use musqratt_dpdk_sys as sys;

use crate::eal::{rte_strerror, Eal, EalInner};
use crate::error::NicError;
use crate::pool::Pool;
use crate::ring::RingPairShared;

/// Frames per rx burst and per tx batch.
pub const BURST: usize = 32;
/// tx_burst calls per flush before what the NIC still refuses is dropped (and counted).
const TX_ATTEMPTS: u32 = 8;
/// Largest multi-segment frame rx copies into its scratch buffer (jumbo 9000 + headers).
const RX_SCRATCH: usize = 9728;

/// DPDK's control path (configure, queue set-up, start/stop/close, vdev create/remove) is not
/// thread-safe; `Eal` is shared between threads, so every such sequence holds this lock.
static CONTROL: Mutex<()> = Mutex::new(());

pub(crate) fn control_lock() -> std::sync::MutexGuard<'static, ()> {
    CONTROL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ports open in this process: a second `Port` on the same queues would race in DPDK.
static OPEN_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Port set-up parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// rx descriptors (adjusted to the device's limits by DPDK).
    pub rx_descriptors: u16,
    /// tx descriptors (adjusted to the device's limits by DPDK).
    pub tx_descriptors: u16,
    /// mbufs in the port's pool; must cover both rings plus bursts in flight.
    pub mbufs: u32,
    /// per-lcore mempool cache (used by EAL threads only).
    pub mbuf_cache: u32,
    /// Receive frames for any MAC address.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mbufs: 8191,
            mbuf_cache: 256,
            promiscuous: false,
        }
    }
}

/// Which port to open: by device name ("net_af_packet0", "net_ring0", "0000:01:00.0") or id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRef<'a> {
    /// ethdev name.
    Name(&'a str),
    /// ethdev port id.
    Id(u16),
}

impl<'a> From<&'a str> for PortRef<'a> {
    fn from(s: &'a str) -> Self {
        PortRef::Name(s)
    }
}
impl<'a> From<&'a String> for PortRef<'a> {
    fn from(s: &'a String) -> Self {
        PortRef::Name(s)
    }
}
impl From<u16> for PortRef<'_> {
    fn from(id: u16) -> Self {
        PortRef::Id(id)
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Carrier up.
    pub up: bool,
    /// Speed in Mbit/s as the driver reports it (0 when unknown).
    pub speed_mbps: u32,
}

/// Counters of the port (DPDK's `rte_eth_stats`) plus this component's own drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC: rx queue full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// rx failed for want of an mbuf.
    pub rx_nombuf: u64,
    /// Frames `flush` gave up on after the NIC refused them `TX_ATTEMPTS` times.
    pub tx_dropped: u64,
    /// Multi-segment frames longer than the rx scratch buffer (9728 bytes), dropped.
    pub rx_dropped: u64,
}

/// An open, started port. Drop stops and closes it, then frees its pool.
pub struct Port {
    id: u16,
    name: String,
    started: bool,
    /// True while `set_up` runs (its caller holds the control lock).
    in_set_up: bool,
    rx: [*mut sys::rte_mbuf; BURST],
    tx: [*mut sys::rte_mbuf; BURST],
    tx_len: usize,
    scratch: Vec<u8>,
    tx_dropped: u64,
    rx_dropped: u64,
    /// Set for ports whose PMD has no MAC of its own (ring pairs), see `ring_pair`.
    mac_override: Option<[u8; 6]>,
    /// Ring-pair ports are virtual devices we created: removed again after close, so that
    /// their names can be used again.
    vdev_to_remove: Option<CString>,
    // Drop order matters (fields drop top to bottom, after Drop::drop closed the port): the
    // ring pair drains its rings into the pool before the pool goes, the claim is released
    // once the port is closed, and the EAL goes last.
    _rings: Option<Arc<RingPairShared>>,
    pool: Arc<Pool>,
    _claim: Claim,
    _eal: Arc<EalInner>,
}

// SAFETY: the raw mbuf pointers are owned by this Port alone (taken from rx or allocated for tx,
// never shared), the pool is Send + Sync, and DPDK's rx/tx burst may be called from any thread
// as long as one thread at a time uses a queue: `Port` is not Sync and its queue methods take
// `&mut self`.
unsafe impl Send for Port {}

impl Port {
    /// Opens a port found by name or id: its own mbuf pool, 1 rx + 1 tx queue, optional
    /// promiscuous mode, started. The port must not be open already in this process.
    pub fn open<'a>(
        eal: &Eal,
        port: impl Into<PortRef<'a>>,
        config: PortConfig,
    ) -> Result<Port, NicError> {
        let port = port.into();
        let _control = control_lock();
        let (id, name) = resolve(port).map_err(|e| match (&e, port) {
            (NicError::PortNotFound(_), PortRef::Name(n)) => {
                eal.inner.device_failure(n).unwrap_or(e)
            }
            _ => e,
        })?;
        let claim = Claim::take(id, &name)?;
        // SAFETY: id is a valid port (resolve checked it); the call only reads its data.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) }.max(sys::MUSQRATT_SOCKET_ID_ANY);
        let pool = Pool::create(&eal.inner, &name, config.mbufs, config.mbuf_cache, socket)?;
        Port::set_up(&eal.inner, id, name, claim, pool, None, &config)
    }

    /// Configures and starts `id` on `pool`; shared by `open` and `ring_pair`. `rings` is set
    /// for a ring-pair port, which is also a virtual device we created and remove on drop.
    pub(crate) fn set_up(
        eal: &Arc<EalInner>,
        id: u16,
        name: String,
        claim: Claim,
        pool: Arc<Pool>,
        rings: Option<Arc<RingPairShared>>,
        config: &PortConfig,
    ) -> Result<Port, NicError> {
        let vdev_to_remove = rings
            .as_ref()
            .and_then(|_| CString::new(name.as_str()).ok());
        let mut port = Port {
            id,
            name,
            started: false,
            in_set_up: true,
            rx: [std::ptr::null_mut(); BURST],
            tx: [std::ptr::null_mut(); BURST],
            tx_len: 0,
            scratch: vec![0; RX_SCRATCH],
            tx_dropped: 0,
            rx_dropped: 0,
            mac_override: None,
            vdev_to_remove,
            _rings: rings,
            pool,
            _claim: claim,
            _eal: eal.clone(),
        };
        // From here a failure drops `port`, which stops (if started) and closes the device.
        let conf = sys::rte_eth_conf::default();
        // SAFETY: valid port id; conf is a zeroed rte_eth_conf (DPDK's documented default,
        // what `memset(&conf, 0, ...)` gives in C) that DPDK only reads.
        port.check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(id, 1, 1, &conf)
        })?;
        let (mut nb_rx, mut nb_tx) = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: valid port id; the two pointers are valid locals DPDK updates in place.
        port.check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx)
        })?;
        // SAFETY: valid port id, read-only query.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 {
            sys::MUSQRATT_SOCKET_ID_ANY
        } else {
            socket
        } as u32;
        // SAFETY: port configured with 1 rx queue; rx_conf NULL means the driver's defaults;
        // the pool outlives the queue (Port holds the Arc and closes the port in Drop first).
        port.check("rte_eth_rx_queue_setup", unsafe {
            sys::rte_eth_rx_queue_setup(id, 0, nb_rx, socket, std::ptr::null(), port.pool.as_ptr())
        })?;
        // SAFETY: port configured with 1 tx queue; tx_conf NULL means the driver's defaults.
        port.check("rte_eth_tx_queue_setup", unsafe {
            sys::rte_eth_tx_queue_setup(id, 0, nb_tx, socket, std::ptr::null())
        })?;
        // SAFETY: queues are set up; starting a configured port has no other precondition.
        port.check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(id) })?;
        port.started = true;
        if config.promiscuous {
            // SAFETY: valid, started port.
            port.check("rte_eth_promiscuous_enable", unsafe {
                sys::rte_eth_promiscuous_enable(id)
            })?;
        }
        port.in_set_up = false;
        Ok(port)
    }

    fn check(&self, op: &'static str, ret: i32) -> Result<(), NicError> {
        if ret < 0 {
            Err(NicError::Port {
                port: self.name.clone(),
                op,
                reason: rte_strerror(-ret),
            })
        } else {
            Ok(())
        }
    }

    /// The ethdev port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Receives up to [`BURST`] frames and calls `f` with each frame's bytes, borrowed from the
    /// mbuf (no copy for single-segment frames; multi-segment ones are copied into a scratch
    /// buffer, or dropped and counted in `rx_dropped` above 9728 bytes). The mbufs are freed
    /// after the burst, also if `f` panics. Returns the number of frames received.
    pub fn rx_burst(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        // SAFETY: started port, queue 0 exists; self.rx has room for BURST pointers.
        let n = unsafe {
            sys::musqratt_rte_eth_rx_burst(self.id, 0, self.rx.as_mut_ptr(), BURST as u16)
        } as usize;
        let guard = FreeOnDrop(&self.rx[..n.min(BURST)]);
        for &m in guard.0 {
            // SAFETY: m is an mbuf rx_burst just handed to us, not yet freed (the guard frees
            // them all only after this loop); reading its header fields is valid.
            let (segs, data_len, pkt_len) = unsafe {
                (
                    sys::musqratt_rte_pktmbuf_nb_segs(m),
                    sys::musqratt_rte_pktmbuf_data_len(m),
                    sys::musqratt_rte_pktmbuf_pkt_len(m),
                )
            };
            if segs <= 1 {
                // SAFETY: a single-segment mbuf holds data_len contiguous bytes at mtod; the
                // slice lives only during `f`, before the guard frees the mbuf.
                let frame = unsafe {
                    std::slice::from_raw_parts(sys::musqratt_rte_pktmbuf_data(m), data_len as usize)
                };
                f(frame);
            } else if pkt_len as usize <= self.scratch.len() {
                // SAFETY: pkt_len bytes fit in scratch; rte_pktmbuf_read copies the segments
                // there and returns scratch (or the mbuf data if contiguous); either stays
                // valid during `f`.
                let frame = unsafe {
                    let p = sys::musqratt_rte_pktmbuf_read(
                        m,
                        0,
                        pkt_len,
                        self.scratch.as_mut_ptr().cast(),
                    );
                    (!p.is_null())
                        .then(|| std::slice::from_raw_parts(p.cast::<u8>(), pkt_len as usize))
                };
                match frame {
                    Some(frame) => f(frame),
                    None => self.rx_dropped += 1,
                }
            } else {
                self.rx_dropped += 1;
            }
        }
        n
    }

    /// Copies `frame` into a fresh mbuf and queues it; the batch is flushed when it reaches
    /// [`BURST`] frames. False when no mbuf is free, or the frame is empty or larger than one
    /// mbuf's data room (2048 bytes).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        if self.tx_len == BURST {
            self.flush();
        }
        // SAFETY: the pool is alive (held by self).
        let m = unsafe { sys::musqratt_rte_pktmbuf_alloc(self.pool.as_ptr()) };
        if m.is_null() {
            return false;
        }
        // SAFETY: m is a fresh mbuf we own; append returns NULL or a pointer to len writable
        // bytes inside it, which cannot overlap `frame` (a Rust slice not in the pool).
        unsafe {
            let dst = sys::musqratt_rte_pktmbuf_append(m, len);
            if dst.is_null() {
                sys::musqratt_rte_pktmbuf_free(m);
                return false;
            }
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst.cast::<u8>(), frame.len());
        }
        self.tx[self.tx_len] = m;
        self.tx_len += 1;
        if self.tx_len == BURST {
            self.flush();
        }
        true
    }

    /// Frames queued by `send` and not yet flushed.
    pub fn pending(&self) -> usize {
        self.tx_len
    }

    /// Hands the queued frames to the NIC, retrying a bounded number of times while its tx
    /// queue is full; what it still refuses is freed and counted in `tx_dropped`. Returns the
    /// number of frames the NIC took.
    pub fn flush(&mut self) -> usize {
        let len = self.tx_len;
        let mut sent = 0;
        let mut attempts = 0;
        while sent < len && attempts < TX_ATTEMPTS {
            // SAFETY: started port, queue 0 exists; tx[sent..len] are mbufs we own; those the
            // driver takes become its to free.
            sent += unsafe {
                sys::musqratt_rte_eth_tx_burst(
                    self.id,
                    0,
                    self.tx.as_mut_ptr().add(sent),
                    (len - sent) as u16,
                )
            } as usize;
            attempts += 1;
        }
        if sent < len {
            drop(FreeOnDrop(&self.tx[sent..len]));
            self.tx_dropped += (len - sent) as u64;
        }
        self.tx_len = 0;
        sent
    }

    pub(crate) fn set_mac_override(&mut self, mac: [u8; 6]) {
        self.mac_override = Some(mac);
    }

    /// The port's MAC address (for a `ring_pair` port the locally administered one the pair
    /// assigned: DPDK gives ring ports an all-zero MAC).
    pub fn mac(&self) -> [u8; 6] {
        if let Some(mac) = self.mac_override {
            return mac;
        }
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: valid port id; addr is a valid out-parameter.
        unsafe { sys::rte_eth_macaddr_get(self.id, &mut addr) };
        addr.addr_bytes
    }

    /// The port's MTU (DPDK's stored value; only fails for an invalid port id, which an open
    /// `Port` never has).
    pub fn mtu(&self) -> u16 {
        let mut mtu = 0u16;
        // SAFETY: valid port id; mtu is a valid out-parameter.
        unsafe { sys::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        mtu
    }

    /// Link state without waiting for auto-negotiation.
    pub fn link(&self) -> Link {
        let (mut up, mut speed) = (0, 0u32);
        // SAFETY: valid port id; out-parameters are valid locals.
        unsafe { sys::musqratt_eth_link_get_nowait(self.id, &mut up, &mut speed) };
        Link {
            up: up != 0,
            // RTE_ETH_SPEED_NUM_UNKNOWN is u32::MAX.
            speed_mbps: if speed == u32::MAX { 0 } else { speed },
        }
    }

    /// mbufs free in the port's pool (shared by both ports of a ring pair). The driver keeps
    /// some in its rx descriptors; a count that keeps falling means mbufs leak.
    pub fn mbufs_available(&self) -> u32 {
        self.pool.available()
    }

    /// The port's counters.
    pub fn stats(&self) -> PortStats {
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: valid port id; st is a valid out-parameter.
        unsafe { sys::rte_eth_stats_get(self.id, &mut st) };
        PortStats {
            ipackets: st.ipackets,
            opackets: st.opackets,
            ibytes: st.ibytes,
            obytes: st.obytes,
            imissed: st.imissed,
            ierrors: st.ierrors,
            oerrors: st.oerrors,
            rx_nombuf: st.rx_nombuf,
            tx_dropped: self.tx_dropped,
            rx_dropped: self.rx_dropped,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.started {
            self.flush();
        }
        // Not held while a failed `set_up` drops its port: `open` / `ring_pair` hold it then.
        let _control = (!self.in_set_up).then(control_lock);
        if self.started {
            // SAFETY: valid, started port, used by no one else (we own it).
            unsafe { sys::rte_eth_dev_stop(self.id) };
        }
        // SAFETY: valid port; closing releases its queues (the driver frees the mbufs they
        // hold into our pool, which is still alive: fields drop after this body).
        unsafe { sys::rte_eth_dev_close(self.id) };
        if let Some(vdev) = &self.vdev_to_remove {
            // SAFETY: vdev names a virtual device we created (rte_eth_from_rings); its port is
            // closed and released, so the driver's remove finds no port and frees the device.
            unsafe { sys::rte_vdev_uninit(vdev.as_ptr()) };
        }
    }
}

/// Frees a run of mbufs when dropped (also on unwind out of a caller's closure).
struct FreeOnDrop<'a>(&'a [*mut sys::rte_mbuf]);

impl Drop for FreeOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            // SAFETY: the slice holds mbufs this Port owns and nothing else references them
            // after this point (rx slices given to closures have ended).
            unsafe {
                sys::musqratt_rte_pktmbuf_free_bulk(
                    self.0.as_ptr() as *mut *mut sys::rte_mbuf,
                    self.0.len() as u32,
                )
            };
        }
    }
}

/// Marks a port id as open in this process until dropped.
pub(crate) struct Claim(u16);

impl Claim {
    pub(crate) fn take(id: u16, name: &str) -> Result<Claim, NicError> {
        let mut open = OPEN_PORTS.lock().unwrap_or_else(|p| p.into_inner());
        if !open.get_or_insert_with(HashSet::new).insert(id) {
            return Err(NicError::PortBusy(name.to_owned()));
        }
        Ok(Claim(id))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut open = OPEN_PORTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = open.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Port id and name of a `PortRef`.
fn resolve(port: PortRef<'_>) -> Result<(u16, String), NicError> {
    match port {
        PortRef::Name(name) => {
            let c_name = CString::new(name).map_err(|_| NicError::PortNotFound(name.into()))?;
            let mut id = 0u16;
            // SAFETY: c_name is a valid C string; id a valid out-parameter.
            let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
            if ret < 0 {
                return Err(NicError::PortNotFound(name.into()));
            }
            Ok((id, name.to_owned()))
        }
        PortRef::Id(id) => {
            // SAFETY: any id may be asked about.
            if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
                return Err(NicError::PortNotFound(format!("id {id}")));
            }
            let mut buf = [0 as c_char; sys::MUSQRATT_ETH_NAME_MAX_LEN as usize];
            // SAFETY: valid port; buf has RTE_ETH_NAME_MAX_LEN bytes as the API requires.
            let ret = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
            let name = if ret == 0 {
                // SAFETY: DPDK wrote a NUL-terminated name into buf.
                unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            } else {
                format!("port{id}")
            };
            Ok((id, name))
        }
    }
}
