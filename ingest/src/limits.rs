//! What one client may hold, and what all of them together may cost: in-flight slots per peer
//! address, the body's own deadline (a minimum rate), and the worst-case memory the limits
//! allow, checked against the container's limit at start-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest request head taken, in bytes (request line and headers): a Svix delivery's is
/// under 2 KiB. Beyond it hyper answers 431 without buffering more. Each open connection may
/// hold this much, so it is part of the worst case.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A body must arrive within this, plus its length at [`MIN_BODY_BYTES_PER_SEC`]: a client
/// whose forged but well-formed Svix headers pass the pre-check cannot hold its slot for the
/// whole request timeout by trickling a byte a second.
pub const BODY_GRACE: Duration = Duration::from_secs(2);

/// The slowest body upload waited for: a 256 KiB body gets 2 + 16 s (the request timeout still
/// bounds the whole request). Svix's deliveries, a few KiB from a data centre, arrive in
/// milliseconds.
pub const MIN_BODY_BYTES_PER_SEC: u64 = 16 * 1024;

/// What ingest holds besides the buffers the limits bound: code, runtime, metrics, the Kafka
/// client (measured ≈ 17 MiB resident under load, BENCHMARKS.md), with room.
pub const BASE_BYTES: u64 = 64 * 1024 * 1024;

/// How long the body of `announced` bytes (or, unannounced, of `limit`) may take to arrive.
pub fn body_deadline(announced: Option<u64>, limit: usize) -> Duration {
    let bytes = announced.unwrap_or(limit as u64).min(limit as u64);
    BODY_GRACE + Duration::from_secs_f64(bytes as f64 / MIN_BODY_BYTES_PER_SEC as f64)
}

/// The most memory the limits let clients make ingest hold at once: every connection's head
/// buffer, and every in-flight body twice (ingest's copy and the producer's, until the ack),
/// beside [`BASE_BYTES`].
pub fn worst_case_bytes(max_connections: usize, max_in_flight: usize, body_limit: usize) -> u64 {
    BASE_BYTES
        + (max_connections as u64).saturating_mul(MAX_HEAD_BYTES as u64)
        + 2 * (max_in_flight as u64).saturating_mul(body_limit as u64)
}

/// The container's memory limit (cgroup v2 `memory.max`, else v1's `memory.limit_in_bytes`);
/// `None` when there is none or it cannot be read.
pub fn container_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok())
    // cgroup v1 says "no limit" with a number near 2^63.
    .filter(|&bytes| bytes < 1 << 60)
}

/// Requests in flight per client address. An IPv6 client counts by its /64, which one host
/// usually has whole.
#[derive(Default)]
pub(crate) struct PeerSlots {
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerSlots {
    /// One more slot for `peer`, unless it already holds `max`.
    pub(crate) fn take(self: &Arc<Self>, peer: IpAddr, max: usize) -> Option<PeerSlot> {
        let peer = Self::key(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(peer).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: self.clone(),
            peer,
        })
    }

    fn key(peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        }
    }
}

/// A peer's slot, given back when the request ends (also when its future is dropped).
pub(crate) struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                // Only addresses with requests in flight are kept: the map stays bounded.
                held.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back_as_requests_end() {
        let slots = Arc::new(PeerSlots::default());
        let a: IpAddr = "203.0.113.7".parse().expect("ip");
        let b: IpAddr = "203.0.113.8".parse().expect("ip");
        let first = slots.take(a, 2).expect("1 of 2");
        let _second = slots.take(a, 2).expect("2 of 2");
        assert!(slots.take(a, 2).is_none(), "a third for the same peer");
        assert!(slots.take(b, 2).is_some(), "another peer is not held back");
        drop(first);
        assert!(
            slots.take(a, 2).is_some(),
            "a slot given back is taken again"
        );
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_that_ipv4() {
        let slots = Arc::new(PeerSlots::default());
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let other_in_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let _held = slots.take(one, 1).expect("first");
        assert!(slots.take(other_in_64, 1).is_none());
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let _v4 = slots.take(v4, 1).expect("v4");
        assert!(slots.take(mapped, 1).is_none());
    }

    #[test]
    fn the_body_deadline_grows_with_the_announced_length_up_to_the_limit() {
        assert_eq!(body_deadline(Some(0), 1 << 18), BODY_GRACE);
        assert_eq!(
            body_deadline(Some(16 * 1024), 1 << 18),
            BODY_GRACE + Duration::from_secs(1)
        );
        // A lying Content-Length beyond the limit is cut off at the limit anyway.
        assert_eq!(
            body_deadline(Some(u64::MAX), 1 << 18),
            body_deadline(None, 1 << 18)
        );
        assert_eq!(
            body_deadline(None, 1 << 18),
            BODY_GRACE + Duration::from_secs(16)
        );
    }

    #[test]
    fn the_default_limits_fit_the_manifests_384_mib_and_the_old_ones_did_not() {
        let mib = |b: u64| b / (1024 * 1024);
        assert_eq!(mib(worst_case_bytes(4096, 256, 256 * 1024)), 64 + 64 + 128);
        // 64 KiB heads and 1024 slots: 64 + 256 + 512 MiB.
        let before: u64 = 64 * 1024 * 4096 + 2 * 1024 * 256 * 1024 + BASE_BYTES;
        assert_eq!(mib(before), 832);
    }
}
