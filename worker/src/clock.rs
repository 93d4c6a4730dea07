//! The wall clock, in the milliseconds Clerk's timestamps use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (0 before it, the maximum past 2^63 ms).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
