/// Milliseconds since the Unix epoch, as Clerk's `*_at` fields and envelope `timestamp` carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(i64);

/// Values below this are taken to be seconds: 10^12 ms is September 2001, long before Clerk.
const SECONDS_THRESHOLD: i64 = 1_000_000_000_000;

impl Millis {
    /// Normalises a Clerk timestamp: one published example gives seconds where milliseconds
    /// belong, so a value below 10^12 is read as seconds.
    pub fn from_clerk(raw: i64) -> Self {
        if raw.unsigned_abs() < SECONDS_THRESHOLD.unsigned_abs() {
            Millis(raw.saturating_mul(1000))
        } else {
            Millis(raw)
        }
    }

    /// An exact millisecond value, with no normalisation.
    pub const fn from_raw(ms: i64) -> Self {
        Millis(ms)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_in_milliseconds_is_kept() {
        assert_eq!(
            Millis::from_clerk(1_754_560_800_150).get(),
            1_754_560_800_150
        );
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(Millis::from_clerk(i64::MIN).get(), i64::MIN);
        assert_eq!(Millis::from_clerk(i64::MAX).get(), i64::MAX);
        assert_eq!(Millis::from_clerk(-5).get(), -5000);
    }

    #[test]
    fn a_timestamp_below_ten_to_the_twelve_is_read_as_seconds() {
        assert_eq!(Millis::from_clerk(1_754_560_800).get(), 1_754_560_800_000);
    }
}
