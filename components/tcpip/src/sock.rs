//! The loop's side of one stream: moving bytes between the socket's shared buffers and
//! lwIP (phase 2 of an iteration, the only place data-path lwIP calls happen).
use std::collections::VecDeque;
use std::sync::Arc;

use crate::lwip::{self, Pbuf, Pcb};
use crate::shared::{StreamShared, StreamState};

/// The loop's side of a stream.
pub(crate) struct Sock {
    pub(crate) shared: Arc<StreamShared>,
    /// Null once lwIP freed it or we handed it back (close/abort).
    pub(crate) pcb: Pcb,
    /// Data lwIP delivered that did not fit the rx buffer yet (bounded by lwIP's window,
    /// since only consumed bytes are acknowledged with tcp_recved).
    pub(crate) pending: VecDeque<Pbuf>,
    pub(crate) pending_off: usize,
    pub(crate) fin_pending: bool,
    pub(crate) wr_done: bool,
    pub(crate) nodelay: bool,
    pub(crate) queued: bool,
}

/// Moves data between the socket's shared buffers and lwIP; returns true when the loop is
/// done with the socket (closed and its handle dropped).
pub(crate) fn service_one(s: &mut Sock) -> bool {
    let shared = s.shared.clone();
    shared.update(|st| {
        if s.pcb.is_null() {
            // Connection gone: deliver what lwIP handed us (after a clean close, data the
            // application has not read yet), then wait for the handle drop.
            if fill_rx(s, st, None) {
                if s.fin_pending {
                    st.peer_fin = true;
                }
                st.closed = true;
            }
            return st.close_requested;
        }
        let pcb = s.pcb;
        if st.abort_requested {
            lwip::abort(pcb);
            s.pcb = std::ptr::null_mut();
            for p in s.pending.drain(..) {
                lwip::pbuf_free(p);
            }
            s.fin_pending = false;
            st.closed = true;
            st.rx.clear();
            st.tx.clear();
            return st.close_requested;
        }
        if st.nodelay != s.nodelay {
            lwip::set_nodelay(pcb, st.nodelay);
            s.nodelay = st.nodelay;
        }
        // rx: acknowledge consumed bytes, then refill the buffer from pending pbufs.
        if st.consumed > 0 {
            lwip::recved(pcb, st.consumed);
            st.consumed = 0;
        }
        fill_rx(s, st, Some(pcb));
        if s.fin_pending && s.pending.is_empty() {
            st.peer_fin = true;
        }
        // tx: as much as lwIP takes (tx buffer → lwIP copy).
        let mut wrote = false;
        if st.connected && !s.wr_done {
            loop {
                let room = lwip::send_room(pcb).min(u16::MAX as usize);
                let (a, b) = st.tx.readable();
                if room == 0 || a.is_empty() {
                    break;
                }
                let n = a.len().min(room);
                let more = n < a.len() + b.len();
                if lwip::write(pcb, &a[..n], more) != lwip::ERR_OK {
                    break; // ERR_MEM: retried on the next `sent` callback
                }
                st.tx.consume(n);
                wrote = true;
            }
        }
        // close / shutdown once everything buffered went to lwIP
        let mut gone = false;
        if st.close_requested && (!st.rx.is_empty() || !s.pending.is_empty()) {
            // Unread input at close: RST, like Linux.
            lwip::abort(pcb);
            s.pcb = std::ptr::null_mut();
            st.closed = true;
            return true;
        }
        if st.tx.is_empty() && st.close_requested {
            {
                if wrote {
                    lwip::output(pcb);
                    wrote = false;
                }
                // On failure (out of memory) the close is retried on the next event.
                if lwip::close(pcb, shared.id).is_ok() {
                    s.pcb = std::ptr::null_mut();
                    st.closed = true;
                    gone = true;
                }
            }
        } else if st.tx.is_empty()
            && st.shut_wr
            && st.connected
            && !s.wr_done
            && lwip::shutdown_tx(pcb) == lwip::ERR_OK
        {
            s.wr_done = true;
            wrote = true;
        }
        if wrote {
            lwip::output(pcb);
        }
        gone
    })
}

/// Moves pending pbufs into the rx buffer as far as it has room (or discards them after
/// shutdown(Read), acknowledging them while the pcb lives); true when none is left.
fn fill_rx(s: &mut Sock, st: &mut StreamState, pcb: Option<Pcb>) -> bool {
    while let Some(&p) = s.pending.front() {
        let total = lwip::pbuf_len(p);
        if st.shut_rd {
            if let Some(pcb) = pcb {
                lwip::recved(pcb, total - s.pending_off);
            }
        } else {
            while s.pending_off < total {
                let dst = st.rx.writable(total - s.pending_off);
                if dst.is_empty() {
                    break;
                }
                let n = lwip::pbuf_copy(p, dst, s.pending_off);
                if n == 0 {
                    break;
                }
                st.rx.commit(n);
                s.pending_off += n;
            }
            if s.pending_off < total {
                break; // rx buffer full: the rest waits for the application
            }
        }
        lwip::pbuf_free(p);
        s.pending.pop_front();
        s.pending_off = 0;
    }
    s.pending.is_empty()
}
