//! The publisher and subscriber loops, one thread per connection over plain
//! blocking std sockets. Publishers write pre-encoded batches (one `write` per
//! batch); subscribers read into a 1 MiB buffer and answer all the acks of one
//! read with one `write`.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musqratt_codec::{Packet, QoS};

use crate::proto::{self, ack, now_ns, Batch, Conn, Frame};
use crate::slices::Slices;
use crate::stats::{Histogram, SeqTracker};

/// How long a blocking call may wait before the loop looks at the clock.
const TICK: Duration = Duration::from_millis(20);

pub struct PubCfg {
    pub publisher: u32,
    pub topic: String,
    pub qos: QoS,
    pub payload: usize,
    /// QoS 1/2: packets sent and not yet acknowledged (PUBACK / PUBCOMP).
    pub inflight: usize,
    /// Messages per batch (one write each) for QoS 0.
    pub batch: usize,
    /// A fixed rate for this publisher; None = as fast as TCP takes them.
    pub pace: Option<Pace>,
    pub start: Instant,
    /// No new message after this instant.
    pub stop: Instant,
    /// QoS 1/2: give up waiting for outstanding acks after this instant.
    pub give_up: Instant,
}

/// A paced publisher's schedule (the latency scenario).
#[derive(Clone, Copy)]
pub struct Pace {
    /// Messages per second.
    pub rate: f64,
    /// Publish only in this process's time slices (interleaved runs of two
    /// brokers, see `slices.rs`).
    pub slices: Option<Slices>,
}

#[derive(Default)]
pub struct PubResult {
    pub sent: u64,
    pub acked: u64,
    pub error: Option<String>,
}

pub fn publisher(mut conn: Conn, cfg: PubCfg) -> PubResult {
    let mut r = PubResult::default();
    let wait = cfg.start.saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    let outcome = match (cfg.qos, cfg.pace) {
        (_, Some(pace)) => paced(&mut conn, &cfg, pace, &mut r),
        (QoS::AtMostOnce, None) => open_loop(&mut conn, &cfg, &mut r),
        _ => windowed(&mut conn, &cfg, &mut r),
    };
    match outcome {
        Ok(true) => conn.disconnect(),
        Ok(false) => {} // a packet was cut short at the deadline: just close
        Err(e) => r.error = Some(format!("publisher {}: {e}", cfg.publisher)),
    }
    r
}

/// Writes `buf`, giving up at `deadline`; returns the bytes written.
fn write_until(conn: &mut Conn, buf: &[u8], deadline: Instant) -> io::Result<usize> {
    let mut off = 0;
    while off < buf.len() {
        match conn.stream.write(&buf[off..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "broker closed")),
            Ok(n) => off += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

/// QoS 0 as fast as the broker reads: TCP back-pressure is the only limit.
/// Returns whether the stream ended on a packet boundary.
fn open_loop(conn: &mut Conn, cfg: &PubCfg, r: &mut PubResult) -> io::Result<bool> {
    conn.stream.set_write_timeout(Some(TICK))?;
    let mut batch = Batch::new(&cfg.topic, cfg.qos, cfg.payload, conn.version, cfg.batch);
    while Instant::now() < cfg.stop {
        let n = batch.capacity();
        let bytes = batch.fill(n, cfg.publisher, r.sent, now_ns(), || 0);
        let len = bytes.len();
        let written = write_until(conn, bytes, cfg.stop)?;
        r.sent += (written / batch.msg_len) as u64;
        if written < len {
            return Ok(written % batch.msg_len == 0);
        }
    }
    Ok(true)
}

/// A fixed rate, one message per write, stamped when written (the latency
/// scenario). Late sends are not skipped, so a stall shows in the latencies.
/// With slices, the rate holds inside this process's slices and nothing is
/// sent in the others' (what falls there is skipped, not sent late).
fn paced(conn: &mut Conn, cfg: &PubCfg, pace: Pace, r: &mut PubResult) -> io::Result<bool> {
    let mut batch = Batch::new(&cfg.topic, cfg.qos, cfg.payload, conn.version, 1);
    let mut acks = AckReader::new(cfg.qos);
    conn.stream
        .set_read_timeout(Some(Duration::from_micros(100)))?;
    let period = Duration::from_secs_f64(1.0 / pace.rate);
    let mut next = Instant::now();
    let mut pid = 0u16;
    while next < cfg.stop {
        if let Some(wait) = pace.slices.map(|s| s.wait()).filter(|w| !w.is_zero()) {
            std::thread::sleep(wait);
            next = Instant::now();
            if next >= cfg.stop {
                break;
            }
        }
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        let busy = &mut acks.busy;
        let bytes = batch.fill(1, cfg.publisher, r.sent, now_ns(), || loop {
            pid = pid % u16::MAX + 1;
            if cfg.qos == QoS::AtMostOnce || !std::mem::replace(&mut busy[pid as usize], true) {
                break pid;
            }
        });
        conn.stream.write_all(bytes)?;
        r.sent += 1;
        next += period;
        if cfg.qos != QoS::AtMostOnce {
            acks.poll(conn, r)?;
        }
    }
    if cfg.qos != QoS::AtMostOnce {
        conn.stream.set_read_timeout(Some(TICK))?;
        while r.acked < r.sent && Instant::now() < cfg.give_up {
            acks.poll(conn, r)?;
        }
    }
    Ok(true)
}

/// QoS 1/2 with at most `inflight` unacknowledged packets, so the broker's
/// throughput is measured rather than the depth of its queues.
fn windowed(conn: &mut Conn, cfg: &PubCfg, r: &mut PubResult) -> io::Result<bool> {
    conn.stream.set_read_timeout(Some(TICK))?;
    conn.stream
        .set_write_timeout(Some(Duration::from_secs(5)))?;
    let window = cfg.inflight.clamp(1, 65_000);
    let mut batch = Batch::new(&cfg.topic, cfg.qos, cfg.payload, conn.version, window);
    let mut acks = AckReader::new(cfg.qos);
    let mut next_pid = 0u16;
    loop {
        let now = Instant::now();
        let outstanding = (r.sent - r.acked) as usize;
        if now >= cfg.give_up || (now >= cfg.stop && outstanding == 0) {
            return Ok(true);
        }
        // Refill only once half the window is acknowledged: fewer, larger
        // writes and reads, so the generator's syscalls stay off the profile.
        if now < cfg.stop && outstanding <= window / 2 {
            let n = window - outstanding;
            let busy = &mut acks.busy;
            let bytes = batch.fill(n, cfg.publisher, r.sent, now_ns(), || loop {
                next_pid = next_pid % u16::MAX + 1;
                if !std::mem::replace(&mut busy[next_pid as usize], true) {
                    break next_pid;
                }
            });
            conn.stream.write_all(bytes)?;
            r.sent += n as u64;
        }
        acks.poll(conn, r)?;
    }
}

/// Reads PUBACK / PUBREC / PUBCOMP for a publisher and answers PUBREC.
struct AckReader {
    qos: QoS,
    busy: Vec<bool>,
    buf: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
}

impl AckReader {
    fn new(qos: QoS) -> AckReader {
        AckReader {
            qos,
            busy: vec![false; 65_536],
            buf: vec![0; 64 * 1024],
            filled: 0,
            out: Vec::new(),
        }
    }

    fn poll(&mut self, conn: &mut Conn, r: &mut PubResult) -> io::Result<()> {
        let n = match conn.stream.read(&mut self.buf[self.filled..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "broker closed")),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        self.filled += n;
        let mut off = 0;
        while let Some((frame, used)) =
            proto::scan(&self.buf[off..self.filled], conn.version).map_err(io::Error::other)?
        {
            off += used;
            let Frame::Other(p) = frame else {
                return Err(io::Error::other("publisher got a PUBLISH"));
            };
            let Some((kind, id)) = proto::ack_id(&p) else {
                continue; // PINGRESP and the like
            };
            let done = match (kind, self.qos) {
                (proto::PUBACK, QoS::AtLeastOnce) | (proto::PUBCOMP, QoS::ExactlyOnce) => true,
                (proto::PUBREC, QoS::ExactlyOnce) => {
                    self.out.extend(ack(proto::PUBREL, id));
                    false
                }
                _ => return Err(io::Error::other(format!("unexpected {}", p.name()))),
            };
            if done {
                if !std::mem::replace(&mut self.busy[id as usize], false) {
                    return Err(io::Error::other(format!("ack for unknown packet id {id}")));
                }
                r.acked += 1;
            }
        }
        self.buf.copy_within(off..self.filled, 0);
        self.filled -= off;
        if !self.out.is_empty() {
            conn.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

pub struct SubCfg {
    /// Messages received in [window_start, window_end) make the rate.
    pub window_start: Instant,
    pub window_end: Instant,
    /// Stop after this instant whatever happens.
    pub hard_end: Instant,
    /// Once the publishers are done: stop after this long without a message.
    pub idle: Duration,
    /// Sleep this long after a read of fewer than [`COALESCE_BELOW`] bytes.
    pub coalesce: Duration,
    /// Keep every sample slower than this (nanoseconds) for `--slow-us`.
    pub slow_over: Option<u64>,
}

pub const COALESCE_BELOW: usize = 16 * 1024;

/// Set by the scenario once every publisher has finished: how many distinct
/// messages this subscriber should end up with.
#[derive(Default)]
pub struct Expect {
    pub done: AtomicBool,
    pub count: AtomicU64,
}

#[derive(Default)]
pub struct SubResult {
    pub tracker: SeqTracker,
    pub in_window: u64,
    pub latency: Histogram,
    /// (publisher's stamp, latency) of the samples over `slow_over`, in ns.
    pub slow: Vec<(u64, u64)>,
    pub error: Option<String>,
}

pub fn subscriber(mut conn: Conn, cfg: SubCfg, expect: Arc<Expect>) -> SubResult {
    let mut r = SubResult::default();
    if let Err(e) = sub_loop(&mut conn, &cfg, &expect, &mut r) {
        r.error = Some(format!("subscriber: {e}"));
    }
    conn.disconnect();
    r
}

fn sub_loop(conn: &mut Conn, cfg: &SubCfg, expect: &Expect, r: &mut SubResult) -> io::Result<()> {
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 1 << 20];
    let pending = std::mem::take(&mut conn.pending);
    let mut filled = pending.len();
    buf[..filled].copy_from_slice(&pending);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut last_data = Instant::now();
    loop {
        let now = Instant::now();
        let now_stamp = now_ns();
        let in_window = now >= cfg.window_start && now < cfg.window_end;
        let mut off = 0;
        while let Some((frame, used)) =
            proto::scan(&buf[off..filled], conn.version).map_err(io::Error::other)?
        {
            off += used;
            match frame {
                Frame::Publish {
                    qos,
                    pid,
                    publisher,
                    seq,
                    ts,
                } => {
                    r.tracker.record(publisher, seq);
                    // Warm-up deliveries (cold caches, first allocations) are
                    // not latency samples; the drain after the window is.
                    if now >= cfg.window_start {
                        let lat = now_stamp.saturating_sub(ts);
                        r.latency.record(lat);
                        if cfg.slow_over.is_some_and(|over| lat > over) {
                            r.slow.push((ts, lat));
                        }
                    }
                    r.in_window += u64::from(in_window);
                    match qos {
                        1 => out.extend(ack(proto::PUBACK, pid)),
                        2 => out.extend(ack(proto::PUBREC, pid)),
                        _ => {}
                    }
                }
                Frame::Other(p) => match *p {
                    Packet::PubRel(a) => out.extend(ack(proto::PUBCOMP, a.packet_id)),
                    p => return Err(io::Error::other(format!("unexpected {}", p.name()))),
                },
            }
        }
        buf.copy_within(off..filled, 0);
        filled -= off;
        if !out.is_empty() {
            conn.stream.write_all(&out)?;
            out.clear();
        }
        if expect.done.load(Ordering::Acquire) {
            let want = expect.count.load(Ordering::Acquire);
            if r.tracker.distinct >= want || now.duration_since(last_data) >= cfg.idle {
                return Ok(());
            }
        }
        if now >= cfg.hard_end {
            return Ok(());
        }
        if filled == buf.len() {
            return Err(io::Error::other("packet larger than the read buffer"));
        }
        match conn.stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "broker closed")),
            Ok(n) => {
                filled += n;
                last_data = Instant::now();
                // A broker that writes packet by packet wakes this thread per
                // packet; a short nap after a small read lets bytes pile up, so
                // on a 2-core machine the generator does not take the CPU the
                // broker needs. Off for the latency scenario.
                if n < COALESCE_BELOW && !cfg.coalesce.is_zero() {
                    std::thread::sleep(cfg.coalesce);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
