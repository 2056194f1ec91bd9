"""The Snakefile itself: dry runs, a real run on tiny data, bad input, style."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from conftest import REPO, run_snakemake

from overlayflow import synthetic
from overlayflow.dataset import store
from overlayflow.policy.checkpoint import load_checkpoint

pytestmark = pytest.mark.workflow

TINY = {
    "data": {"tasks": ["place_block", "stack_cube"], "episodes": 2},
    "sim": {"episodes": 2},
    "synthetic": {"width": 64, "height": 48, "step": 0.08, "cameras": ["head_camera"]},
    "overlay": {"size": [32, 32]},
    "previews": {"episodes": 1},
}
TINY_TRAINING = {
    "train": {
        "steps": 6,
        "batch_size": 4,
        "warmup_steps": 2,
        "val_ratio": 0.25,
        "val_every": 3,
        "checkpoint_every": 3,
        "log_every": 3,
        "num_workers": 0,
        "policy": {
            "image_size": 32,
            "n_layers": 1,
            "width": 32,
            "heads": 2,
            "shared_encoder": True,
            "backbone": "resnet10t",
        },
    },
    # overlay-cur-oracle-s0 and rgb-cur-s0 from the matrix (a path contrast), and a named
    # experiment with memory (a memory contrast with overlay-cur-oracle-s0).
    "matrix": {"layouts": ["overlay", "rgb"], "memory": ["current"], "sources": ["oracle"]},
    "experiments": {"overlay-mem": {"layout": "overlay", "source": "oracle"}},
    "evaluate": {"windows": 8},
}
REPORT_CATEGORIES = ("Answer", "Paths", "Previews", "Training", "Evaluation")
# Snakemake's page (scripts, styles, the rule graph) is ~3.2 MB; the results of the tiny run,
# ~0.3 MB more. A result that makes the report grow past this is not bounded.
REPORT_BUDGET = 4_000_000


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:")[1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The whole workflow on tiny data, run once for the tests below; then its report."""
    workdir = tmp_path_factory.mktemp("whole")
    cfg = write_config(workdir, {**TINY, **TINY_TRAINING})
    first = run_snakemake(workdir, "--cores", "2", "--configfile", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    report = run_snakemake(workdir, "--report", "report.html", "--configfile", str(cfg))
    assert report.returncode == 0, report.stderr[-3000:]
    return workdir, cfg


@pytest.mark.slow
def test_whole_workflow_runs_and_rerun_does_nothing(whole_run):
    """Episodes → oracle paths → overlays → datasets → previews → training → evaluation."""
    workdir, cfg = whole_run
    for task in TINY["data"]["tasks"]:
        for i in range(2):
            record = json.loads((workdir / f"results/episodes/{task}/episode{i}.json").read_text())
            assert (record["width"], record["height"]) == (64, 48)
            assert record["file"].startswith("resources/demo/")
    results = workdir / "results"
    for dataset, channels in (("oracle-overlay", 3), ("oracle-concat6", 6), ("rgb", 3)):
        root = store.open_store(results / "datasets" / f"{dataset}.zarr")
        assert root["data/image"].shape[1:] == (channels, 32, 32)
        assert root["meta/episode_ends"].shape == (4,)
        assert not (results / "datasets" / f".{dataset}.zarr.partial").exists()
    assert sorted(p.name for p in (results / "previews/oracle/place_block").iterdir()) == [
        "episode0.gif",
        "episode0.png",
    ]
    for experiment in ("overlay-cur-oracle-s0", "rgb-cur-s0", "overlay-mem"):
        model = results / "train" / experiment / "model.pt"
        assert load_checkpoint(model)["step"] == 6
        summary = json.loads((results / "eval" / f"{experiment}.json").read_text())
        assert summary["all"]["windows"] == 8 and summary["step"] == 6
        assert (results / "report" / "training" / f"{experiment}.png").exists()
    for kind in ("memory", "path"):
        assert len(pd.read_csv(results / "report" / f"compare_{kind}.csv")) == 1
    second = run_snakemake(workdir, "--cores", "2", "--configfile", str(cfg))
    assert second.returncode == 0
    assert "Nothing to be done" in second.stderr


def _report_data(workdir: Path, name: str) -> dict:
    """A data block of Snakemake's report page: ``<script id=name> var name = {...}``."""
    html = (workdir / "report.html").read_text()
    match = re.search(rf'<script id="{name}">\s*var {name} = (\{{.*?\}});?\s*</script>', html, re.S)
    assert match, f"the report embeds no {name}"
    return json.loads(match[1])


@pytest.mark.slow
def test_report_holds_the_numbers_of_the_evaluation_files(whole_run):
    workdir, _ = whole_run
    results = _report_data(workdir, "results")
    categories = _report_data(workdir, "categories")
    assert set(REPORT_CATEGORIES) <= set(categories), categories
    # Snakemake lists categories alphabetically: the answer comes first.
    assert sorted(categories)[0] == "Answer"
    assert "results/report/evaluation.csv" in categories["Evaluation"]["Other"]
    assert "results/report/answer.png" in categories["Answer"]["Other"]
    uri = results["results/report/evaluation.csv"]["data_uri"]
    table = pd.read_csv(io.BytesIO(base64.b64decode(uri.split("base64,", 1)[1])))
    assert len(table) == 3
    for _, row in table.iterrows():
        summary = json.loads((workdir / f"results/eval/{row.experiment}.json").read_text())
        for part in ("all", "visible", "occluded"):
            for metric in ("windows", "mse", "mse_norm"):
                want = summary[part].get(metric, float("nan"))
                assert row[f"{part}_{metric}"] == pytest.approx(want, rel=1e-5, nan_ok=True)
    assert "results/paths/oracle/summary.csv" in results
    assert any(key.endswith(".gif") for key in results)
    # The landing text reads each contrast (one seed: the windows' bootstrap) and warns.
    effects = pd.read_csv(workdir / "results/report/effects.csv")
    assert {("error", "memory"), ("error", "path")} <= set(
        zip(effects.measure, effects.kind, strict=True)
    )
    html = (workdir / "report.html").read_text()
    landing = json.loads(re.search(r"var workflow_desc = (.*?);\s*</script>", html, re.S)[1])
    assert landing.index("data:image/png;base64,") < landing.index("overlayflow: RoboTwin")
    assert "Memory (initial+current vs current; overlay · oracle) offline:" in landing
    assert "Caveat: synthetic demo data" in landing
    size = (workdir / "report.html").stat().st_size
    assert size < REPORT_BUDGET, f"report.html is {size:,} bytes"


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a 1400×900 window, after the page's scripts ran."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


# Appended to a copy of the report: once React has drawn the landing page, the position of the
# lead figure (the image of the figure whose caption names the contrasts) goes into the DOM.
PROBE = """<script>
setTimeout(() => {
  const figure = [...document.querySelectorAll("figure, div.figure")].find(
    (f) => f.textContent.includes("What memory and the path change"));
  const img = figure && figure.querySelector("img");
  const box = img && img.getBoundingClientRect();
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify(box ? {
    top: box.top, left: box.left, bottom: box.bottom, right: box.right,
    loaded: img.complete && img.naturalWidth > 0} : null);
  document.body.appendChild(probe);
}, 5000);
</script>"""


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(whole_run, tmp_path):
    """Snakemake's report is a JavaScript page: its sections exist only once a browser runs it,
    and its first screen (1400×900) shows the lead figure."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs chromium (.ci/run) for this test, but it is missing")
        pytest.skip("chromium is not installed: apt-get install chromium")
    workdir, _ = whole_run
    page = (workdir / "report.html").as_uri()
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", page).stdout
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", dom, flags=re.S))
    for section in ("Workflow", "Statistics", *REPORT_CATEGORIES):
        assert re.search(rf"\b{section}\b", text), f"{section} not rendered"

    probed = tmp_path / "probed.html"
    html = (workdir / "report.html").read_text()
    end = html.rindex("</body>")  # the page's own: its scripts hold the string as well
    probed.write_text(html[:end] + PROBE + html[end:])
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", probed.as_uri()).stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the probe did not run"
    box = json.loads(match[1])
    assert box is not None, "the landing page shows no lead figure"
    assert box["loaded"], box
    # Within the first screen: it starts near the top and ends above the fold.
    assert 0 <= box["top"] < 300 and box["bottom"] <= 900 and box["right"] <= 1400, box

    from PIL import Image

    shot = tmp_path / "first_screen.png"
    _chromium(browser, tmp_path / "profile", f"--screenshot={shot}", page)
    with Image.open(shot) as image:
        assert image.size == (1400, 900)
        region = np.asarray(image.convert("RGB"))[
            int(box["top"]) : int(box["bottom"]), int(box["left"]) : int(box["right"])
        ]
    # The figure's markers (visible: blue #1f77b4, occluded: red #d62728) are on the screen.
    for colour in ((31, 119, 180), (214, 39, 40)):
        near = np.abs(region.astype(int) - colour).sum(axis=2) < 40
        assert near.sum() > 20, f"no {colour} pixels where the figure should be"


@pytest.mark.slow
def test_changing_one_experiment_reruns_only_it(whole_run):
    workdir, _ = whole_run
    changed = {
        **TINY_TRAINING,
        "experiments": {
            "overlay-mem": {"layout": "overlay", "source": "oracle", "train": {"steps": 7}}
        },
    }
    cfg = write_config(workdir, {**TINY, **changed})
    dry = run_snakemake(workdir, "-n", "--configfile", str(cfg))
    assert dry.returncode == 0, dry.stderr[-3000:]
    # Its training and evaluation, and the report tables that read its evaluation.
    assert jobs(dry.stdout) == {
        "train": 1,
        "evaluate": 1,
        "training_curves": 1,
        "evaluation_table": 1,
        "compare_memory": 1,
        "all": 1,
    }
    assert "results/train/overlay-mem/model.pt" in dry.stdout
    assert "results/train/rgb-cur-s0/model.pt" not in dry.stdout


@pytest.mark.parametrize(
    ("configs", "trainings"),
    [
        (["config/study.yaml"], 12),  # layouts × memory × (oracle, stand-in) × 2 seeds
        (["config/study.yaml", "config/hidden.yaml"], 4),  # layouts × memory, stand-in, 1 seed
    ],
)
def test_the_study_configs_dry_run(tmp_path, configs, trainings):
    files = [str(REPO / c) for c in configs]
    result = run_snakemake(tmp_path, "-n", "--configfile", *files, "--replace-workflow-config")
    assert result.returncode == 0, result.stderr[-3000:]
    counted = jobs(result.stdout)
    assert counted["train"] == counted["sim_rollouts"] == trainings
    tasks = "place_block_hidden" if len(configs) == 2 else "place_block_occluded"
    assert f"resources/study/{tasks}/demo_clean/data/episode49.hdf5" in result.stdout


def test_default_config_dry_run(tmp_path):
    result = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/config.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert jobs(result.stdout) == {
        "synthetic_episodes": 2,  # place_block and its occluded variant
        "index_episode": 10,
        "path_plan": 1,
        "path_shard": 2,  # the stand-in HAMSTER's two shards
        "path_retry": 1,  # then whatever they left unanswered, on one pool of servers
        "path_episode": 20,  # 10 episodes × (oracle, hamster)
        "path_summary": 2,
        "render_frames": 10,
        "render_paths": 10,  # the hamster overlays the datasets use
        "preview": 2,
        "dataset": 2,
        "train": 4,  # the demo matrix: (overlay, rgb) × 2 memory modes, hamster paths
        "evaluate": 4,
        "sim_rollouts": 4,  # every experiment in closed loop, paths from the stand-in online
        "rollout_previews": 4,
        "training_curves": 4,
        "evaluation_table": 1,
        "compare_memory": 1,
        "compare_path": 1,
        "path_quality": 1,
        "all": 1,
    }


def test_experiment_names_may_hold_dots_and_pluses(tmp_path):
    """The schema allows [A-Za-z0-9_.+-]: the names are escaped in the wildcard constraint (as a
    regex, `ov+mem.v2` would not even match itself)."""
    experiment = {"layout": "overlay", "source": "hamster"}
    cfg = write_config(tmp_path, {"experiments": {"ov+mem.v2": experiment}})
    result = run_snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(cfg),
        "--",
        "results/eval/ov+mem.v2.json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "output: results/train/ov+mem.v2/model.pt" in result.stdout


def test_nested_command_line_config_takes_numbers(tmp_path):
    """Snakemake passes `--config data='{episodes: 2}'` on as the string '2': it still works."""
    result = run_snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config/config.yaml"),
        "--config",
        "data={episodes: 2}",
        "train={steps: 10, policy: {n_layers: 1}}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert jobs(result.stdout)["index_episode"] == 4  # 2 tasks × 2


def test_wrong_config_type_fails_at_parse_time(tmp_path):
    cfg = write_config(tmp_path, {"data": {"episodes": "many"}})
    result = run_snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert result.returncode != 0
    assert "config key data.episodes: 'many' is not valid" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_corrupt_episode_fails_alone_with_a_clear_log(tmp_path):
    root = tmp_path / "robotwin"
    synthetic.write_task(
        root,
        "click_bell",
        3,
        setting="demo_clean",
        cameras=("head_camera",),
        width=64,
        height=48,
        step=0.1,
    )
    bad = root / "click_bell/demo_clean/data/episode1.hdf5"
    bad.write_bytes(bad.read_bytes()[:5000])
    cfg = write_config(
        tmp_path,
        {
            "data": {"root": str(root), "tasks": ["click_bell"], "episodes": "all"},
            "synthetic": {"enabled": False},
        },
    )
    result = run_snakemake(tmp_path, "--cores", "2", "--keep-going", "--configfile", str(cfg))
    assert result.returncode != 0
    log = (tmp_path / "logs/episodes/click_bell/episode1.log").read_text()
    assert "episode1.hdf5 is not a readable HDF5 file" in log
    assert "logs/episodes/click_bell/episode1.log" in result.stderr
    assert (tmp_path / "results/episodes/click_bell/episode0.json").exists()
    assert (tmp_path / "results/episodes/click_bell/episode2.json").exists()
    assert not (tmp_path / "results/episodes/click_bell/episode1.json").exists()


@pytest.mark.slow
def test_robotwin2_config_dry_run_lists_every_job(tmp_path):
    root = tmp_path / "robotwin"
    config = yaml.safe_load((REPO / "config/robotwin2.yaml").read_text())
    for task in config["data"]["tasks"]:
        synthetic.write_task(
            root,
            task,
            50,
            setting=config["data"]["setting"],
            cameras=("head_camera",),
            width=32,
            height=24,
            step=0.3,
        )
    # As in a checkout: the Snakefile's own config/config.yaml (the demo) is there to be replaced.
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config/config.yaml", tmp_path / "config/config.yaml")
    result = run_snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config/robotwin2.yaml"),
        "--replace-workflow-config",
        "--config",
        f"data={{root: {root}}}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert jobs(result.stdout) == {
        "index_episode": 300,
        "path_plan": 2,  # hamster and peek
        "path_shard": 8,  # 4 shards each
        "path_retry": 2,
        "path_episode": 900,
        "path_summary": 3,
        "render_frames": 300,
        "render_paths": 900,
        "preview": 36,  # previews.episodes = 2 per task and source
        "dataset": 7,  # {oracle, hamster, peek} × {overlay, concat6}, and rgb
        "train": 3,
        "evaluate": 3,
        "training_curves": 3,
        "evaluation_table": 1,
        "compare_memory": 1,
        "compare_path": 1,
        "path_quality": 2,  # hamster and peek against the oracle
        "all": 1,
    }

    # The SLURM profile: GPU rules on the GPU partition with a GPU each, per-episode CPU jobs in
    # group jobs of 50 episodes.
    slurm = run_snakemake(
        tmp_path,
        "-n",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--config",
        f"data={{root: {root}}}",
    )
    assert slurm.returncode == 0, slurm.stderr[-3000:]
    assert jobs(slurm.stdout) == jobs(result.stdout)  # the same workflow: no demo experiments
    rules = re.split(r"\n(?=\s*rule \w+:)", slurm.stdout)

    def resources(rule):
        return [r for r in rules if re.match(rf"\s*rule {rule}:", r)]

    for rule in ("train", "evaluate", "path_shard", "path_retry"):
        assert resources(rule), rule
        assert all("slurm_partition=gpu" in r and "gpu=1" in r for r in resources(rule)), rule
    assert all("slurm_partition=cpu" in r for r in resources("index_episode"))
    assert "--signal=USR1@600" in resources("train")[0]
    assert "Group job index" in slurm.stdout


def _tool(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or name


def test_lint_and_format():
    """`snakemake --lint`, `snakefmt --check` and `ruff` are clean."""
    lint = subprocess.run([_tool("snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations" in lint.stdout + lint.stderr
    for command in (
        [_tool("snakefmt"), "--check", "Snakefile", "workflow/rules"],
        [_tool("ruff"), "check", "src", "tests", "bench", "workflow/scripts"],
        [_tool("ruff"), "format", "--check", "src", "tests", "bench", "workflow/scripts"],
    ):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, " ".join(command[1:]) + "\n" + result.stdout + result.stderr


@pytest.mark.slow
def test_paths_demo_and_a_targeted_rerun_of_one_episode(tmp_path):
    """Oracle + stand-in HAMSTER on 2 launched shards. A first look at one episode asks only its
    frames; the full run then asks the rest; one episode's file is remade from the journal
    without a server, and with its journal gone the targeted rerun asks only its frames again."""
    stats = tmp_path / "stats"
    config = {
        **TINY,
        # The stand-in finds both objects in about a fifth of these 64 × 48 frames.
        "datasets": {"min_path_success": 0.0},
        "paths": {
            "journal_dir": "results/journal",
            "sources": {
                "oracle": {"kind": "oracle"},
                "hamster": {
                    "kind": "vlm",
                    "launch": f"{sys.executable} -m overlayflow.paths.standin --protocol hamster "
                    f"--port {{port}} --stats-file {stats}/{{port}}.json",
                    "shards": 2,
                    "base_port": 18400 + os.getpid() % 500,
                    "ready_timeout": 60,
                },
            },
        },
    }
    cfg = write_config(tmp_path, config)
    stats.mkdir()

    def requests() -> int:
        total = sum(json.loads(f.read_text())["requests"] for f in stats.glob("*.json"))
        for f in stats.glob("*.json"):
            f.unlink()
        return total

    target = tmp_path / "results/paths/hamster/stack_cube/episode1.json"
    first_look = run_snakemake(
        tmp_path, str(target.relative_to(tmp_path)), "--cores", "2", "--configfile", str(cfg)
    )
    assert first_look.returncode == 0, first_look.stderr[-3000:]
    before = json.loads(target.read_text())
    assert requests() == before["frames"]  # that episode's frames, and no other
    assert not (tmp_path / "results/paths/hamster/place_block/episode0.json").exists()

    whole = run_snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    assert whole.returncode == 0, whole.stderr[-3000:]
    shards = [
        json.loads((tmp_path / f"results/paths/hamster/shards/shard{i}.json").read_text())
        for i in range(2)
    ]
    assert sum(len(s["episodes"]) for s in shards) == 4
    frames = sum(s["frames"] for s in shards)
    assert sum(s["asked"] for s in shards) == requests() == frames - before["frames"]
    assert json.loads(target.read_text())["records"] == before["records"]
    assert sum(before["counts"].values()) == before["frames"] and before["counts"]["held"] == 0
    other = tmp_path / "results/paths/hamster/place_block/episode0.json"
    other_mtime = other.stat().st_mtime

    target.unlink()
    rerun = run_snakemake(
        tmp_path, str(target.relative_to(tmp_path)), "--cores", "2", "--configfile", str(cfg)
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(target.read_text())["records"] == before["records"]
    log = (tmp_path / "logs/paths/hamster/stack_cube/episode1.log").read_text()
    assert "launched" not in log and requests() == 0

    # A lost journal: the episode job reads the journal only and says what asks the frames,
    # which asks exactly them.
    target.unlink()
    (tmp_path / "results/journal/hamster/stack_cube/episode1.jsonl").unlink()
    rerun = run_snakemake(
        tmp_path, str(target.relative_to(tmp_path)), "--cores", "2", "--configfile", str(cfg)
    )
    assert rerun.returncode != 0
    log = (tmp_path / "logs/paths/hamster/stack_cube/episode1.log").read_text()
    assert "--forcerun path_retry -- results/paths/hamster/retry.json" in log
    retry = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "--configfile",
        str(cfg),
        "--forcerun",
        "path_retry",
        "--",
        "results/paths/hamster/retry.json",
        str(target.relative_to(tmp_path)),
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert requests() == before["frames"]
    assert json.loads(target.read_text())["records"] == before["records"]
    assert other.stat().st_mtime == other_mtime


def test_only_episode_files_as_targets_narrow_the_plan(tmp_path):
    """A shard report looks like an episode's path file to a loose pattern (source/task/name):
    as a target it must plan every episode."""
    config = {
        **TINY,
        "paths": {"sources": {"broken": {"kind": "vlm", "launch": "false {port}", "shards": 1}}},
    }
    cfg = write_config(tmp_path, config)
    shard = "results/paths/broken/shards/shard0.json"
    run_snakemake(tmp_path, shard, "--cores", "2", "--configfile", str(cfg))  # the shard fails
    plan = json.loads((tmp_path / "results/paths/broken/plan.json").read_text())
    assert len(plan["frames"]) == 4, plan  # every configured episode


@pytest.mark.slow
def test_the_v1_layout_gives_the_same_dataset_as_stable_2(tmp_path):
    """The same synthetic scenes written in RoboTwin's v1.0 layout (T − 1 frames, next-state
    actions stored) and in stable_2.0's: with `next`, both datasets hold the same samples; the
    v1.0 run goes on through stand-in VLM paths to a tiny training and its evaluation."""
    stores = {}
    targets = ["results/datasets/rgb.zarr", "results/datasets/oracle-overlay.zarr"]
    for layout in ("stable_2.0", "v1.0"):
        workdir = tmp_path / layout
        workdir.mkdir()
        config = {
            **TINY,
            **TINY_TRAINING,
            "synthetic": {**TINY["synthetic"], "layout": layout},
            "paths": {"sources": {"oracle": {"kind": "oracle"}}},
            "experiments": {"e": {"layout": "overlay", "source": "oracle"}},
        }
        more = []
        if layout == "v1.0":
            config["paths"]["sources"]["hamster"] = {
                "kind": "vlm",
                "launch": f"{sys.executable} -m overlayflow.paths.standin --protocol hamster "
                "--port {port}",
                "base_port": 18900 + os.getpid() % 500,
            }
            more = ["results/paths/hamster/place_block/episode0.json", "results/eval/e.json"]
        cfg = write_config(workdir, config)
        result = run_snakemake(workdir, *targets, *more, "--cores", "2", "--configfile", str(cfg))
        assert result.returncode == 0, result.stderr[-3000:]
        stores[layout] = [zarr.open_group(workdir / target, mode="r") for target in targets]
    for old, new in zip(stores["stable_2.0"], stores["v1.0"], strict=True):
        assert list(old["meta/episode_ends"][:]) == list(new["meta/episode_ends"][:])
        for key in ("data/image", "data/state", "data/action", "data/path_status"):
            np.testing.assert_array_equal(old[key][:], new[key][:], err_msg=key)
    v1 = tmp_path / "v1.0"
    index = json.loads((v1 / "results/episodes/place_block/episode0.json").read_text())
    assert index["file"].endswith("demo_clean/place_block/aloha_agilex/data/episode_0000000.hdf5")
    hamster = json.loads((v1 / "results/paths/hamster/place_block/episode0.json").read_text())
    assert sum(hamster["counts"].values()) == index["frames"]
    assert json.loads((v1 / "results/eval/e.json").read_text())["all"]["windows"] > 0


@pytest.mark.slow
def test_a_seven_joint_embodiment_trains_on_its_16_d_vectors(tmp_path):
    """Nothing is fixed at 14: 7-joint arms (16-D state and action) go from the synthetic
    episodes through the dataset to a trained and evaluated policy."""
    config = {
        **TINY,
        "synthetic": {**TINY["synthetic"], "arm_joints": 7},
        "paths": {"sources": {"oracle": {"kind": "oracle"}}},
        **TINY_TRAINING,
        "experiments": {"franka": {"layout": "overlay", "source": "oracle"}},
    }
    cfg = write_config(tmp_path, config)
    result = run_snakemake(
        tmp_path, "results/eval/franka.json", "--cores", "2", "--configfile", str(cfg)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    store = zarr.open_group(tmp_path / "results/datasets/oracle-overlay.zarr", mode="r")
    assert store["data/state"].shape[1] == store["data/action"].shape[1] == 16
    model = load_checkpoint(tmp_path / "results/train/franka/model.pt")
    assert (
        model["settings"]["policy"]["action_dim"] == model["settings"]["policy"]["state_dim"] == 16
    )
    assert json.loads((tmp_path / "results/eval/franka.json").read_text())["all"]["windows"] > 0
