//! KAFKA_OPTIONS: one value for every role, each client taking what it reads; a misspelt
//! property stops the process at start-up with the property named.

use crate::harness::{clerk_sync, TestDb, TEST_SECRET};

#[tokio::test]
async fn a_misspelt_kafka_option_stops_ingest_and_the_worker_at_start_up_naming_it(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    for (role, setting) in [
        ("ingest", ("CLERK_WEBHOOK_SECRET", TEST_SECRET)),
        ("worker", ("DATABASE_URL", db.url.as_str())),
    ] {
        let env = [
            setting,
            ("KAFKA_BROKERS", "127.0.0.1:1"),
            ("KAFKA_OPTIONS", "security.protocol=PLAINTEXT,linger.msec=5"),
        ];
        let out = clerk_sync(&[role], &env);
        assert!(!out.status.success(), "{role} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("linger.msec"), "{role}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn every_kafka_option_the_guarantees_rest_on_stops_every_role_at_start_up_naming_it_and_why(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let roles = [
        ("ingest", ("CLERK_WEBHOOK_SECRET", TEST_SECRET)),
        ("worker", ("DATABASE_URL", db.url.as_str())),
    ];
    for property in [
        "acks=1",
        "request.required.acks=0",
        "enable.idempotence=false",
        "enable.auto.offset.store=true",
        "enable.auto.commit=false",
        "group.id=other",
        "isolation.level=read_uncommitted",
        "message.timeout.ms=1",
    ] {
        let key = property.split('=').next().unwrap_or_default();
        for (role, setting) in roles {
            let options = format!("security.protocol=PLAINTEXT,{property}");
            let env = [
                setting,
                ("KAFKA_BROKERS", "127.0.0.1:1"),
                ("KAFKA_OPTIONS", options.as_str()),
            ];
            let out = clerk_sync(&[role], &env);
            assert!(!out.status.success(), "{role} started with {property}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("KAFKA_OPTIONS: `{key}` cannot be set: ")),
                "{role} with {property}: {err}"
            );
        }
    }
    Ok(())
}
