#!/usr/bin/env bash
# Start a one-node SLURM cluster for tests: munged, slurmctld and slurmd on 127.0.0.1, node
# `localhost` with every core, 80 % of the memory and two fake GPUs, one partition per argument.
#
#   ci/slurm/up.sh BASE [PARTITION ...]     partitions default to: cpu gpu
#
# State, logs, pid files and the fake GPU devices live under BASE; the config goes to /etc/slurm
# (the only place the job step's inner srun finds it), the previous one saved under BASE/etc-backup.
# Stop with ci/slurm/down.sh BASE, also after a failed start. Needs root; SLURM_CI_TIMEOUT sets
# how long to wait for the node to become idle (default 60 s).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$HERE/lib.sh"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BASE [PARTITION ...]" >&2
    exit 2
fi
BASE=$(realpath -m "$1")
shift
PARTITIONS=("$@")
[[ ${#PARTITIONS[@]} -gt 0 ]] || PARTITIONS=(cpu gpu)
TIMEOUT=${SLURM_CI_TIMEOUT:-60}

fail() {
    echo "ci/slurm/up.sh: $*" >&2
    tails "$BASE" >&2
    echo "ci/slurm/up.sh: clean up with: ci/slurm/down.sh $BASE" >&2
    exit 1
}

# alive DAEMON: DAEMON's pid file names a running process (before it is written: assume so).
alive() {
    local file=$BASE/state/$1.pid
    [[ $1 == munged ]] && file=$BASE/run/munged.pid
    [[ ! -s $file || -n $(pid_of "$file" "$1") ]]
}

# wait_for SECONDS DAEMON COMMAND...: retry COMMAND every 0.5 s until it succeeds; stop early
# when DAEMON has died (a config error is fatal at once and the log says why).
wait_for() {
    local seconds=$1 daemon=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        alive "$daemon" || fail "$daemon exited"
        ((SECONDS < deadline)) || fail "$daemon not ready after ${seconds} s"
        sleep 0.5
    done
}

[[ $EUID -eq 0 ]] || fail "must run as root (the daemons and /etc/slurm need it)"
for cmd in munged munge unmunge slurmctld slurmd sinfo scontrol mknod setpriv; do
    command -v "$cmd" >/dev/null || fail "$cmd not found: run ci/slurm/install.sh"
done
# One cluster per machine: /etc/slurm and the ports are shared.
for daemon in slurmctld slurmd; do
    pids=$(pids_of "$daemon")
    [[ -z $pids ]] || fail "a $daemon is already running (pid ${pids//$'\n'/ }): stop it first"
done

started=$SECONDS
mkdir -p "$BASE"/{state/ctld,state/d,log,run,fakegpu,etc-backup}

for i in 0 1; do
    [[ -c $BASE/fakegpu/gpu$i ]] || mknod "$BASE/fakegpu/gpu$i" c 1 3
done

# Config: keep a foreign file for down.sh; a file of ours is a leftover and is simply replaced.
mkdir -p "$ETC"
partitions=""
default=YES
for name in "${PARTITIONS[@]}"; do
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || fail "bad partition name: '$name'"
    partitions+="PartitionName=$name Nodes=ALL Default=$default MaxTime=INFINITE State=UP"$'\n'
    default=NO
done
memory_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
for file in "${CONFIGS[@]}"; do
    target=$ETC/$file
    if [[ -e $target ]] && ! head -n 1 "$target" | grep -qF "$MARKER"; then
        [[ -e $BASE/etc-backup/$file ]] || cp -p "$target" "$BASE/etc-backup/$file"
    fi
    text=$(<"$HERE/$file.in")
    text=${text//@MARKER@/$MARKER for BASE=$BASE; ci/slurm/down.sh restores the previous file.}
    text=${text//@BASE@/$BASE}
    text=${text//@CPUS@/$(nproc)}
    text=${text//@MEMORY_MB@/$memory_mb}
    text=${text//@PARTITIONS@/${partitions%$'\n'}}
    printf '%s\n' "$text" >"$target"
done

# munge: reuse a working munged (a machine's own), else start one as the munge user in the
# foreground so that the pid we record is munged's own and its log lands under BASE.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        </dev/null >>"$BASE/log/munged.log" 2>&1 &
    echo $! >"$BASE/run/munged.pid"
    wait_for 10 munged bash -c 'munge -n | unmunge'
fi

# The daemons fork into the background; their standard streams must not hold a caller's pipes.
slurmctld -c </dev/null >>"$BASE/log/slurmctld.out" 2>&1 || fail "slurmctld did not start"
wait_for "$TIMEOUT" slurmctld scontrol ping
slurmd -N localhost </dev/null >>"$BASE/log/slurmd.out" 2>&1 || fail "slurmd did not start"

node_idle() {
    local states
    states=$(sinfo -h -N -o %T 2>/dev/null) || return 1
    [[ -n $states ]] && ! grep -qv '^idle$' <<<"$states"
}
deadline=$((SECONDS + TIMEOUT))
until node_idle; do
    alive slurmd || fail "slurmd exited"
    alive slurmctld || fail "slurmctld exited"
    if ((SECONDS >= deadline)); then
        fail "node not idle after ${TIMEOUT} s: $(sinfo -h -N -o '%P %T %E' 2>&1 | tr '\n' ';')"
    fi
    sleep 0.5
done
echo "ci/slurm/up.sh: cluster up in $((SECONDS - started)) s (partitions: ${PARTITIONS[*]}; base: $BASE)"
