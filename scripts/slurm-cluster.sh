#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests of the Slurm executor (tests/study/
# test_slurm_cluster.py) and for trying `mimscale study run --executor slurm` without a real cluster.
#
#   scripts/slurm-cluster.sh start    # munged, slurmctld, slurmd; returns when the node is idle
#   scripts/slurm-cluster.sh status   # exit 0 when sinfo answers (prints sinfo and squeue)
#   scripts/slurm-cluster.sh stop     # cancels every job and stops what `start` started
#
# Needs Debian's slurm-wlm and munge (`sudo .ci/setup` installs them) and root: the daemons run as root
# (SlurmUser=root), munged as the munge user. Not root: the script re-runs itself through sudo.
# One node named after `hostname -s` with this machine's CPU count and 90% of its memory, one partition
# `debug` (the default); no accounting (sacct does not work), processes tracked by /proc (no cgroups:
# runs inside containers and VMs without systemd). State, spool, logs and pid files live under
# $MIMSCALE_SLURM_DIR (default /tmp/mimscale-slurm); the config is /etc/slurm/slurm.conf, where every
# Slurm command looks, and it is written only if absent or written by this script before.
# `start` when a cluster already answers does nothing (exit 0, "already running"); `stop` stops only the
# daemons whose pid files `start` wrote.
set -euo pipefail

DIR=${MIMSCALE_SLURM_DIR:-/tmp/mimscale-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# mimscale single-node test cluster (scripts/slurm-cluster.sh)"
SELF=$(readlink -f "$0")
WAIT_S=${MIMSCALE_SLURM_WAIT_S:-60}  # how long start/stop wait for the daemons

say() { echo "slurm-cluster: $*"; }
die() { echo "slurm-cluster: error: $*" >&2; exit 1; }

answers() { timeout 10 sinfo -h -o %T >/dev/null 2>&1; }

need_root() {
    [ "$(id -u)" -eq 0 ] && return 0
    command -v sudo >/dev/null 2>&1 && exec sudo -E -- bash "$SELF" "$@"
    die "starting and stopping the daemons needs root: run 'sudo $0 $*'"
}

# A process that has exited but was not reaped (a daemon's parent is init, and in some containers init
# reaps nothing) still answers kill -0: it counts as gone once /proc says Z (zombie).
running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_alive() { [ -s "$1" ] && running "$(cat "$1")"; }

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already running"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null 2>&1; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
    for _ in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && [ -s /run/munge/munged.pid ]; then
            cp /run/munge/munged.pid "$DIR/munged.pid"  # ours to stop (munged cannot write in $DIR)
            return
        fi
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

write_conf() {
    if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qxF "$MARK"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's config"
    fi
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc --all)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=mimscale-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled or reaches its time limit (30 by default).
KillWait=10
InactiveLimit=0
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

cmd_start() {
    if answers; then
        say "already running: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')"
        return 0
    fi
    need_root start
    for bin in slurmctld slurmd munged sinfo; do
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] ||
            die "$bin not found: install Debian's slurm-wlm and munge (sudo .ci/setup)"
    done
    # A fresh cluster every start: no jobs or node state from an earlier one.
    rm -rf "$DIR/state" "$DIR/spool"
    install -d -m 0755 "$DIR" "$DIR/state" "$DIR/spool"
    start_munge
    write_conf
    /usr/sbin/slurmctld -i
    /usr/sbin/slurmd
    local host state=""
    host=$(hostname -s)
    for _ in $(seq $((WAIT_S * 2))); do
        state=$(timeout 10 sinfo -h -n "$host" -o %T 2>/dev/null || true)
        case "$state" in
            idle) say "started: node $host idle ($(nproc --all) CPUs), partition debug; logs in $DIR"; return 0 ;;
            down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    echo "--- $DIR/slurmctld.log" >&2; tail -n 20 "$DIR/slurmctld.log" >&2 || true
    echo "--- $DIR/slurmd.log" >&2; tail -n 20 "$DIR/slurmd.log" >&2 || true
    die "the node did not become idle within ${WAIT_S}s (state: '${state:-no answer}')"
}

stop_pid() {  # name pidfile
    local pid
    pid_alive "$2" || return 0
    pid=$(cat "$2")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq $((WAIT_S * 10))); do
        running "$pid" || { rm -f "$2"; return 0; }
        sleep 0.1
    done
    say "$1 (pid $pid) did not stop on SIGTERM; SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$2"
}

cmd_stop() {
    if ! pid_alive "$DIR/slurmctld.pid" && ! pid_alive "$DIR/slurmd.pid" && ! pid_alive "$DIR/munged.pid"; then
        say "nothing to stop (no daemon started by this script is running)"
        return 0
    fi
    need_root stop
    if answers; then  # jobs first, so that no job step outlives the daemons
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq $((WAIT_S * 2))); do
                [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid slurmd "$DIR/slurmd.pid"
    stop_pid slurmctld "$DIR/slurmctld.pid"
    stop_pid munged "$DIR/munged.pid"
    say "stopped"
}

cmd_status() {
    if answers; then
        sinfo
        squeue
        return 0
    fi
    say "no Slurm controller answers (start one: sudo $0 start)"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
