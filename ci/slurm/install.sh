#!/usr/bin/env bash
# Install a single-machine SLURM (controller, node daemon, client tools) and munge from Debian's
# packages, only when one of their commands is missing. Needs root and apt; used by .ci/run.
set -euo pipefail

missing=()
for cmd in slurmctld slurmd sbatch squeue sinfo scancel munged munge; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
echo "ci/slurm/install.sh: installing SLURM and munge (missing: ${missing[*]})"

export DEBIAN_FRONTEND=noninteractive
# The package lists of a fresh container are empty; refresh them once before the install.
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
