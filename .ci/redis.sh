# A real Redis for the shared-store tests (issue 10). Sourced by .ci/run, with
# `set -euo pipefail` active, after the project is installed and before the checks.
#
# - installs Debian's redis-server if it is missing (apt-get; sudo only when not root,
#   and never one that asks for a password);
# - when Redis can be neither found nor installed (not Debian, no sudo): in CI (CI set to
#   a true value, as tests/_redis_server.py reads it) it fails; elsewhere it warns and
#   carries on, and the shared-store tests skip with their reason;
# - starts it on a free loopback port, without persistence, as a daemon;
# - waits until it answers PING, then exports AGORA_STT_TEST_REDIS_URL for the tests;
# - stops it on EXIT, chained before any EXIT trap already set (never replacing it).
#
# If AGORA_STT_TEST_REDIS_URL is already set and answers, that server is used as is.
# Try it alone:
#   bash -c 'set -euo pipefail; . .ci/redis.sh; redis-cli -u "$AGORA_STT_TEST_REDIS_URL" ping'

_agora_redis_ping() {
  [ "$(redis-cli "$@" ping 2>/dev/null || true)" = "PONG" ]
}

_agora_redis_in_ci() {
  # CI set to anything but "", 0, false or no (the test that reads it: tests/_redis_server.py).
  case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')" in
    "" | 0 | false | no) return 1 ;;
    *) return 0 ;;
  esac
}

_agora_redis_install() {
  # Status 0 when redis-server and redis-cli are there (found or installed), else 1.
  # Called as a condition, so `set -e` is off in here: every failure is returned.
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no redis-server, and no apt-get to install it with" >&2
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    # -n: never stop to ask for a password.
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
      echo "no redis-server, and apt-get needs root (no password-less sudo)" >&2
      return 1
    fi
    sudo="sudo -n"
  fi
  echo "== installing redis-server (Debian package)"
  if ! $sudo apt-get update -qq \
    || ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  then
    echo "apt-get could not install redis-server" >&2
    return 1
  fi
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1
}

_agora_redis_stop() {
  local pid i
  if [ -n "${_agora_redis_dir:-}" ] && [ -f "$_agora_redis_dir/redis.pid" ]; then
    pid="$(cat "$_agora_redis_dir/redis.pid")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do  # until the process is gone, not just its pid file (10 s)
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  [ -n "${_agora_redis_dir:-}" ] && rm -rf "$_agora_redis_dir"
  _agora_redis_dir=""
  return 0
}

_agora_redis_start() {
  local port i
  _agora_redis_dir="$(mktemp -d "${TMPDIR:-/tmp}/agora-stt-redis.XXXXXX")"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$_agora_redis_dir/redis.pid" \
    --dir "$_agora_redis_dir" --logfile "$_agora_redis_dir/redis.log"
  for i in $(seq 100); do
    if _agora_redis_ping -h 127.0.0.1 -p "$port"; then
      export AGORA_STT_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
      echo "== redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on 127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server did not answer on 127.0.0.1:$port:" >&2
  cat "$_agora_redis_dir/redis.log" >&2 || true
  return 1
}

_agora_redis_chain_exit_trap() {
  # `trap -p EXIT` prints `trap -- '<command>' EXIT`, shell-quoted: let the shell unquote it.
  _agora_redis_prev_trap=""
  local printed
  printed="$(trap -p EXIT)"
  if [ -n "$printed" ]; then
    _agora_redis_keep_trap() { _agora_redis_prev_trap="${3-}"; }
    eval "_agora_redis_keep_trap $printed"
  fi
  # On exit: stop Redis, then run the previous trap with the exit status it would have
  # seen ($? restored through a subshell; `set +e` so that this does not end the trap).
  # shellcheck disable=SC2064  # expanded now on purpose: the previous command, verbatim
  trap "_agora_redis_rc=\$?; set +e; _agora_redis_stop; (exit \$_agora_redis_rc); ${_agora_redis_prev_trap}" EXIT
}

if [ -n "${AGORA_STT_TEST_REDIS_URL:-}" ] && command -v redis-cli >/dev/null 2>&1 \
  && _agora_redis_ping -u "$AGORA_STT_TEST_REDIS_URL"; then
  echo "== using the Redis at AGORA_STT_TEST_REDIS_URL"
elif _agora_redis_install; then
  _agora_redis_chain_exit_trap
  _agora_redis_start
elif _agora_redis_in_ci; then
  echo "error: CI is set and no Redis server could be found or installed:" \
    "the shared-store tests must run here" >&2
  return 1 2>/dev/null || exit 1  # sourced (.ci/run) or run as a script
elif [ -n "${AGORA_STT_TEST_REDIS_URL:-}" ]; then
  echo "warning: no redis-server here and AGORA_STT_TEST_REDIS_URL could not be checked;" \
    "the shared-store tests will use it as it is" >&2
else
  echo "warning: no Redis server (install redis-server, or set AGORA_STT_TEST_REDIS_URL);" \
    "the shared-store tests will be skipped" >&2
fi
