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
            ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
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
                ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
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

#[tokio::test]
async fn a_tolerance_over_an_hour_a_short_record_key_or_a_clock_skew_over_a_day_stops_its_role_naming_the_setting(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let base = [
        ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
        ("DATABASE_URL", db.url.as_str()),
        ("KAFKA_BROKERS", "127.0.0.1:1"),
    ];
    for (role, setting, value) in [
        ("ingest", "WEBHOOK_TOLERANCE_SECS", "86400"),
        ("worker", "RECORD_SIGNING_KEY", "c2hvcnQ="),
        ("worker", "MAX_CLOCK_SKEW_SECS", "31536000"),
        ("worker", "CLERK_WEBHOOK_SECRET", "not-a-secret!"),
    ] {
        let mut env: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| *k != setting)
            .collect();
        env.push((setting, value));
        let out = clerk_sync(&[role], &env);
        assert!(
            !out.status.success(),
            "{role} started with {setting}={value}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(setting), "{role} with {setting}: {err}");
        assert!(
            !err.contains(value) || setting.ends_with("_SECS"),
            "{role} printed the value: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // The worker believes nothing without Clerk's secret: it says so instead of starting.
    let out = clerk_sync(&["worker"], &base[1..]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("CLERK_WEBHOOK_SECRET"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn brokers_off_loopback_in_the_clear_stop_every_kafka_role_at_start_up_naming_kafka_brokers_unless_allowed(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let roles: [(&[&str], (&str, &str)); 4] = [
        (&["ingest"], ("LISTEN_ADDR", "127.0.0.1:0")),
        (&["worker"], ("LISTEN_ADDR", "127.0.0.1:0")),
        (&["lag"], ("KAFKA_GROUP_ID", "g")),
        (&["dlq", "list"], ("KAFKA_GROUP_ID", "g")),
    ];
    for (options, refused) in [
        ("", true),
        ("security.protocol=SASL_PLAINTEXT", true),
        ("security.protocol=SSL", false),
    ] {
        for allow in ["false", "true"] {
            for (args, setting) in roles {
                let env = [
                    setting,
                    ("CLERK_WEBHOOK_SECRET", TEST_SECRET),
                    ("DATABASE_URL", db.url.as_str()),
                    ("OPS_LISTEN_ADDR", "127.0.0.1:0"),
                    ("KAFKA_BROKERS", "kafka.example.invalid:9092"),
                    ("KAFKA_OPTIONS", options),
                    ("KAFKA_ALLOW_PLAINTEXT", allow),
                ];
                let (_, stderr) = crate::harness::clerk_sync_expecting_exit(
                    args,
                    &env,
                    std::time::Duration::from_secs(3),
                )
                .await?;
                let said = stderr.lines().any(|l| {
                    l.starts_with(
                        "error: KAFKA_BROKERS: kafka.example.invalid:9092 is off loopback",
                    )
                });
                let expected = refused && allow == "false";
                assert_eq!(
                    said, expected,
                    "{args:?} with {options:?}, KAFKA_ALLOW_PLAINTEXT={allow}: {stderr}"
                );
                if expected {
                    let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
                    assert_eq!(errors, 1, "one line: {stderr}");
                }
            }
        }
    }
    Ok(())
}
