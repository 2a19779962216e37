#include "shim.h"

#include <stdlib.h>
#include <string.h>
#include <lwip/etharp.h>
#include <lwip/tcpip.h>
#include <netif/ethernet.h>

static musq_tx_fn g_tx;

void musq_set_tx(musq_tx_fn tx) { g_tx = tx; }

/* lwIP calls this for every outgoing frame. With LWIP_NETIF_TX_SINGLE_PBUF the TCP path
 * hands over one pbuf; ARP and a header prepended in front of a full pbuf can still be a
 * chain, which is linearised here. */
static err_t musq_linkoutput(struct netif *netif, struct pbuf *p) {
  if (g_tx == NULL) return ERR_IF;
  if (p->next == NULL) {
    g_tx((uintptr_t)netif->state, (const uint8_t *)p->payload, p->len);
    return ERR_OK;
  }
  static uint8_t buf[MUSQ_MAX_FRAME]; /* one lwIP thread: a static buffer is enough */
  if (p->tot_len > sizeof buf) return ERR_BUF;
  uint16_t n = pbuf_copy_partial(p, buf, p->tot_len, 0);
  g_tx((uintptr_t)netif->state, buf, n);
  return ERR_OK;
}

/* netif_add calls the init callback synchronously: these carry its arguments. */
static uint8_t g_init_mac[6];
static uint16_t g_init_mtu;

static err_t musq_netif_init(struct netif *netif) {
  netif->hwaddr_len = 6;
  memcpy(netif->hwaddr, g_init_mac, 6);
  netif->mtu = g_init_mtu;
  netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_IGMP;
  netif->output = etharp_output;
  netif->linkoutput = musq_linkoutput;
  netif->name[0] = 'm';
  netif->name[1] = 'q';
  return ERR_OK;
}

struct netif *musq_netif_add(uintptr_t ctx, const uint8_t mac[6], uint16_t mtu, uint32_t ip,
                             uint32_t mask, uint32_t gw) {
  struct netif *n = calloc(1, sizeof *n);
  if (n == NULL) return NULL;
  ip4_addr_t a, m, g;
  a.addr = ip;
  m.addr = mask;
  g.addr = gw;
  memcpy(g_init_mac, mac, 6);
  g_init_mtu = mtu;
  if (netif_add(n, &a, &m, &g, (void *)ctx, musq_netif_init, ethernet_input) == NULL) {
    free(n);
    return NULL;
  }
  netif_set_up(n);
  netif_set_link_up(n);
  return n;
}

void musq_netif_remove(struct netif *n) {
  netif_remove(n);
  free(n);
}

uint8_t musq_netif_index(const struct netif *n) { return netif_get_index(n); }

/* PBUF_RAM, not PBUF_POOL: in this build (MEMP_MEM_MALLOC) the pool's element size and the
 * PBUF_POOL_BUFSIZE pbuf_alloc assumes disagree, and pbuf_take then writes past the pool
 * element (found with valgrind). One contiguous PBUF_RAM allocation is right and simpler. */
struct pbuf *musq_pbuf_from(const uint8_t *frame, size_t len) {
  if (len == 0 || len > 0xFFFF) return NULL;
  struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_RAM);
  if (p == NULL) return NULL;
  if (pbuf_take(p, frame, (u16_t)len) != ERR_OK) {
    pbuf_free(p);
    return NULL;
  }
  return p;
}

void musq_netif_input(struct netif *n, struct pbuf *p) {
  if (n->input(p, n) != ERR_OK) pbuf_free(p);
}

uint16_t musq_pbuf_tot_len(const struct pbuf *p) { return p->tot_len; }

/* ---- Replacement for the tcpip thread's callback queue ----------------------------------
 * This lwIP is built with NO_SYS=0 and LWIP_NETIF_LOOPBACK=1: a packet an interface sends to
 * its own address goes through netif_loop_output(), which queues it and asks the tcpip
 * thread (tcpip_try_callback) to run netif_poll(). We run no tcpip thread (its mbox is NULL
 * and the library's tcpip_try_callback asserts on that and aborts), so this definition in
 * the executable interposes the library's (liblwip.so calls it through its PLT; it is built
 * without -Bsymbolic). Callbacks are queued and run by the poll loop (musq_run_deferred),
 * i.e. on the one thread that drives lwIP, as lwIP expects. */
#define MUSQ_DEFERRED_MAX 256
static struct {
  tcpip_callback_fn fn;
  void *ctx;
} g_deferred[MUSQ_DEFERRED_MAX];
static size_t g_deferred_len;

err_t tcpip_try_callback(tcpip_callback_fn function, void *ctx) {
  if (g_deferred_len == MUSQ_DEFERRED_MAX) return ERR_MEM;
  g_deferred[g_deferred_len].fn = function;
  g_deferred[g_deferred_len].ctx = ctx;
  g_deferred_len++;
  return ERR_OK;
}

int musq_run_deferred(void) {
  int ran = 0;
  /* A callback may queue more callbacks: run until the queue is empty, bounded per call. */
  while (g_deferred_len > 0 && ran < 4 * MUSQ_DEFERRED_MAX) {
    tcpip_callback_fn fn = g_deferred[0].fn;
    void *ctx = g_deferred[0].ctx;
    g_deferred_len--;
    memmove(&g_deferred[0], &g_deferred[1], g_deferred_len * sizeof g_deferred[0]);
    fn(ctx);
    ran++;
  }
  return ran;
}

void musq_clear_deferred(void) { g_deferred_len = 0; }

/* ---- TCP helpers ------------------------------------------------------------------------ */
struct tcp_pcb *musq_tcp_new4(void) { return tcp_new_ip_type(IPADDR_TYPE_V4); }

err_t musq_tcp_bind4(struct tcp_pcb *pcb, uint32_t ip, uint16_t port) {
  ip_addr_t a;
  ip_addr_set_ip4_u32_val(a, ip);
  return tcp_bind(pcb, &a, port);
}

err_t musq_tcp_connect4(struct tcp_pcb *pcb, uint32_t ip, uint16_t port, tcp_connected_fn cb) {
  ip_addr_t a;
  ip_addr_set_ip4_u32_val(a, ip);
  return tcp_connect(pcb, &a, port, cb);
}

struct tcp_pcb *musq_tcp_listen(struct tcp_pcb *pcb, uint8_t backlog, err_t *err) {
  return tcp_listen_with_backlog_and_err(pcb, backlog, err);
}

void musq_tcp_set_nodelay(struct tcp_pcb *pcb, int on) {
  if (on)
    tcp_nagle_disable(pcb);
  else
    tcp_nagle_enable(pcb);
}

uint32_t musq_tcp_sndbuf(const struct tcp_pcb *pcb) { return tcp_sndbuf(pcb); }

uint32_t musq_tcp_sndqueue_room(const struct tcp_pcb *pcb) {
  u16_t q = tcp_sndqueuelen(pcb);
  return q >= TCP_SND_QUEUELEN ? 0 : (uint32_t)(TCP_SND_QUEUELEN - q);
}

void musq_tcp_addrs(const struct tcp_pcb *pcb, uint32_t *lip, uint16_t *lport, uint32_t *rip,
                    uint16_t *rport) {
  *lip = ip4_addr_get_u32(ip_2_ip4(&pcb->local_ip));
  *lport = pcb->local_port;
  *rip = ip4_addr_get_u32(ip_2_ip4(&pcb->remote_ip));
  *rport = pcb->remote_port;
}

/* Cuts every callback of a pcb we hand back to lwIP (close/abort): lwIP then finishes the
 * connection on its own (tcp_recv_null acknowledges and drops late data). */
void musq_tcp_detach(struct tcp_pcb *pcb) {
  tcp_arg(pcb, NULL);
  tcp_recv(pcb, NULL);
  tcp_sent(pcb, NULL);
  tcp_err(pcb, NULL);
  tcp_poll(pcb, NULL, 0);
}
