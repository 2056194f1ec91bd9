# shellcheck shell=bash
# Shared by up.sh and down.sh (sourced, not run).

# shellcheck disable=SC2034  # used by the scripts that source this file

# The first line of every config file up.sh writes: down.sh removes only files that carry it.
MARKER="Written by ci/slurm/up.sh"
ETC=/etc/slurm
CONFIGS=(slurm.conf gres.conf)

# running PID NAME: PID is alive and is NAME. The name check keeps a stale pid file from
# signalling an unrelated process that reused the pid; a zombie counts as gone.
running() {
    local pid=$1 name=$2 stat
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# pid_of PIDFILE NAME: the pid in PIDFILE when that process is running, else nothing.
pid_of() {
    local pid
    [[ -s $1 ]] || return 0
    pid=$(tr -dc 0-9 <"$1")
    if running "$pid" "$2"; then echo "$pid"; fi
}

# pids_of NAME: the running processes called NAME (pgrep would also list zombies).
pids_of() {
    local dir
    for dir in /proc/[0-9]*; do
        if running "${dir#/proc/}" "$1"; then echo "${dir#/proc/}"; fi
    done
}

# tails BASE: the end of every daemon log, for error messages.
tails() {
    local log
    for log in "$1"/log/slurmctld.log "$1"/log/slurmd.log "$1"/log/munged.log; do
        [[ -s $log ]] || continue
        echo "--- last lines of $log"
        tail -n 15 "$log"
    done
}
