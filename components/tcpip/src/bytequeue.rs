//! A bounded byte ring that grows on demand up to its bound, so an idle connection among
//! thousands costs no buffer memory, and releases its storage again when it empties.

pub(crate) struct ByteQueue {
    buf: Vec<u8>,
    head: usize,
    len: usize,
    max: usize,
}

/// Storage above this size is released when the queue empties.
const KEEP: usize = 4096;

impl ByteQueue {
    pub(crate) fn new(max: usize) -> Self {
        ByteQueue {
            buf: Vec::new(),
            head: 0,
            len: 0,
            max: max.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn room(&self) -> usize {
        self.max - self.len
    }

    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.shrink_if_empty();
    }

    /// Makes the storage at least `want` bytes (bounded by `max`), keeping the byte order.
    fn reserve(&mut self, want: usize) {
        let want = want.min(self.max);
        if want <= self.buf.len() {
            return;
        }
        let cap = want.next_power_of_two().clamp(1024, self.max);
        let mut nb = vec![0u8; cap];
        let (a, b) = self.readable();
        nb[..a.len()].copy_from_slice(a);
        nb[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.buf = nb;
        self.head = 0;
    }

    fn shrink_if_empty(&mut self) {
        if self.len == 0 {
            self.head = 0;
            if self.buf.len() > KEEP {
                self.buf = Vec::new();
            }
        }
    }

    /// The queued bytes as at most two slices, oldest first.
    pub(crate) fn readable(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        if self.len == 0 {
            return (&[], &[]);
        }
        let end = self.head + self.len;
        if end <= cap {
            (&self.buf[self.head..end], &[])
        } else {
            (&self.buf[self.head..], &self.buf[..end - cap])
        }
    }

    /// Drops `n` bytes from the front.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.buf.len()
        };
        self.shrink_if_empty();
    }

    /// Copies out up to `out.len()` bytes from the front.
    pub(crate) fn pop(&mut self, out: &mut [u8]) -> usize {
        let (a, b) = self.readable();
        let n1 = a.len().min(out.len());
        out[..n1].copy_from_slice(&a[..n1]);
        let n2 = b.len().min(out.len() - n1);
        out[n1..n1 + n2].copy_from_slice(&b[..n2]);
        self.consume(n1 + n2);
        n1 + n2
    }

    /// The contiguous free space after the queued bytes (grows the storage if needed).
    /// Fill a prefix of it, then call `commit`.
    pub(crate) fn writable(&mut self, want: usize) -> &mut [u8] {
        let want = want.min(self.room());
        self.reserve(self.len + want);
        let cap = self.buf.len();
        if cap == 0 {
            return &mut [];
        }
        let tail = (self.head + self.len) % cap;
        let end = if tail >= self.head && self.len < cap {
            cap
        } else {
            self.head
        };
        let end = end.min(tail + want);
        &mut self.buf[tail..end]
    }

    pub(crate) fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.max);
    }

    /// Appends as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let dst = self.writable(data.len() - done);
            if dst.is_empty() {
                break;
            }
            let n = dst.len();
            dst.copy_from_slice(&data[done..done + n]);
            self.commit(n);
            done += n;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::ByteQueue;

    #[test]
    fn wraps_grows_and_bounds() {
        let mut q = ByteQueue::new(5000);
        let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(q.push(&data[..3000]), 3000);
        let mut out = vec![0u8; 2000];
        assert_eq!(q.pop(&mut out), 2000);
        assert_eq!(&out[..], &data[..2000]);
        assert_eq!(q.push(&data[3000..6000]), 3000); // wraps: 4000 queued
        assert_eq!(q.push(&data[..2000]), 1000); // bounded by max
        let mut all = vec![0u8; 6000];
        let n = q.pop(&mut all);
        assert_eq!(n, 5000);
        assert_eq!(&all[..4000], &data[2000..6000]);
        assert_eq!(&all[4000..5000], &data[..1000]);
        assert!(q.is_empty());
    }
}
