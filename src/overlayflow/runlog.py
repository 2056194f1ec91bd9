"""How long each rule of a Snakemake run took, read from Snakemake's own log of the run.

Snakemake writes every run to ``.snakemake/log/<start time>.snakemake.log``: a ``[<time>]`` line,
then ``rule <name>:`` (or ``localrule``) with its ``jobid: N`` when a job starts, and
``Finished jobid: N (Rule: <name>)`` when it ends. The table has, per rule, the number of jobs,
the wall time from its first start to its last end, and the jobs' summed time (more than the
wall time where jobs ran side by side). Times have Snakemake's one-second resolution.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
_RULE = re.compile(r"^\s*(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s*jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


def latest_log(workdir: str | Path = ".") -> Path:
    """The newest Snakemake run log under ``workdir`` that ran jobs (``--report``, ``-n`` and
    runs with nothing to do write logs too)."""
    folder = Path(workdir) / ".snakemake/log"
    logs = sorted(folder.glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no Snakemake run log under {folder}")
    for log in reversed(logs):
        if "Finished jobid" in log.read_text(errors="replace"):
            return log
    return logs[-1]


def job_times(text: str) -> pd.DataFrame:
    """One row per finished job of the run log ``text``: rule, jobid, start, end, seconds."""
    now, rule, started, rows = None, None, {}, []
    for line in text.splitlines():
        if match := _STAMP.match(line):
            now = datetime.strptime(" ".join(match[1].split()), "%a %b %d %H:%M:%S %Y")
        elif match := _RULE.match(line):
            rule = match[1]
        elif (match := _JOBID.match(line)) and rule is not None:
            started.setdefault(int(match[1]), (rule, now))
            rule = None
        elif match := _FINISHED.match(line):
            name, start = started.get(int(match[1]), (match[2], now))
            rows.append({"rule": name, "jobid": int(match[1]), "start": start, "end": now})
    table = pd.DataFrame(rows, columns=["rule", "jobid", "start", "end"])
    table[["start", "end"]] = table[["start", "end"]].astype("datetime64[s]")
    table["seconds"] = (table["end"] - table["start"]).dt.total_seconds()
    return table


def rule_times(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule, in the order the rules started: jobs, wall seconds, summed job seconds."""
    by_rule = jobs.groupby("rule", sort=False).agg(
        jobs=("jobid", "size"),
        first=("start", "min"),
        last=("end", "max"),
        job_seconds=("seconds", "sum"),
    )
    by_rule["wall_seconds"] = (by_rule["last"] - by_rule["first"]).dt.total_seconds()
    by_rule = by_rule.sort_values("first")
    return by_rule[["jobs", "wall_seconds", "job_seconds"]].astype(int)


def summary(log: str | Path) -> str:
    """The table of `rule_times` and the run's total, as text for a terminal or a log file."""
    jobs = job_times(Path(log).read_text(errors="replace"))
    if jobs.empty:
        return f"{log}: no finished jobs"
    table = rule_times(jobs)
    total = (jobs["end"].max() - jobs["start"].min()).total_seconds()
    return (
        f"time per rule ({log}):\n{table.to_string()}\n"
        f"whole run: {int(total) // 60} min {int(total) % 60} s, {len(jobs)} jobs"
    )
