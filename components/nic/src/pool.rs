//! An mbuf pool (`rte_pktmbuf_pool_create`), freed when its last owner is gone.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use musqratt_dpdk_sys as sys;

use crate::eal::{last_rte_error, EalInner};
use crate::error::NicError;

/// Pool names must be unique in the EAL and at most RTE_MEMPOOL_NAMESIZE-1 (25) bytes.
static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

pub(crate) struct Pool {
    ptr: NonNull<sys::rte_mempool>,
    // Dropped after the pool is freed (field order): the EAL outlives its pools.
    _eal: Arc<EalInner>,
}

// SAFETY: rte_pktmbuf_pool_create uses the default "ring_mp_mc" mempool ops, whose get/put are
// multi-producer/multi-consumer safe; the pointer itself is only freed in Drop, once.
unsafe impl Send for Pool {}
// SAFETY: as above: concurrent alloc/free from several threads is what ring_mp_mc supports.
unsafe impl Sync for Pool {}

impl Pool {
    /// `mbufs` buffers of `MBUF_DEFAULT_BUF_SIZE` (2176 bytes: 2048 of data after 128 of
    /// headroom), with a per-lcore cache of `cache` (only EAL threads use the cache).
    pub(crate) fn create(
        eal: &Arc<EalInner>,
        what: &str,
        mbufs: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Arc<Pool>, NicError> {
        let name = format!("mq_pool{}", POOL_SEQ.fetch_add(1, Ordering::Relaxed));
        let c_name = CString::new(name).expect("no NUL in a formatted name");
        // SAFETY: the EAL is initialised (eal proves it); c_name is a valid C string that
        // DPDK copies; the other arguments are plain integers DPDK validates itself.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                mbufs,
                cache,
                0,
                sys::MUSQRATT_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Arc::new(Pool {
                ptr,
                _eal: eal.clone(),
            })),
            None => Err(NicError::Port {
                port: what.to_owned(),
                op: "rte_pktmbuf_pool_create",
                reason: format!("{} ({mbufs} mbufs, cache {cache})", last_rte_error()),
            }),
        }
    }

    /// mbufs free in the pool (including those in per-lcore caches).
    pub(crate) fn available(&self) -> u32 {
        // SAFETY: the pool is alive; the count only reads its ring and cache counters.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the pool was created by rte_pktmbuf_pool_create and this is its last owner:
        // every port using it is closed (ports hold an Arc) and ring pairs drain their rings
        // before they release their Arc, so no mbuf of this pool is referenced any more.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
