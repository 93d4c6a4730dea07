//! Applying the user's extra librdkafka properties (`KAFKA_OPTIONS`) to a client.

use rdkafka::ClientConfig;

/// Consumer-group membership timings. librdkafka checks them against each other in every
/// consumer, also one that never joins a group: `max.poll.interval.ms=10000`, right for the
/// worker with a short session, would stop the lag probe, replay and the dead-letter tools
/// (whose session timeout is librdkafka's 45 s) from starting.
const GROUP_MEMBERSHIP: [&str; 3] = [
    "max.poll.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

/// Sets `options` on a consumer that assigns partitions itself and never joins its group.
pub fn set_outside_group(config: &mut ClientConfig, options: &[(String, String)]) {
    for (key, value) in options {
        if !GROUP_MEMBERSHIP.contains(&key.as_str()) {
            config.set(key, value);
        }
    }
}

/// The `max.poll.interval.ms` in `options` (the last one wins), else librdkafka's default.
pub fn max_poll_interval(options: &[(String, String)]) -> std::time::Duration {
    let ms = options
        .iter()
        .rev()
        .find(|(key, _)| key == "max.poll.interval.ms")
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(300_000);
    std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_timings_are_left_out_of_consumers_that_never_join() {
        let mut config = ClientConfig::new();
        let options = [
            ("max.poll.interval.ms".to_owned(), "7000".to_owned()),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
        ];
        set_outside_group(&mut config, &options);
        assert_eq!(config.get("max.poll.interval.ms"), None);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn the_poll_deadline_is_the_last_one_given_or_librdkafkas_default() {
        let given = |v: &str| vec![("max.poll.interval.ms".to_owned(), v.to_owned())];
        assert_eq!(max_poll_interval(&[]).as_secs(), 300);
        assert_eq!(max_poll_interval(&given("7000")).as_millis(), 7000);
        assert_eq!(max_poll_interval(&given("nonsense")).as_secs(), 300);
    }
}
