//! compose and Kubernetes manifests cannot drift from the binary: every setting they pass is one
//! the binary accepts, every required one is set, and probes, ports and paths are real.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use crate::harness::{repo_file, Ingest, TestDb, TestKafka, WorkerProcess};

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&repo_file(path))
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

/// The environment variables `clerk-sync <args> --help` lists, and the (name → default) pairs.
fn accepted(args: &[&str]) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("clerk-sync --help");
    let help = String::from_utf8_lossy(&output.stdout).replace('\n', " ");
    let mut names = BTreeSet::new();
    let mut defaults = BTreeMap::new();
    for part in help.split("[env: ").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if let Some(default) = part
            .split("[default: ")
            .nth(1)
            .filter(|_| part.find("[default: ") < part.find("[env: ").or(Some(usize::MAX)))
        {
            defaults.insert(
                name.clone(),
                default.split(']').next().unwrap_or_default().to_owned(),
            );
        }
        names.insert(name);
    }
    // Read by the process outside clap: logging and OpenTelemetry.
    for extra in [
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ] {
        names.insert(extra.to_owned());
    }
    (names, defaults)
}

fn required(role: &str) -> &'static [&'static str] {
    match role {
        "ingest" => &["KAFKA_BROKERS", "CLERK_WEBHOOK_SECRET"],
        "worker" => &["KAFKA_BROKERS", "DATABASE_URL", "CLERK_WEBHOOK_SECRET"],
        "migrate" => &["DATABASE_URL"],
        "topics" => &["KAFKA_BROKERS"],
        // The drift check (`--prune` measures the tables).
        "backfill" => &["KAFKA_BROKERS", "CLERK_SECRET_KEY", "DATABASE_URL"],
        _ => &[],
    }
}

fn role_args(command: &[String]) -> Vec<&str> {
    match command.first().map(String::as_str) {
        Some("topics") => vec!["topics", "create"],
        Some(role) => vec![role],
        None => vec![],
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn check(place: &str, command: &[String], env: &BTreeSet<String>) {
    let args = role_args(command);
    let (names, _) = accepted(&args);
    let unknown: Vec<_> = env.difference(&names).collect();
    assert!(
        unknown.is_empty(),
        "{place}: clerk-sync {args:?} does not accept {unknown:?}"
    );
    for r in required(args[0]) {
        assert!(env.contains(*r), "{place}: required {r} is not set");
    }
}

#[test]
fn compose_sets_only_settings_the_binary_accepts_and_every_required_one() {
    let compose = yaml("deploy/compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let mut roles = BTreeSet::new();
    for (name, service) in services {
        if !service["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("clerk-sync")
        {
            continue;
        }
        let command = strings(&service["command"]);
        let env: BTreeSet<String> = service["environment"]
            .as_mapping()
            .expect("environment")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        check(&format!("compose service {name:?}"), &command, &env);
        roles.insert(command[0].clone());
        // Health checks probe the address the service serves health on (ingest: its ops
        // listener; the worker: its one listener).
        let health = &service["environment"]["OPS_LISTEN_ADDR"];
        let health = if health.is_null() {
            &service["environment"]["LISTEN_ADDR"]
        } else {
            health
        };
        if let Some(listen) = health.as_str() {
            let port = listen.rsplit(':').next().expect("port");
            let test = strings(&service["healthcheck"]["test"]).join(" ");
            assert!(
                test.contains(&format!("127.0.0.1:{port}/readyz")),
                "{name:?} health check: {test}"
            );
        }
    }
    assert_eq!(
        roles,
        ["backfill", "ingest", "migrate", "topics", "worker"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // Prometheus scrapes the ports the services serve metrics on (ingest: its ops listener,
    // never the webhook port).
    let scrape = repo_file("deploy/prometheus/prometheus.yml");
    let ops_port = services["ingest"]["environment"]["OPS_LISTEN_ADDR"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("ingest's OPS_LISTEN_ADDR");
    assert!(
        scrape.contains(&format!("ingest:{ops_port}")) && scrape.contains("worker:9090"),
        "{scrape}"
    );
    assert!(
        !scrape.contains("ingest:8080"),
        "metrics are not on the webhook port"
    );
    assert!(
        scrape.contains("pushgateway:9091"),
        "the drift check's Pushgateway"
    );
}

fn documents(dir: &str) -> Vec<(String, Value)> {
    let root = format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).expect("manifests") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            out.push((name.clone(), yaml(&format!("{dir}/{name}"))));
        }
    }
    out
}

#[test]
fn kubernetes_manifests_are_complete_and_match_the_binary() {
    let docs = documents("deploy/k8s/base");
    let config: BTreeSet<String> = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ConfigMap")
        .and_then(|(_, d)| d["data"].as_mapping())
        .expect("a ConfigMap")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let kustomization = yaml("deploy/k8s/base/kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    for (file, doc) in &docs {
        assert!(
            listed.contains(file),
            "{file} is not listed in kustomization.yaml"
        );
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{file}: {field} missing");
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{file}: metadata.name missing"
        );
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "Job" => &doc["spec"]["template"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
            _ => continue,
        };
        if kind == "Deployment" {
            let selector = doc["spec"]["selector"]["matchLabels"]
                .as_mapping()
                .expect("selector");
            for (k, v) in selector {
                assert_eq!(
                    &pod["metadata"]["labels"][k], v,
                    "{file}: selector does not match the pod labels"
                );
            }
        }
        assert_eq!(
            pod["spec"]["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{file}: non-root"
        );
        for container in pod["spec"]["containers"].as_sequence().expect("containers") {
            assert!(
                container["name"].is_string() && container["image"].is_string(),
                "{file}: container name/image"
            );
            let sc = &container["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{file}");
            assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false), "{file}");
            let args = strings(&container["args"]);
            let mut env: BTreeSet<String> = container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect();
            if !container["envFrom"].is_null() {
                env.extend(config.iter().cloned());
            }
            check(file, &args, &env);
            if kind == "Deployment" {
                // The probes name a container port; the variable that port's listener reads
                // must agree, and metrics are scraped there too.
                let named = container["readinessProbe"]["httpGet"]["port"]
                    .as_str()
                    .expect("a named probe port");
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["port"].as_str(),
                    Some(named),
                    "{file}: both probes on one port"
                );
                let port = container["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == named)
                    .and_then(|p| p["containerPort"].as_u64())
                    .expect("the probes' port");
                let variable = if named == "ops" {
                    "OPS_LISTEN_ADDR"
                } else {
                    "LISTEN_ADDR"
                };
                let listen = container["env"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == variable)
                    .and_then(|e| e["value"].as_str())
                    .expect("the probes' listener");
                assert!(
                    listen.ends_with(&format!(":{port}")),
                    "{file}: {variable} is {listen}, the probes' port {port}"
                );
                let liveness = container["livenessProbe"]["httpGet"]["path"].as_str();
                assert!(
                    matches!(liveness, Some("/healthz" | "/livez")),
                    "{file}: liveness on {liveness:?}"
                );
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["path"], "/readyz",
                    "{file}"
                );
                assert_eq!(
                    pod["metadata"]["annotations"]["prometheus.io/path"], "/metrics",
                    "{file}"
                );
                assert_eq!(
                    pod["metadata"]["annotations"]["prometheus.io/port"].as_str(),
                    Some(port.to_string().as_str()),
                    "{file}"
                );
            }
            // Nothing orders a Deployment after a Job: a worker that leaves migrating to the
            // Job must be one that waits for the schema (not ready meanwhile), and the Job must
            // be there to run them.
            if args.first().map(String::as_str) == Some("worker") {
                let skip = container["env"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == "SKIP_MIGRATIONS")
                    .and_then(|e| e["value"].as_str());
                assert_eq!(skip, Some("true"), "{file}: the Job migrates");
                assert!(
                    docs.iter().any(|(_, d)| d["kind"] == "Job"
                        && strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])
                            == ["migrate"]),
                    "a migration Job"
                );
                assert!(
                    repo_file("src/cli/worker.rs").contains("wait_for_schema"),
                    "the worker waits for the Job's migrations"
                );
            }
        }
    }
}

#[test]
fn kedas_trigger_names_the_workers_group_and_topics_and_never_outscales_the_partitions() {
    let (_, worker_defaults) = accepted(&["worker"]);
    let (_, topic_defaults) = accepted(&["topics", "create"]);
    let scaled = yaml("deploy/k8s/base/worker-scaledobject.yaml");
    let config = yaml("deploy/k8s/base/configmap.yaml");
    let group = &worker_defaults["KAFKA_GROUP_ID"];
    let deployment = yaml("deploy/k8s/base/worker-deployment.yaml");
    let set_group = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "KAFKA_GROUP_ID")
        .and_then(|e| e["value"].as_str())
        .expect("the worker's KAFKA_GROUP_ID");
    assert_eq!(set_group, group.as_str());
    let mut topics = BTreeSet::new();
    for trigger in scaled["spec"]["triggers"].as_sequence().expect("triggers") {
        assert_eq!(trigger["type"], "kafka");
        assert_eq!(
            trigger["metadata"]["consumerGroup"].as_str(),
            Some(group.as_str())
        );
        assert_eq!(
            trigger["metadata"]["bootstrapServers"],
            config["data"]["KAFKA_BROKERS"]
        );
        topics.insert(
            trigger["metadata"]["topic"]
                .as_str()
                .expect("topic")
                .to_owned(),
        );
    }
    let expected: BTreeSet<String> = ["TOPIC_USERS", "TOPIC_ORGANIZATIONS", "TOPIC_MEMBERSHIPS"]
        .iter()
        .map(|t| worker_defaults[*t].clone())
        .collect();
    assert_eq!(topics, expected);
    let partitions: u64 = topic_defaults["TOPIC_PARTITIONS"]
        .parse()
        .expect("partitions");
    assert!(scaled["spec"]["maxReplicaCount"].as_u64().expect("max") <= partitions);
}

#[test]
fn the_example_overlay_passes_only_settings_the_binary_accepts() {
    let overlay = yaml("deploy/k8s/overlays/example/kustomization.yaml");
    let (ingest, _) = accepted(&["ingest"]);
    let (worker, _) = accepted(&["worker"]);
    let both: BTreeSet<String> = ingest.intersection(&worker).cloned().collect();
    for generator in overlay["configMapGenerator"]
        .as_sequence()
        .expect("configMapGenerator")
    {
        for literal in strings(&generator["literals"]) {
            let key = literal.split('=').next().expect("key");
            assert!(
                both.contains(key),
                "overlay sets {key}, which ingest and worker do not both accept"
            );
        }
    }
    let patches = repo_file("deploy/k8s/overlays/example/kustomization.yaml");
    for name in patches
        .split("name: ")
        .skip(1)
        .filter_map(|p| p.split([',', '}', '\n']).next())
    {
        if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            assert!(
                both.contains(name),
                "overlay patch sets {name}, which the binary does not accept"
            );
        }
    }
}

#[tokio::test]
async fn the_probe_and_metrics_paths_the_manifests_use_are_served() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;
    for base in [&ingest.base, &worker.base] {
        for path in ["/healthz", "/livez", "/readyz", "/metrics"] {
            // Readiness may take a moment after start (the broker's first answer, the
            // dead-letter topic's check): served is what this test asks, ready soon after.
            crate::harness::eventually(
                &format!("{base}{path} answers 2xx"),
                std::time::Duration::from_secs(30),
                || async {
                    let status = reqwest::get(format!("{base}{path}")).await.ok()?.status();
                    status.is_success().then_some(())
                },
            )
            .await;
        }
    }
    // The compose health check command works against a live process.
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .args(["probe", &format!("{}/readyz", ingest.base)])
        .status()?;
    assert!(probe.success());
    Ok(())
}

/// The Kafka security the example overlay ships is the one `tests/e2e/kafka_security.rs`
/// proved: the README's SASL_SSL SCRAM options, and each Kafka role (ingest, worker, the drift
/// check's backfill) its own SASL user, so each gets only its own row of `deploy/kafka/acls.sh`.
#[test]
fn the_example_overlay_uses_the_tested_sasl_settings_and_a_sasl_user_per_role_with_its_acls() {
    let overlay = yaml("deploy/k8s/overlays/example/kustomization.yaml");
    let literals: Vec<String> = overlay["configMapGenerator"]
        .as_sequence()
        .expect("configMapGenerator")
        .iter()
        .flat_map(|g| strings(&g["literals"]))
        .collect();
    let options = literals
        .iter()
        .find_map(|l| l.strip_prefix("KAFKA_OPTIONS="))
        .expect("the overlay sets KAFKA_OPTIONS");
    let readme = repo_file("README.md");
    let tested = readme
        .lines()
        .find_map(|l| {
            l.strip_prefix("KAFKA_OPTIONS=security.protocol=SASL_SSL")
                .filter(|rest| rest.contains("SCRAM"))
        })
        .expect("the README's SASL_SSL SCRAM options");
    // The overlay's managed brokers use a public CA: the README's line without ssl.ca.location.
    assert!(
        format!("security.protocol=SASL_SSL{tested}").starts_with(options),
        "overlay KAFKA_OPTIONS {options} are not the README's tested ones"
    );

    let acls = repo_file("deploy/kafka/acls.sh");
    let mut keys = BTreeSet::new();
    for (kind, name, role) in [
        ("Deployment", "clerk-sync-ingest", "ingest"),
        ("Deployment", "clerk-sync-worker", "worker"),
        ("CronJob", "clerk-sync-drift", "backfill"),
    ] {
        let patch = overlay["patches"]
            .as_sequence()
            .expect("patches")
            .iter()
            .find(|p| p["target"]["kind"] == kind && p["target"]["name"] == name)
            .unwrap_or_else(|| panic!("no patch gives {name} its Kafka credentials"));
        let ops: Value =
            serde_norway::from_str(patch["patch"].as_str().expect("patch text")).expect("patch");
        for variable in ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"] {
            let key = ops
                .as_sequence()
                .expect("ops")
                .iter()
                .find(|op| op["value"]["name"] == variable)
                .and_then(|op| op["value"]["valueFrom"]["secretKeyRef"]["key"].as_str())
                .unwrap_or_else(|| panic!("{name} gets no {variable} from the Secret"));
            assert!(
                key.starts_with(&format!("kafka-{role}-")),
                "{name}'s {variable} is {key}, not its role's own"
            );
            assert!(keys.insert(key.to_owned()), "{key} shared between roles");
        }
        assert!(
            acls.lines().any(|l| l
                .trim()
                .strip_suffix(')')
                .is_some_and(|pattern| pattern.split('|').any(|r| r.trim() == role))),
            "deploy/kafka/acls.sh has no {role} role"
        );
    }
    assert!(
        readme.contains("deploy/kafka/acls.sh"),
        "the README names the ACL script"
    );
}

/// The compose file runs the Kafka version the tests run.
#[test]
fn compose_runs_the_apache_kafka_version_the_tests_run() {
    let compose = yaml("deploy/compose.yaml");
    let image = compose["services"]["kafka"]["image"]
        .as_str()
        .expect("kafka image");
    assert_eq!(
        image,
        format!("apache/kafka:{}", clerk_sync_local::kafka::KAFKA_VERSION)
    );
}

/// The Kubernetes ingest's memory limit holds the worst case its limits allow: every
/// connection's head buffer and every in-flight body twice (ingest's and the producer's copy).
#[test]
fn the_ingest_manifests_memory_limit_holds_the_worst_case_its_limits_allow() {
    let deployment = yaml("deploy/k8s/base/ingest-deployment.yaml");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let limit = container["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let limit: u64 = limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the limit in Mi")
        << 20;
    let (_, defaults) = accepted(&["ingest"]);
    let setting = |name: &str| -> usize {
        let set = container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str().map(str::to_owned));
        set.or_else(|| defaults.get(name).cloned())
            .unwrap_or_else(|| panic!("{name} has no default"))
            .parse()
            .expect("a number")
    };
    let worst = clerk_sync_ingest::limits::worst_case_bytes(
        setting("MAX_CONNECTIONS"),
        setting("MAX_IN_FLIGHT"),
        setting("WEBHOOK_BODY_LIMIT"),
    );
    println!(
        "ingest worst case {} MiB, limit {} MiB",
        worst >> 20,
        limit >> 20
    );
    assert!(
        worst <= limit,
        "{} MiB over {} MiB",
        worst >> 20,
        limit >> 20
    );
}
