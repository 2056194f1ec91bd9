"""The time per rule of a run, read from Snakemake's log of it."""

from overlayflow import runlog

LOG = """Building DAG of jobs...
[Wed Dec  2 01:09:08 2026] Group job index (jobs in lexicogr. order):

    rule index_episode:
        input: resources/demo/a.hdf5
        jobid: 5

    rule index_episode:
        jobid: 1
[Wed Dec  2 01:09:41 2026]
Finished jobid: 5 (Rule: index_episode)
[Wed Dec  2 01:09:41 2026]
Finished jobid: 1 (Rule: index_episode)
[Wed Dec  2 01:09:41 2026]
localrule path_plan:
    input: results/episodes/a.json
    jobid: 18
[Wed Dec  2 01:09:42 2026]
rule train:
    jobid: 3
[Wed Dec  2 01:10:26 2026]
Finished jobid: 18 (Rule: path_plan)
[Wed Dec  2 01:12:42 2026]
Finished jobid: 3 (Rule: train)
"""


def test_time_per_rule_from_the_run_log(tmp_path):
    jobs = runlog.job_times(LOG)
    assert list(jobs["rule"]) == ["index_episode", "index_episode", "path_plan", "train"]
    table = runlog.rule_times(jobs)
    assert list(table.index) == ["index_episode", "path_plan", "train"]
    assert table.loc["index_episode"].tolist() == [2, 33, 66]
    assert table.loc["train"].tolist() == [1, 180, 180]
    log = tmp_path / ".snakemake" / "log" / "2026-12-02T010908.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text(LOG)
    assert runlog.latest_log(tmp_path) == log
    assert runlog.summary(log).endswith("whole run: 3 min 34 s, 4 jobs")


def test_the_report_run_after_the_workflow_does_not_hide_it(tmp_path):
    folder = tmp_path / ".snakemake" / "log"
    folder.mkdir(parents=True)
    run = folder / "2026-12-02T010908.snakemake.log"
    run.write_text(LOG)
    report = folder / "2026-12-02T011500.snakemake.log"  # `snakemake --report`: no jobs
    report.write_text("Building DAG of jobs...\nCreating report...\nReport created.\n")
    assert runlog.latest_log(tmp_path) == run
    assert runlog.summary(report).endswith("no finished jobs")
