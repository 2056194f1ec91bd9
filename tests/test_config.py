from pathlib import Path

import pytest
import yaml

from overlayflow import config
from overlayflow.config import ConfigError, load, validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def test_empty_config_gets_every_default():
    cfg = load({}, SCHEMA)
    assert cfg.data.root == Path("resources/demo")
    assert cfg.data.action == "next"
    assert cfg.synthetic.enabled is True
    assert cfg.episodes()["place_block"] == ["episode0", "episode1", "episode2", "episode3"]


@pytest.mark.parametrize("name", ["config.yaml", "robotwin2.yaml"])
def test_shipped_configs_are_valid(name):
    raw = yaml.safe_load((REPO / "config" / name).read_text())
    validate(raw, SCHEMA)


def test_robotwin2_lists_the_six_single_arm_tasks():
    cfg = load(yaml.safe_load((REPO / "config" / "robotwin2.yaml").read_text()), SCHEMA)
    assert cfg.data.tasks == (
        "beat_block_hammer",
        "click_bell",
        "move_can_pot",
        "open_microwave",
        "place_object_stand",
        "turn_switch",
    )
    assert cfg.synthetic.enabled is False
    assert len(cfg.episodes()["click_bell"]) == 50


def test_every_key_is_described():
    def walk(schema, where):
        for name, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{where}{name} has no description"
            assert "default" in sub, f"{where}{name} has no default"
            walk(sub, f"{where}{name}.")

    walk(yaml.safe_load(SCHEMA.read_text()), "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"data": {"episodes": "some"}},
            r"config key data\.episodes: 'some' is not valid; expected: .*count N",
        ),
        ({"data": {"tasks": "click_bell"}}, r"config key data\.tasks: 'click_bell' is not of type"),
        ({"synthetic": {"width": "wide"}}, r"config key synthetic\.width: 'wide' is not of type"),
        ({"data": {"action": "prev"}}, r"config key data\.action: 'prev' is not one of"),
        ({"data": {"camera_name": "x"}}, r"config key data: .*'camera_name'.*allowed keys"),
        ({"data": {"episodes": "all"}}, r"data\.episodes: 'all' lists existing files"),
        (
            {"data": {"camera": "front_camera"}, "synthetic": {"cameras": ["head_camera"]}},
            r"config key data\.camera: 'front_camera' is not among the synthetic cameras",
        ),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        load(raw, SCHEMA)


def test_all_lists_existing_episodes(make_episodes):
    refs = make_episodes(n=3)
    raw = {
        "data": {"root": str(refs[0].root), "tasks": ["place_block"], "episodes": "all"},
        "synthetic": {"enabled": False},
    }
    assert load(raw, SCHEMA).episodes() == {"place_block": ["episode0", "episode1", "episode2"]}
    raw["data"]["tasks"] = ["place_block", "missing_task"]
    with pytest.raises(ConfigError, match="task 'missing_task' not found"):
        load(raw, SCHEMA).episodes()


def _with_matrix(matrix, **extra):
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["experiments"] = {}
    raw["matrix"] = matrix
    raw.update(extra)
    return raw


def test_matrix_expands_to_named_experiments():
    cfg = config.load(
        _with_matrix(
            {
                "layouts": ["overlay", "concat6", "rgb"],
                "sources": ["oracle", "hamster"],
                "seeds": [0, 1],
                "exclude": [
                    {"layout": "concat6", "source": "hamster"},
                    {"memory": "current", "seed": 1},
                ],
                "train": {"steps": 7},
            }
        ),
        SCHEMA,
    )
    names = set(cfg.experiments)
    # overlay: 2 sources × 2 memory × 2 seeds minus (current, seed 1) = 6; concat6: oracle only = 3;
    # rgb: no source, 2 memory × 2 seeds minus (current, seed 1) = 3.
    assert len(names) == 12
    assert {"overlay-mem-hamster-s1", "concat6-cur-oracle-s0", "rgb-mem-s0"} <= names
    assert not {"concat6-mem-hamster-s0", "overlay-cur-oracle-s1"} & names
    e = cfg.experiments["overlay-cur-hamster-s0"]
    assert (e.dataset, e.memory, e.seed) == ("hamster-overlay", "current", 0)
    assert e.train["steps"] == 7 and e.train["seed"] == 0
    assert e.train["policy"]["memory"] == "current"


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ({"layouts": ["overlay"], "sources": ["hamstr"]}, r"matrix\.sources: \['hamstr'\]"),
        ({"layouts": ["overlays"]}, "config key matrix.layouts"),
        ({"layouts": ["rgb"], "exclude": [{"source": "peek"}]}, r"matrix\.exclude\[0\]\.source"),
        ({"layouts": ["rgb"], "exclude": [{"colour": "red"}]}, "config key matrix.exclude"),
    ],
)
def test_unknown_names_in_the_matrix_fail_at_parse_time(matrix, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(_with_matrix(matrix), SCHEMA)
