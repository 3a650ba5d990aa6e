"""SIGKILL during import, memory build, feedback, conversation saving, index rebuilds and
training checkpoint saves: the short, seeded run of the crash harness (scripts/reliability.py
runs the same with many more kill points)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import require_installed
from tests.reliability.crash import RUNNERS, Bases

#: Kill points per scenario here; import and memory build each rerun the whole job per kill.
KILLS = {
    "import": 2,
    "memory-build": 2,
    "feedback": 3,
    "conversation": 4,
    "index-rebuild": 3,
    "collab-rebuild": 3,
    "training-checkpoint": 3,
}
TRAINING_STACK = ("torch", "transformers", "peft", "safetensors", "matplotlib")


@pytest.mark.parametrize("scenario", list(KILLS))
def test_sigkill_loses_no_acknowledged_write(bases: Bases, scenario: str) -> None:
    if scenario == "training-checkpoint":
        require_installed(*TRAINING_STACK)
    report = RUNNERS[scenario](bases, KILLS[scenario], random.Random(f"crash-{scenario}"))
    assert report.failures == []
    assert report.kills == KILLS[scenario]
    if scenario in ("index-rebuild", "collab-rebuild"):
        assert report.mid_run == report.kills  # each kill hit a rebuild or a save
    if scenario in ("feedback", "conversation", "training-checkpoint"):
        # The kills landed among acknowledged writes, not only before the first one.
        assert report.acknowledged > 0


def test_harness_notices_an_index_that_does_not_match(bases: Bases, tmp_path: Path) -> None:
    """The index check is not vacuous: vectors dropped behind the store's back are noticed."""
    import shutil

    from tests.reliability.crash import index_problems, integrity_problems
    from tests.reliability.sql import run_sql

    home = tmp_path / "damaged"
    shutil.copytree(bases.built, home)
    assert integrity_problems(home) == [] and index_problems(home, ["u1"], rebuild=False) == []
    # Behind the store's back: no generation bump, so the saved index still claims to match.
    run_sql(
        home,
        "DROP TRIGGER memory_au",
        "UPDATE memory SET embedding = NULL "
        "WHERE user_id = (SELECT id FROM users WHERE ext_id = 'u1')",
    )
    problems = index_problems(home, ["u1"], rebuild=False)
    assert len(problems) == 1 and "extra" in problems[0]
    # A rebuild from SQLite repairs it: only the loaded stage reports the problem.
    assert index_problems(home, ["u1"], rebuild=True) == problems


def test_harness_notices_a_collaborative_index_that_does_not_match(
    bases: Bases, tmp_path: Path
) -> None:
    """The collaborative check is not vacuous: a saved index built from interactions that were
    since deleted behind the store's back (no generation bump) is noticed."""
    import shutil

    from tests.reliability.crash import collab_problems
    from tests.reliability.sql import run_sql

    home = tmp_path / "stale"
    shutil.copytree(bases.built, home)
    assert collab_problems(home, ["u1"]) == []  # builds and saves the index
    run_sql(
        home,
        "DROP TRIGGER records_ad",
        "DELETE FROM records WHERE user_id IN (SELECT id FROM users WHERE ext_id != 'u1')",
    )
    assert collab_problems(home, ["u1"]) == ["collaborative scores of u1 differ from a rebuild"]


def test_harness_notices_a_mixed_training_checkpoint(bases: Bases, tmp_path: Path) -> None:
    """The checkpoint check is not vacuous: a latest checkpoint whose optimizer state is the
    step before's (what an unordered, non-atomic save could leave) is noticed, and so is one
    torn (its adapter gone) that still claims to be complete."""
    require_installed(*TRAINING_STACK)
    import shutil

    from tests.reliability import checkpoints as ck
    from tests.reliability.crash import training_problems

    want = ck.reference()
    out = tmp_path / "run"
    run = ck.open_run(out)
    for step in (1, 2, 3):
        run.stage.log(ck.train_step(run, step))
        run.stage.save_checkpoint(step, run.model, run.optimizer, run.scheduler)
    assert training_problems(out, want, 3, 3)[1:] == (3, [])
    folder = out / "checkpoints"
    shutil.copy(folder / "step-2" / "optimizer.pt", folder / "step-3" / "optimizer.pt")
    assert training_problems(out, want, 3, 3)[2] == [
        "step 3: optimizer, scheduler differ from an uninterrupted run's"
    ]
    shutil.rmtree(folder / "step-3" / "adapter")
    problems = training_problems(out, want, 3, 3)[2]
    assert problems[0] == (
        "step-3 is torn: no adapter/adapter_config.json, adapter/adapter_model.safetensors"
    )
    assert problems[1].startswith("resume failed")
