#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, for the workflow's `slurm` tests.
#   tests/slurm/cluster.sh start    install slurm-wlm + munge if missing, write the config, start the
#                                   daemons, wait until the nodes are idle
#   tests/slurm/cluster.sh stop     stop the daemons this script started, remove the files it wrote and
#                                   the packages it installed (UQROUTE_SLURM_KEEP_PACKAGES=1 keeps them)
#   tests/slurm/cluster.sh status   sinfo; exit 0 only when our cluster answers
# Needs root (it writes /etc/slurm and starts daemons). It never touches a real cluster: it refuses
# when /etc/slurm/slurm.conf or gres.conf exists without its marker, or a slurmctld it did not start runs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MARKER="uqroute-test-cluster"
CONF_DIR=/etc/slurm
STATE=${UQROUTE_SLURM_STATE:-/var/tmp/uqroute-slurm}
HOST=$(hostname -s)
MUNGE_RUN=/run/munge
PACKAGES_RECORD=/var/lib/uqroute-slurm-packages  # outside $STATE: it outlives a stop that keeps packages
START_TIMEOUT=${UQROUTE_SLURM_START_TIMEOUT:-120}

die() { echo "cluster.sh: $*" >&2; exit 1; }

ours() {  # file absent, or written by this script
    [ ! -e "$1" ] || grep -q "$MARKER" "$1"
}

refuse_foreign_cluster() {
    for conf in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        ours "$conf" || die "refusing: $conf exists and was not written by this script (a real cluster?)"
    done
    if pgrep -x slurmctld >/dev/null && [ ! -s "$STATE/slurmctld.pid" ]; then
        die "refusing: a slurmctld runs that this script did not start"
    fi
}

installed_packages() { dpkg-query --show --showformat='${db:Status-Status} ${Package}\n' | awk '$1 == "installed" {print $2}' | sort; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are missing and installing them needs root"
    echo "cluster.sh: installing slurm-wlm and munge with apt-get"
    installed_packages >"$STATE/packages.before"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    # Recorded so that stop removes exactly these: SLURM commands left installed without a controller cost
    # every later snakemake start ~10 s (the slurm plugin asks `scontrol show config` when it loads).
    installed_packages | comm -13 "$STATE/packages.before" - >"$PACKAGES_RECORD"
}

remove_packages() {
    [ -s "$PACKAGES_RECORD" ] || return 0
    echo "cluster.sh: removing the packages start installed"
    # shellcheck disable=SC2046  # one package name per line
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $(cat "$PACKAGES_RECORD") >/dev/null
    rm -f "$PACKAGES_RECORD"
}

render() {  # template -> file, atomically
    sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" "$1" >"$2.tmp.$$"
    mv "$2.tmp.$$" "$2"
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        echo "cluster.sh: munged already runs; using it"
        return
    fi
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- munged --pid-file="$MUNGE_RUN/munged.pid"
    echo munged >>"$STATE/started"
    wait_for "munged answers" 30 bash -c 'munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1'
}

wait_for() {  # description, seconds, command...
    local what=$1 seconds=$2 waited=0
    shift 2
    until "$@"; do
        [ "$waited" -lt "$seconds" ] || die "gave up after ${seconds}s waiting until $what (logs in $STATE)"
        sleep 1
        waited=$((waited + 1))
    done
}

nodes_idle() {  # both nodes: the machine, and paper-node that --test-only needs
    [ "$(sinfo --noheader --Node --format=%T 2>/dev/null | sort -u)" = idle ]
}

start() {
    refuse_foreign_cluster
    if pid_alive "$STATE/slurmctld.pid" && nodes_idle; then
        echo "cluster.sh: already running"; return
    fi
    mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$CONF_DIR"
    install_packages
    render "$HERE/slurm.conf.template" "$CONF_DIR/slurm.conf"
    render "$HERE/gres.conf.template" "$CONF_DIR/gres.conf"
    for i in 0 1 2 3; do [ -e "$STATE/gpu$i" ] || mknod "$STATE/gpu$i" c 1 3; done  # /dev/null's numbers
    start_munge
    pid_alive "$STATE/slurmctld.pid" || { slurmctld -i; echo slurmctld >>"$STATE/started"; }
    pid_alive "$STATE/slurmd.pid" || { slurmd; echo slurmd >>"$STATE/started"; }
    wait_for "sinfo shows every node idle" "$START_TIMEOUT" nodes_idle
    sinfo
}

stop_daemon() {  # name, pid file: stop it, only if this script started it
    local pidfile=$2
    grep -qx "$1" "$STATE/started" 2>/dev/null || return 0
    if pid_alive "$pidfile"; then
        local pid
        pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

stop() {
    refuse_foreign_cluster
    # Jobs first, so no job outlives the cluster (slurmd's steps end with it anyway).
    if pid_alive "$STATE/slurmctld.pid"; then scancel --full --quiet 2>/dev/null || true; fi
    stop_daemon slurmd "$STATE/slurmd.pid"
    stop_daemon slurmctld "$STATE/slurmctld.pid"
    stop_daemon munged "$MUNGE_RUN/munged.pid"
    for conf in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        [ -e "$conf" ] && ours "$conf" && rm -f "$conf"
    done
    rm -rf "$STATE"
    [ "${UQROUTE_SLURM_KEEP_PACKAGES:-0}" = 1 ] || remove_packages
    echo "cluster.sh: stopped"
}

status() {
    ours "$CONF_DIR/slurm.conf" && [ -e "$CONF_DIR/slurm.conf" ] || { echo "cluster.sh: not running"; return 1; }
    sinfo
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
