"""Task registry: visualpriors spellings, aliases, errors."""

from __future__ import annotations

import pytest

from neurotask.features.registry import ALIASES, INPUTS, TASKS, resolve_models, resolve_task


def test_tasks_are_visualpriors_tasks() -> None:
    from visualpriors.transforms import VisualPrior

    assert list(TASKS) == VisualPrior.viable_feature_tasks
    assert len(set(TASKS)) == 25


def test_taskbank_names_resolve_like_visualpriors() -> None:
    from visualpriors.taskonomy_network import task_mapping

    for old, new in task_mapping.items():
        assert resolve_task(old) == new
    assert all(target in TASKS for target in ALIASES.values())


@pytest.mark.parametrize(
    ("name", "task"),
    [("Z-Depth", "depth_zbuffer"), ("Surface Normals", "normal"), ("2.5D Segm.", "segment_unsup25d"),
     ("Camera Pose (nonfix)", "nonfixated_pose"), ("  NORMAL ", "normal"), ("class_1000", "class_object")],
)
def test_display_names(name: str, task: str) -> None:
    assert resolve_task(name) == task


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'depth'; expected one of \['autoencoding'"):
        resolve_task("depth")
    with pytest.raises(TypeError, match="must be a str"):
        resolve_task(3)  # type: ignore[arg-type]


def test_resolve_models() -> None:
    assert resolve_models("all") == TASKS
    assert resolve_models("autoencoder, rgb2sfnorm") == ("autoencoding", "normal")
    assert resolve_models(["colorization"]) == ("colorization",)
    with pytest.raises(ValueError, match=r"more than once.*'normal'"):
        resolve_models(["normal", "rgb2sfnorm"])
    with pytest.raises(ValueError, match="selects no task"):
        resolve_models([])
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        resolve_models("normal,nope")


def test_inputs() -> None:
    assert INPUTS["colorization"] == "lightness"
    assert {INPUTS[t] for t in TASKS if t != "colorization"} == {"rgb"}
