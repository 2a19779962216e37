//! Two ports joined by two `rte_ring`s (`rte_eth_from_rings`): what A sends B receives and the
//! other way round. An in-process "wire" for tests without any network namespace.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use musqratt_dpdk_sys as sys;

use crate::eal::{last_rte_error, Eal};
use crate::error::NicError;
use crate::pool::Pool;
use crate::port::{control_lock, Claim, Port, PortConfig};

/// Slots per ring (a power of two; one slot stays empty, so 1023 frames in flight).
const RING_SLOTS: u32 = 1024;
/// Longest `name` for a ring pair: rte_eth_from_rings names the device "net_ring_NAME_a" in a
/// buffer of RTE_RING_NAMESIZE (29 with the NUL).
const MAX_NAME: usize = 16;
/// Numbers ring pairs for their MAC addresses.
static PAIR_SEQ: AtomicU16 = AtomicU16::new(1);

/// The two rings and the pool their mbufs come from. Both ports hold it; the last one to close
/// frees the mbufs still in flight, then the rings, then (by dropping its Arc) the pool.
pub(crate) struct RingPairShared {
    ab: NonNull<sys::rte_ring>,
    ba: NonNull<sys::rte_ring>,
    _pool: Arc<Pool>,
}

// SAFETY: the rings are only touched by the ring PMD through the two ports (each used by one
// thread at a time) and by Drop, which runs after both ports are closed.
unsafe impl Send for RingPairShared {}
// SAFETY: RingPairShared offers no method; shared references cannot touch the rings.
unsafe impl Sync for RingPairShared {}

impl Drop for RingPairShared {
    fn drop(&mut self) {
        for ring in [self.ab, self.ba] {
            let mut objs = [std::ptr::null_mut::<std::ffi::c_void>(); 64];
            loop {
                // SAFETY: both ports are closed, so nobody else uses the ring; objs has room
                // for 64 pointers.
                let n = unsafe {
                    sys::musqratt_rte_ring_dequeue_burst(ring.as_ptr(), objs.as_mut_ptr(), 64)
                };
                if n == 0 {
                    break;
                }
                // SAFETY: the ring PMD enqueues only mbufs of our pool (still alive: _pool
                // drops after this body); each was sent and never received, so we own it.
                unsafe {
                    sys::musqratt_rte_pktmbuf_free_bulk(objs.as_mut_ptr().cast(), n);
                }
            }
            // SAFETY: created by rte_ring_create, empty, referenced by no port any more.
            unsafe { sys::rte_ring_free(ring.as_ptr()) };
        }
    }
}

/// Creates ports "net_ring_NAME_a" and "net_ring_NAME_b" over two rings, set up with
/// `PortConfig::default()` and one shared pool. `name` is 1..=16 ASCII letters, digits or '_',
/// unique among the pairs alive in the process (reusable once a pair is dropped).
pub fn ring_pair(eal: &Eal, name: &str) -> Result<(Port, Port), NicError> {
    ring_pair_with(eal, name, &PortConfig::default())
}

/// `ring_pair` with explicit port parameters (`config.mbufs` sizes the one pool both share).
pub fn ring_pair_with(
    eal: &Eal,
    name: &str,
    config: &PortConfig,
) -> Result<(Port, Port), NicError> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(NicError::Config(format!(
            "ring pair name {name:?}: 1..={MAX_NAME} ASCII letters, digits or '_'"
        )));
    }
    let control = control_lock();
    // SAFETY: rte_socket_id reads a thread-local; valid after EAL init.
    let socket = unsafe { sys::rte_socket_id() } as i32;
    let pool = Pool::create(&eal.inner, name, config.mbufs, config.mbuf_cache, socket)?;
    let ab = create_ring(&format!("{name}_ab"), socket)?;
    let ba = match create_ring(&format!("{name}_ba"), socket) {
        Ok(r) => r,
        Err(e) => {
            // SAFETY: ab was just created and is used by nothing.
            unsafe { sys::rte_ring_free(ab.as_ptr()) };
            return Err(e);
        }
    };
    let shared = Arc::new(RingPairShared {
        ab,
        ba,
        _pool: pool.clone(),
    });
    // A sends on ab and receives on ba; B the other way round.
    // A finished port's Drop takes the control lock: release it before dropping `a` on error.
    let mut a = ring_port(eal, &format!("{name}_a"), ba, ab, &pool, &shared, config)?;
    let mut b = match ring_port(eal, &format!("{name}_b"), ab, ba, &pool, &shared, config) {
        Ok(b) => b,
        Err(e) => {
            drop(control);
            drop(a);
            return Err(e);
        }
    };
    drop(control);
    // rte_eth_from_rings ports have an all-zero MAC and the ring PMD cannot set one; a stack
    // on each end needs distinct addresses, so the pair assigns locally administered ones
    // (02:6d:71 = "mq", then a pair number and 0a / 0b). The ring does not filter by MAC.
    let seq = PAIR_SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    a.set_mac_override([0x02, 0x6d, 0x71, seq[0], seq[1], 0x0a]);
    b.set_mac_override([0x02, 0x6d, 0x71, seq[0], seq[1], 0x0b]);
    Ok((a, b))
}

fn create_ring(name: &str, socket: i32) -> Result<NonNull<sys::rte_ring>, NicError> {
    let c_name = CString::new(name).expect("validated name has no NUL");
    // Single producer / single consumer: each ring has one sending and one receiving port,
    // and a port is used by one thread at a time.
    let flags = (sys::MUSQRATT_RING_F_SP_ENQ | sys::MUSQRATT_RING_F_SC_DEQ) as u32;
    // SAFETY: EAL initialised (the caller holds an Eal); c_name valid; DPDK copies it.
    let ring = unsafe { sys::rte_ring_create(c_name.as_ptr(), RING_SLOTS, socket, flags) };
    NonNull::new(ring).ok_or_else(|| NicError::Port {
        port: name.to_owned(),
        op: "rte_ring_create",
        reason: last_rte_error(),
    })
}

fn ring_port(
    eal: &Eal,
    name: &str,
    rx: NonNull<sys::rte_ring>,
    tx: NonNull<sys::rte_ring>,
    pool: &Arc<Pool>,
    shared: &Arc<RingPairShared>,
    config: &PortConfig,
) -> Result<Port, NicError> {
    let c_name = CString::new(name).expect("validated name has no NUL");
    let rx_rings = [rx.as_ptr()];
    let tx_rings = [tx.as_ptr()];
    // SAFETY: the arrays hold one live ring each, which outlive the port (it holds `shared`);
    // DPDK copies the name.
    let id = unsafe {
        sys::rte_eth_from_rings(
            c_name.as_ptr(),
            rx_rings.as_ptr(),
            1,
            tx_rings.as_ptr(),
            1,
            sys::rte_socket_id(),
        )
    };
    let id = u16::try_from(id).map_err(|_| NicError::Port {
        port: name.to_owned(),
        op: "rte_eth_from_rings",
        reason: last_rte_error(),
    })?;
    // rte_eth_from_rings registers a virtual device "net_ring_NAME"; that is the port's name.
    let dev_name = format!("net_ring_{name}");
    let claim = Claim::take(id, &dev_name)?;
    Port::set_up(
        &eal.inner,
        id,
        dev_name,
        claim,
        pool.clone(),
        Some(shared.clone()),
        config,
    )
}
