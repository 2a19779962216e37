/* C shim over lwIP 2.1.3: the macros, static inlines and struct fields the Rust side needs,
 * the netif glue (init callback, link-output trampoline) and the deferred-callback queue
 * that replaces lwIP's tcpip thread. IPv4 addresses cross this boundary as u32 in network
 * byte order (exactly ip4_addr_t.addr). */
#ifndef MUSQ_LWIP_SHIM_H
#define MUSQ_LWIP_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <lwip/init.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/tcp.h>
#include <lwip/timeouts.h>

/* Largest frame the link-output trampoline will linearise (jumbo frames included). */
#define MUSQ_MAX_FRAME 9216

/* Called for every frame lwIP transmits; ctx is the value given to musq_netif_add. */
typedef void (*musq_tx_fn)(uintptr_t ctx, const uint8_t *frame, size_t len);

void musq_set_tx(musq_tx_fn tx);
struct netif *musq_netif_add(uintptr_t ctx, const uint8_t mac[6], uint16_t mtu, uint32_t ip,
                             uint32_t mask, uint32_t gw);
void musq_netif_remove(struct netif *n);
uint8_t musq_netif_index(const struct netif *n);
struct pbuf *musq_pbuf_from(const uint8_t *frame, size_t len);
void musq_netif_input(struct netif *n, struct pbuf *p);
uint16_t musq_pbuf_tot_len(const struct pbuf *p);

int musq_run_deferred(void);
void musq_clear_deferred(void);

struct tcp_pcb *musq_tcp_new4(void);
err_t musq_tcp_bind4(struct tcp_pcb *pcb, uint32_t ip, uint16_t port);
err_t musq_tcp_connect4(struct tcp_pcb *pcb, uint32_t ip, uint16_t port, tcp_connected_fn cb);
struct tcp_pcb *musq_tcp_listen(struct tcp_pcb *pcb, uint8_t backlog, err_t *err);
void musq_tcp_set_nodelay(struct tcp_pcb *pcb, int on);
uint32_t musq_tcp_sndbuf(const struct tcp_pcb *pcb);
uint32_t musq_tcp_sndqueue_room(const struct tcp_pcb *pcb);
void musq_tcp_addrs(const struct tcp_pcb *pcb, uint32_t *lip, uint16_t *lport, uint32_t *rip,
                    uint16_t *rport);
void musq_tcp_detach(struct tcp_pcb *pcb);

#endif
