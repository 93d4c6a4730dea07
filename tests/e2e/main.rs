//! End-to-end and database tests: the real binary, a real Kafka-protocol broker, real Postgres.

mod harness;

mod attacks;
mod backfill;
mod cli_reference;
mod compare;
mod concurrent_batches;
mod database_environment;
mod deploy_artifacts;
mod deploy_config;
mod deploy_queries;
mod docker_context;
mod drift;
mod failures;
mod fate;
mod hostile_input;
mod lock_order;
mod lock_timeout;
mod mirror_cases;
mod mirror_property;
mod notify;
mod observability;
mod pipeline;
mod poison_batch;
mod production_tls;
mod prometheus_alerts;
mod promtool;
mod reference_queries;
mod replay;
mod scripting;
mod secrets;
mod settings;
mod settings_table;
mod statements;
mod worker_build;
