# Shared by the scripts: what a machine may lack, and where the build puts the binary. The
# throwaway Kafka and Postgres are the binary's own (`clerk-sync local exec`, the local/ crate), not
# started here. Sourced, not run.

log() { printf '==> %s\n' "$*" >&2; }

# The binary cargo built for the tests (target/debug, or CARGO_TARGET_DIR's).
clerk_sync_bin() { echo "${CARGO_TARGET_DIR:-$PWD/target}/debug/clerk-sync"; }

# Debian's packages, installed as root where apt-get is; otherwise one line naming what to install.
apt_install() {
  local what="$1"; shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $what (Debian: $*)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    return
  fi
  echo "error: $what not found; install it (Debian/Ubuntu: apt-get install $*)" >&2
  exit 1
}

# Prometheus's promtool checks and unit-tests the alert rules (Debian's prometheus package).
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 || apt_install "Prometheus's promtool" prometheus
}

# The PostgreSQL server binaries (initdb, pg_ctl) the throwaway clusters are made with.
ensure_postgres_server() {
  if [ -n "${DATABASE_URL:-}" ] || [ -n "${PG_BIN_DIR:-}" ] || command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return; fi
  apt_install "the PostgreSQL server" postgresql
}

# Java 17+ and Maven run the local Apache Kafka (unless KAFKA_HOME or KAFKA_BROKERS is set).
ensure_java_and_maven() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then return; fi
  command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] || apt_install "Java" openjdk-17-jre-headless
  if [ -z "${KAFKA_HOME:-}" ]; then command -v mvn >/dev/null 2>&1 || apt_install "Maven" maven; fi
}

# cargo-deny for the dependency policy (deny.toml), built once and cached.
ensure_cargo_deny() {
  local root="${XDG_CACHE_HOME:-$HOME/.cache}/clerk-sync/cargo-deny-0.20.2"
  if [ ! -x "$root/bin/cargo-deny" ]; then
    log "building cargo-deny once (cached in $root)"
    cargo install cargo-deny@0.20.2 --locked --root "$root" >&2
  fi
  export CARGO_DENY_BIN="$root/bin/cargo-deny"
}
