//! `limits.max_memory_mb`: from the cap on the whole process to the core's message budget
//! (core/src/budget.rs) and the store's cache (docs/storage.md "Limits").
//!
//! The core charges what messages pin (queues, hold, retained). The rest of the process is
//! not charged: what it has at start (code, the restored state's indexes, thread stacks),
//! the store's page cache, and what connections use (buffers, sessions). So the budget is
//! the cap less the start-up footprint, less the cache, less a quarter of the cap kept for
//! connections and the allocator's own slack.

/// The store's page cache under a cap: an eighth of it, at most redb's default.
pub fn store_cache_bytes(max_memory_mb: usize) -> usize {
    let default = musqratt_store::redb_engine::CACHE_BYTES;
    if max_memory_mb == 0 {
        return default;
    }
    ((max_memory_mb << 20) / 8).min(default)
}

/// The core's message budget under `max_memory_mb` (0 = none: `usize::MAX`), given the
/// process's resident size now. An error names the key when nothing would be left.
pub fn message_budget(max_memory_mb: usize, rss_now: usize) -> Result<usize, String> {
    if max_memory_mb == 0 {
        return Ok(usize::MAX);
    }
    let cap = max_memory_mb << 20;
    let reserved = rss_now + store_cache_bytes(max_memory_mb) + cap / 4;
    match cap.checked_sub(reserved) {
        Some(budget) if budget >= 1 << 20 => Ok(budget),
        _ => Err(format!(
            "limits.max_memory_mb = {max_memory_mb} leaves no room for messages: the broker uses {} MiB at start, its store cache {} MiB and connections a quarter of the cap; raise it to at least {} MiB",
            rss_now >> 20,
            store_cache_bytes(max_memory_mb) >> 20,
            (((rss_now + store_cache_bytes(max_memory_mb) + (1 << 20)) * 4 / 3) >> 20) + 1
        )),
    }
}

/// The process's resident set size in bytes (Linux: /proc/self/status, VmRSS), 0 if unknown.
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_the_cap_less_what_is_not_messages() {
        assert_eq!(message_budget(0, 1 << 30), Ok(usize::MAX));
        // 64 MiB: 8 MiB cache, 16 MiB for connections, 10 MiB at start: 30 MiB for messages.
        assert_eq!(message_budget(64, 10 << 20), Ok(30 << 20));
        let e = message_budget(16, 12 << 20).unwrap_err();
        assert!(e.starts_with("limits.max_memory_mb = 16 "), "{e}");
        assert!(rss_bytes() > 0);
    }
}
