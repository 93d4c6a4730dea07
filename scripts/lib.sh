# Shared by scripts/dev and scripts/test: build or find what the project needs, start throwaway
# services, stop them on exit. Sourced, not run.

TANSU_VERSION=0.6.0
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/clerk-sync"

log() { printf '==> %s\n' "$*" >&2; }

# tansu (a Kafka-wire-compatible broker, the `tansu` crate), built once and cached.
ensure_tansu() {
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then return; fi
  local root="$CACHE_DIR/tansu-$TANSU_VERSION"
  if [ ! -x "$root/bin/tansu" ]; then
    log "building tansu $TANSU_VERSION once (cached in $root; takes a while on a cold machine)"
    cargo install "tansu@$TANSU_VERSION" --locked --features dynostore,postgres --root "$root" >&2
  fi
  export TANSU_BIN="$root/bin/tansu"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pg_bin_dir() {
  if [ -n "${PG_BIN_DIR:-}" ]; then echo "$PG_BIN_DIR"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# A throwaway Postgres cluster; exports DATABASE_URL. Postgres refuses to run as root, so as root
# the cluster belongs to the `postgres` system user.
start_postgres() {
  local bin; bin="$(pg_bin_dir)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "error: PostgreSQL server binaries not found; install them (apt-get install postgresql) or set DATABASE_URL" >&2
    exit 1
  fi
  PG_DIR="$(mktemp -d /tmp/clerk-sync-pg.XXXXXX)"
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -A trust -U postgres -E UTF8 --no-sync -D "$PG_DIR/data" >/dev/null
  local port; port="$(free_port)"
  "${as[@]}" "$bin/pg_ctl" -w -t 60 -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500" \
    start >/dev/null
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop)
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "Postgres on 127.0.0.1:$port"
}

start_tansu() {
  ensure_tansu
  local port; port="$(free_port)"
  TANSU_LOG_FILE="$(mktemp /tmp/clerk-sync-tansu.XXXXXX.log)"
  RUST_LOG=warn "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
    >"$TANSU_LOG_FILE" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export KAFKA_BROKERS="127.0.0.1:$port"
      log "tansu on 127.0.0.1:$port"
      return
    fi
    sleep 0.1
  done
  echo "error: tansu did not start; see $TANSU_LOG_FILE" >&2
  exit 1
}

stop_services() {
  if [ -n "${TANSU_PID:-}" ]; then kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; fi
  if [ -n "${PG_DIR:-}" ]; then "${PG_STOP[@]}" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; fi
}

# Prometheus's promtool checks and unit-tests the alert rules (Debian's prometheus package).
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Prometheus (Debian's prometheus package: promtool tests the alert rules)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
    return
  fi
  echo "error: promtool not found; install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 1
}

# cargo-deny for the dependency policy (deny.toml), built once and cached.
ensure_cargo_deny() {
  local root="$CACHE_DIR/cargo-deny-0.20.2"
  if [ ! -x "$root/bin/cargo-deny" ]; then
    log "building cargo-deny once (cached in $root)"
    cargo install cargo-deny@0.20.2 --locked --root "$root" >&2
  fi
  export CARGO_DENY_BIN="$root/bin/cargo-deny"
}
