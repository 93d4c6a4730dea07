#!/usr/bin/env bash
# The least Kafka ACLs of one clerk-sync role (README, "Running on a secured cluster"), granted
# with Kafka's own kafka-acls. tests/e2e/kafka_security.rs grants every role's ACLs by running
# this file, so what it grants is what the tests proved.
#
#   deploy/kafka/acls.sh <role> <principal> [kafka-acls options…]
#   deploy/kafka/acls.sh worker User:clerk-sync-worker --bootstrap-server b-1:9096 --command-config admin.properties
#
# Roles: ingest, worker (and lag), topics (topics create), replay, dlq (list, show, redrive),
# backfill. Names as the roles read them: TOPIC_USERS, TOPIC_ORGANIZATIONS, TOPIC_MEMBERSHIPS,
# TOPIC_DLQ, KAFKA_GROUP_ID, DLQ_REDRIVE_GROUP (their defaults when unset). KAFKA_ACLS names the tool
# (default kafka-acls.sh, from Kafka's bin/).
set -euo pipefail
usage="usage: acls.sh <ingest|worker|topics|replay|dlq|backfill> <principal> [kafka-acls options]"
role="${1:?$usage}"
principal="${2:?$usage}"
shift 2
options=("$@")
tool="${KAFKA_ACLS:-kafka-acls.sh}"
entities=(--topic "${TOPIC_USERS:-clerk.users}" --topic "${TOPIC_ORGANIZATIONS:-clerk.organizations}"
  --topic "${TOPIC_MEMBERSHIPS:-clerk.memberships}")
dlq=(--topic "${TOPIC_DLQ:-clerk.dlq}")

grant() { "$tool" "${options[@]}" --add --allow-principal "$principal" "$@"; }
# Prefixed: a group and the groups named after it (the worker's `<group>-lag-probe`, each
# replay's `clerk-sync-replay-<time>`, each dead-letter reading's `clerk-sync-dlq-inspect-<pid>`).
groups() { grant --operation Read --group "$1" --resource-pattern-type prefixed; }

case "$role" in
  ingest | backfill)
    # Idempotent writes need no cluster ACL once a topic may be written (Kafka 2.8+).
    grant --operation Write --operation Describe "${entities[@]}"
    ;;
  worker)
    grant --operation Read --operation Describe "${entities[@]}"
    groups "${KAFKA_GROUP_ID:-clerk-sync}"
    grant --operation Write --operation Describe "${dlq[@]}"
    ;;
  topics)
    grant --operation Create --operation Describe --operation DescribeConfigs "${entities[@]}" "${dlq[@]}"
    ;;
  replay)
    grant --operation Read --operation Describe "${entities[@]}"
    groups clerk-sync-replay
    ;;
  dlq)
    grant --operation Read --operation Describe "${dlq[@]}"
    groups clerk-sync-dlq
    if [ -n "${DLQ_REDRIVE_GROUP:-}" ]; then groups "$DLQ_REDRIVE_GROUP"; fi
    grant --operation Write --operation Describe "${entities[@]}"
    ;;
  *)
    echo "acls.sh: unknown role '$role'; $usage" >&2
    exit 2
    ;;
esac
