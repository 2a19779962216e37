/*
 * musqratt-dpdk-sys C shim.
 *
 * DPDK implements its hot-path functions (rx/tx burst, mbuf alloc/free/append, ring dequeue)
 * as `static inline` in its headers: they have no symbol in the shared libraries, so bindgen
 * cannot bind them. This file wraps each one we use in a real function. It also wraps a few
 * macros (rte_errno, rte_lcore_id) and the EAL init with its log captured, so that a failure
 * can be reported in one line naming the culprit.
 */
#ifndef MUSQRATT_DPDK_SHIM_H
#define MUSQRATT_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

/* Constants that are macros (some of them expressions bindgen cannot evaluate). */
enum musqratt_consts {
    MUSQRATT_MBUF_DEFAULT_BUF_SIZE = RTE_MBUF_DEFAULT_BUF_SIZE,
    MUSQRATT_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM,
    MUSQRATT_SOCKET_ID_ANY = SOCKET_ID_ANY,
    MUSQRATT_RING_F_SP_ENQ = RING_F_SP_ENQ,
    MUSQRATT_RING_F_SC_DEQ = RING_F_SC_DEQ,
    MUSQRATT_MEMPOOL_NAMESIZE = RTE_MEMPOOL_NAMESIZE,
    MUSQRATT_RING_NAMESIZE = RTE_RING_NAMESIZE,
    MUSQRATT_ETH_NAME_MAX_LEN = RTE_ETH_NAME_MAX_LEN,
    MUSQRATT_MAX_ETHPORTS = RTE_MAX_ETHPORTS,
};

/* rte_eal_init with the DPDK log stream redirected into a heap buffer for the duration of the
 * call. On return *log (NUL-terminated, length *log_len) holds what EAL logged; free it with
 * musqratt_free. *err receives rte_errno as it was right after rte_eal_init. The calling
 * thread's CPU affinity is restored afterwards (rte_eal_init pins it to the main lcore). */
int musqratt_eal_init_logged(int argc, char **argv, char **log, size_t *log_len, int *err);
void musqratt_free(void *p);

int musqratt_rte_errno(void);
unsigned musqratt_rte_lcore_id(void);

/* Link state without exposing the bitfields of struct rte_eth_link. */
int musqratt_eth_link_get_nowait(uint16_t port, int *up, uint32_t *speed_mbps);

uint16_t musqratt_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                   uint16_t n);
uint16_t musqratt_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                   uint16_t n);

struct rte_mbuf *musqratt_rte_pktmbuf_alloc(struct rte_mempool *mp);
void musqratt_rte_pktmbuf_free(struct rte_mbuf *m);
void musqratt_rte_pktmbuf_free_bulk(struct rte_mbuf **ms, unsigned n);
/* rte_pktmbuf_mtod: start of the first segment's data. */
const uint8_t *musqratt_rte_pktmbuf_data(const struct rte_mbuf *m);
uint16_t musqratt_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t musqratt_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t musqratt_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t musqratt_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
/* Returns a pointer to `len` bytes at `off`: inside the mbuf when contiguous, else copied to buf. */
const void *musqratt_rte_pktmbuf_read(const struct rte_mbuf *m, uint32_t off, uint32_t len,
                                      void *buf);
char *musqratt_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);

unsigned musqratt_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);

#endif
