#!/usr/bin/env bash
# Bring a real one-node SLURM cluster on localhost up or down, for the slurm
# executor's tests and CI (issue 23). Must run as root (Debian slurm-wlm + munge).
#
#   tests/slurm/cluster.sh up      # install if needed, start munged, slurmctld, slurmd; check srun
#   tests/slurm/cluster.sh down    # stop slurmd, slurmctld, munged (pid files / scontrol shutdown)
#   tests/slurm/cluster.sh status  # print sinfo
#
# Exit codes: 0 ok, 1 a daemon or check failed (log tail printed), 2 cannot run here
# (not root, packages missing, bad usage).
set -euo pipefail

MARKER="# Written by icl-bench tests/slurm/cluster.sh"
CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_LOG=/var/log/munge/munged.log
NODE="$(hostname -s)"

log() { printf 'cluster.sh: %s\n' "$*"; }

die() { # die CODE MESSAGE [LOGFILE...]
    local code=$1 msg=$2 f
    shift 2
    printf 'cluster.sh: %s\n' "$msg" >&2
    for f in "$@"; do
        if [[ -r $f ]]; then
            printf -- '--- last lines of %s ---\n' "$f" >&2
            tail -n 25 "$f" >&2
        fi
    done
    exit "$code"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die 2 "must run as root (it writes /etc/slurm and starts daemons)"
}

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME.
pid_alive() {
    local pid
    pid="$(tr -dc '0-9' 2>/dev/null <"$1")" || return 1
    [[ -n $pid ]] && [[ -r /proc/$pid/comm ]] && [[ "$(cat "/proc/$pid/comm")" == "$2"* ]]
}

# stop_pid PIDFILE NAME: TERM the process named by the pid file (only if it is NAME), wait.
stop_pid() {
    local pidfile=$1 name=$2 pid i
    if ! pid_alive "$pidfile" "$name"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(tr -dc '0-9' 2>/dev/null <"$pidfile")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.2
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (pid $pid) ignored TERM for 10 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    log "stopped $name (pid $pid)"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1 || true; }

ensure_packages() {
    if dpkg-query -W -f='${Status}' slurm-wlm 2>/dev/null | grep -q 'ok installed' &&
        dpkg-query -W -f='${Status}' munge 2>/dev/null | grep -q 'ok installed'; then
        return 0
    fi
    command -v apt-get >/dev/null || die 2 "slurm-wlm/munge missing and apt-get not available"
    log "installing slurm-wlm and munge (about a minute)"
    # a fresh machine may have no package lists yet: update them once if the first try fails
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge ||
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge; } ||
        die 2 "apt-get install -y -q slurm-wlm munge failed"
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    if ! pid_alive "$MUNGE_PID" munged; then
        # a stale socket or pid file from a killed munged makes it refuse to start
        rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
        runuser -u munge -- /usr/sbin/munged ||
            die 1 "munged failed to start" "$MUNGE_LOG"
        log "started munged"
    fi
    local i
    for ((i = 0; i < 25; i++)); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die 1 "munge -n | unmunge does not work" "$MUNGE_LOG"
}

real_memory() {
    local total mem
    total="$(free -m | awk '/^Mem:/ {print $2}')"
    mem=$((total - 2048))
    if ((mem > 16000)); then mem=16000; fi
    if ((mem < 512)); then mem=$((total / 2)); fi
    echo "$mem"
}

write_conf() {
    local new
    new="$(mktemp)"
    cat >"$new" <<EOF
$MARKER; rewritten on every 'up'.
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs that do not ask for memory get 1 GB per CPU instead of the whole node
DefMemPerCPU=1024
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# 'scontrol requeue' works; a cancelled or failed job is not requeued by itself
JobRequeue=1
# a node that was down (e.g. after 'down' then 'up') comes back by itself
ReturnToService=2
# a cancelled job's processes get SIGKILL 2 s after SIGTERM (default 30 s), so a test's scancel lands
KillWait=2
MailProg=/bin/true
NodeName=$NODE CPUs=$(nproc) RealMemory=$(real_memory) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    install -d -m 755 /etc/slurm
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF" && [[ ! -e $CONF.orig ]]; then
        cp -p "$CONF" "$CONF.orig"
        log "backed up the existing $CONF to $CONF.orig"
    fi
    install -m 644 "$new" "$CONF"
    rm -f "$new"
}

cluster_up() {
    need_root
    ensure_packages
    local state
    if pid_alive "$CTLD_PID" slurmctld && pid_alive "$SLURMD_PID" slurmd &&
        pid_alive "$MUNGE_PID" munged; then
        state="$(node_state)"
        if [[ -n $state && $state != down* && $state != drain* ]]; then
            log "already up: node $NODE is $state"
            return 0
        fi
    fi
    start_munge
    write_conf
    install -d -m 755 "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd

    if ! pid_alive "$CTLD_PID" slurmctld; then
        slurmctld || die 1 "slurmctld failed to start" "$LOGDIR/slurmctld.log"
        log "started slurmctld"
    else
        scontrol reconfigure >/dev/null 2>&1 || true
    fi
    if ! pid_alive "$SLURMD_PID" slurmd; then
        slurmd || die 1 "slurmd failed to start" "$LOGDIR/slurmd.log"
        log "started slurmd"
    fi

    local i resumed=0
    for ((i = 0; i < 60; i++)); do
        state="$(node_state)"
        case $state in
        idle* | mix* | alloc* | comp*) break ;;
        down* | drain* | drng* | fail*)
            if ((resumed == 0)); then
                log "node $NODE is $state; resuming it"
                scontrol update nodename="$NODE" state=resume || true
                resumed=1
            fi
            ;;
        esac
        pid_alive "$CTLD_PID" slurmctld || die 1 "slurmctld died" "$LOGDIR/slurmctld.log"
        pid_alive "$SLURMD_PID" slurmd || die 1 "slurmd died" "$LOGDIR/slurmd.log"
        sleep 0.5
    done
    [[ $state == idle* || $state == mix* || $state == alloc* || $state == comp* ]] ||
        die 1 "node $NODE not idle after 30 s (state '${state:-unknown}')" \
            "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"

    local out
    out="$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1)" ||
        die 1 "srun -N1 hostname failed: $out" "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"
    log "up: node $NODE was $state; srun -N1 hostname -> $out"
}

cluster_down() {
    need_root
    local pids="" i
    if pid_alive "$CTLD_PID" slurmctld; then
        pid_alive "$SLURMD_PID" slurmd && pids="$(tr -dc '0-9' 2>/dev/null <"$SLURMD_PID") "
        pids+="$(tr -dc '0-9' 2>/dev/null <"$CTLD_PID")"
        # stops slurmctld and every slurmd it knows; returns before they have exited
        if timeout 20 scontrol shutdown >/dev/null 2>&1; then
            for ((i = 0; i < 50; i++)); do
                ps -p "${pids// /,}" >/dev/null 2>&1 || break
                sleep 0.2
            done
            log "scontrol shutdown stopped pids $pids"
        fi
    fi
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
    stop_pid "$MUNGE_PID" munged
    log "down"
}

cluster_status() {
    command -v sinfo >/dev/null || die 2 "sinfo not found (slurm-wlm not installed)"
    sinfo || die 1 "sinfo failed: slurmctld is not reachable"
}

case "${1:-}" in
up) cluster_up ;;
down) cluster_down ;;
status) cluster_status ;;
*) die 2 "usage: $0 up|down|status" ;;
esac
