"""`spineassist train --replay` (``models.replay``): the plan read from the manifest's training
records, the arguments each step is rerun with, and a replay run with a stand-in trainer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.models.catalog import MODEL_DEFS
from SpineAssistLib.training.replay import final_steps, replay_argv, run_replay, training_plan


def _record(command: str, parent: dict | None = None, seconds: float = 60.0) -> dict:
    rec = {"command": command, "seconds": seconds}
    if parent is not None:
        rec["initialised_from"] = {"file": "x.pt", "sha256": "0" * 64, "training": parent}
    return rec


SCRATCH_A = "spineassist train sag_vertebra_pose --data /old/a --cache /old/c --phantoms 4 --first-seed 10 --epochs 2"
FINE_A = ("spineassist train sag_vertebra_pose --data /old/b --cache /old/c --phantoms 4 --first-seed 10 "
          "--sagittal-phantoms 3 --epochs 1 --init /old/w.pt")
CORNERS = ("spineassist train sag_disc_corners --data /old/b --cache /old/c --phantoms 4 --first-seed 10 "
           "--sagittal-phantoms 3 --epochs 1 --batch 16 --init /old/v.pt")


def _toy_manifest() -> dict:
    vertebra = _record(FINE_A, _record(SCRATCH_A))
    return {"schema": "x", "models": [
        {"name": "sag_vertebra_pose", "training": vertebra},
        {"name": "sag_disc_corners", "training": _record(CORNERS, vertebra, 120.0)},
    ]}


def test_plan_runs_parents_first_and_a_shared_step_once():
    plan = training_plan(_toy_manifest())
    assert [s.model for s in plan] == ["sag_vertebra_pose", "sag_vertebra_pose", "sag_disc_corners"]
    assert plan[0].parent is None and plan[1].parent == plan[0].key and plan[2].parent == plan[1].key
    assert final_steps(plan) == {"sag_vertebra_pose": plan[1], "sag_disc_corners": plan[2]}
    assert sum(s.recorded_seconds for s in plan) == 240.0


def test_the_bundled_manifest_replays_every_model():
    plan = training_plan()
    assert set(final_steps(plan)) == set(MODEL_DEFS)
    for name, step in final_steps(plan).items():
        assert step.model == name
    keys = [s.key for s in plan]
    assert len(keys) == len(set(keys)) and all(s.parent is None or keys.index(s.parent) < keys.index(s.key) for s in plan)


def test_replayed_arguments_use_scratch_paths_and_chain_the_weights(tmp_path):
    plan = training_plan(_toy_manifest())
    first = replay_argv(plan[0], tmp_path, None, "cpu")
    second = replay_argv(plan[1], tmp_path, tmp_path / "models" / plan[0].key / "sag_vertebra_pose.pt", "cuda")
    corners = replay_argv(plan[2], tmp_path, tmp_path / "models" / plan[1].key / "sag_vertebra_pose.pt", "cpu")

    def opt(argv, name):
        return argv[argv.index(name) + 1]

    assert first[:2] == ["train", "sag_vertebra_pose"] and "--init" not in first
    assert opt(first, "--cache") == str(tmp_path / "phantom-cache") and opt(first, "--epochs") == "2"
    assert opt(second, "--init") == str(tmp_path / "models" / plan[0].key / "sag_vertebra_pose.pt")
    assert opt(second, "--device") == "cuda" and opt(second, "--out") == str(tmp_path / "models" / plan[1].key)
    # the same phantoms and settings share one training set; other phantoms get their own
    assert opt(second, "--data") == opt(corners, "--data") != opt(first, "--data")
    assert opt(corners, "--batch") == "16" and opt(corners, "--sagittal-phantoms") == "3"


def _fake_trainer(calls: list[list[str]]):
    from SpineAssistLib.training.train import update_manifest

    def run(argv):
        calls.append(list(argv))
        name, out = argv[1], Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        weights = f"weights of {name} after {len(calls)} steps".encode()
        (out / f"{name}.pt").write_bytes(weights)
        update_manifest({"name": name, "file": f"{name}.pt", "sha256": hashlib.sha256(weights).hexdigest(),
                         "training": {"command": "spineassist " + " ".join(argv)}, "metrics": {"old": 1}},
                        out / "manifest.json")
        return 0
    return run


def test_a_replay_trains_each_step_and_ships_the_last_weights(tmp_path):
    calls: list[list[str]] = []
    out = tmp_path / "Models"
    run_replay(tmp_path / "scratch", out, manifest=_toy_manifest(), runner=_fake_trainer(calls))
    assert [c[1] for c in calls] == ["sag_vertebra_pose", "sag_vertebra_pose", "sag_disc_corners"]
    shipped = json.loads((out / "manifest.json").read_text())["models"]
    assert {m["name"] for m in shipped} == {"sag_vertebra_pose", "sag_disc_corners"}
    assert all(m["metrics"] == {} for m in shipped)             # to be scored by evaluate again
    assert (out / "sag_disc_corners.pt").read_bytes() == b"weights of sag_disc_corners after 3 steps"
    assert (out / "sag_vertebra_pose.pt").read_bytes() == b"weights of sag_vertebra_pose after 2 steps"
    # a second run finds every step done and trains nothing
    run_replay(tmp_path / "scratch", out, manifest=_toy_manifest(), runner=_fake_trainer(calls))
    assert len(calls) == 3


def test_replay_errors_say_what_is_missing(tmp_path):
    orphan = {"models": [{"name": "sag_disc_corners", "training": _record(CORNERS)}]}
    with pytest.raises(SpineAssistError, match="not recorded"):
        training_plan(orphan)
    with pytest.raises(SpineAssistError, match="no training is recorded"):
        training_plan({"models": [{"name": "sag_disc_corners", "training": {}}]})
    prepared = {"models": [{"name": "ax_msu_pose", "training": _record("spineassist train ax_msu_pose --data /nowhere/set")}]}
    with pytest.raises(SpineAssistError, match="prepared set at /nowhere/set"):
        run_replay(tmp_path, tmp_path / "out", manifest=prepared, runner=lambda argv: 0)
    # a dry run lists the step as recorded
    assert "/nowhere/set" in run_replay(tmp_path, tmp_path / "out", manifest=prepared, dry_run=True)[0]
    with pytest.raises(SpineAssistError, match="failed"):
        run_replay(tmp_path / "s", tmp_path / "out", manifest=_toy_manifest(), runner=lambda argv: 2)
