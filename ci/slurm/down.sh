#!/usr/bin/env bash
# Stop the test cluster that ci/slurm/up.sh BASE started, whatever part of it is running:
# cancel its jobs, stop slurmd, slurmctld and munged by their pid files (SIGKILL after 10 s), and
# put back the /etc/slurm files it replaced. Safe to run twice or after a failed start.
#
#   ci/slurm/down.sh BASE
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$HERE/lib.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 BASE" >&2
    exit 2
fi
BASE=$(realpath -m "$1")

# stop NAME PIDFILE: SIGTERM, then SIGKILL after 10 s (a slurmd whose controller is gone can
# ignore SIGTERM); waits until the process is gone.
stop() {
    local name=$1 file=$2 pid i
    pid=$(pid_of "$file" "$name")
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            running "$pid" "$name" || break
            sleep 0.1
        done
        if running "$pid" "$name"; then
            echo "ci/slurm/down.sh: $name (pid $pid) ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                running "$pid" "$name" || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$file"
}

# Leftover jobs first, while the controller can still cancel them and slurmd kill their steps.
if [[ -n $(pid_of "$BASE/state/slurmctld.pid" slurmctld) ]]; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            [[ -z $(timeout 5 squeue -h -t PD,R,CG -o %A 2>/dev/null || true) ]] && break
            sleep 0.25
        done
    fi
fi

stop slurmd "$BASE/state/slurmd.pid"
stop slurmctld "$BASE/state/slurmctld.pid"
stop munged "$BASE/run/munged.pid"

# Put back what up.sh replaced; remove files this BASE wrote that replaced nothing (and leave
# alone those of another BASE's cluster).
for file in "${CONFIGS[@]}"; do
    if [[ -e $BASE/etc-backup/$file ]]; then
        mv -f "$BASE/etc-backup/$file" "$ETC/$file"
    elif [[ -e $ETC/$file ]] && head -n 1 "$ETC/$file" | grep -qF "$MARKER for BASE=$BASE;"; then
        rm -f "$ETC/$file"
    fi
done
