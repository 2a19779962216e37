/* Real-function wrappers around DPDK static-inline functions and macros; see shim.h. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim.h"

int musqratt_eal_init_logged(int argc, char **argv, char **log, size_t *log_len, int *err)
{
    *log = NULL;
    *log_len = 0;
    /* rte_eal_init pins the calling thread to the main lcore's CPU; every thread it spawns
     * later would inherit that. Keep the caller's affinity as it was. */
    cpu_set_t before;
    int have_before = pthread_getaffinity_np(pthread_self(), sizeof(before), &before) == 0;
    FILE *f = open_memstream(log, log_len);
    if (f != NULL)
        rte_openlog_stream(f);
    int ret = rte_eal_init(argc, argv);
    *err = rte_errno;
    if (have_before)
        pthread_setaffinity_np(pthread_self(), sizeof(before), &before);
    if (f != NULL) {
        /* Back to DPDK's default stream before closing ours. */
        rte_openlog_stream(NULL);
        fclose(f);
    }
    return ret;
}

void musqratt_free(void *p) { free(p); }

int musqratt_rte_errno(void) { return rte_errno; }

unsigned musqratt_rte_lcore_id(void) { return rte_lcore_id(); }

int musqratt_eth_link_get_nowait(uint16_t port, int *up, uint32_t *speed_mbps)
{
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    int ret = rte_eth_link_get_nowait(port, &link);
    *up = link.link_status == RTE_ETH_LINK_UP;
    *speed_mbps = link.link_speed;
    return ret;
}

uint16_t musqratt_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                   uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t musqratt_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                   uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *musqratt_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
    return rte_pktmbuf_alloc(mp);
}

void musqratt_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void musqratt_rte_pktmbuf_free_bulk(struct rte_mbuf **ms, unsigned n)
{
    rte_pktmbuf_free_bulk(ms, n);
}

const uint8_t *musqratt_rte_pktmbuf_data(const struct rte_mbuf *m)
{
    return rte_pktmbuf_mtod(m, const uint8_t *);
}

uint16_t musqratt_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }

uint32_t musqratt_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }

uint16_t musqratt_rte_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

uint16_t musqratt_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }

const void *musqratt_rte_pktmbuf_read(const struct rte_mbuf *m, uint32_t off, uint32_t len,
                                      void *buf)
{
    return rte_pktmbuf_read(m, off, len, buf);
}

char *musqratt_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
    return rte_pktmbuf_append(m, len);
}

unsigned musqratt_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
    return rte_ring_dequeue_burst(r, objs, n, NULL);
}
