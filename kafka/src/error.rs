/// What the Kafka crate can refuse: settings that cannot work, named.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{setting}: expected {expected}")]
    Setting {
        setting: &'static str,
        expected: String,
    },
}
