"""benchmarks/redial.py's pure parts on real ReDial dialogues (../shared/data/redial): turns,
the evaluated recommender turns and what each one sees, and ReDial titles matched to the
MovieLens 25M keyword pool by the importer's rule."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest

from tests.helpers import KEYWORDS_CSV, ROOT, SHARED_DATA

REDIAL = SHARED_DATA / "redial"


@pytest.fixture(scope="module")
def redial() -> ModuleType:
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("redial_bench", ROOT / "benchmarks" / "redial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dialogues(redial: ModuleType) -> list:
    return redial.load_dialogues("both", REDIAL)


@pytest.fixture(scope="module")
def matched(redial: ModuleType, dialogues: list) -> dict[str, str]:
    titles = {m: t for d in dialogues for m, t in d.titles.items()}
    return redial.match_titles(titles, KEYWORDS_CSV)


def test_titles_split_like_redial_writes_them(redial: ModuleType) -> None:
    assert redial.split_title("Bridesmaids  (2011)") == ("Bridesmaids", 2011)
    assert redial.split_title("How to Train Your Dragon ") == ("How to Train Your Dragon", None)
    assert redial.split_title("Ocean's 11 (2001)") == ("Ocean's 11", 2001)


def test_a_dialogue_becomes_turns_with_titles_and_the_seekers_opinions(
    redial: ModuleType, dialogues: list
) -> None:
    assert len(dialogues) == 600
    assert len(redial.load_dialogues("valid", REDIAL)) == 100
    d = dialogues[0]
    assert d.id == "15875"
    # Consecutive messages of one side are one turn; @ids read as titles.
    assert [t.seeker for t in d.turns[:4]] == [False, True, False, True]
    assert d.turns[3].text == "would u have any recommendations for me im good thanks fo asking"
    assert d.turns[6].text == "Okay, have you seen Ghostbusters (1984)?"
    assert d.turns[8].movies == ("131869", "161259")
    assert d.titles["161259"] == "How to Train Your Dragon"
    # The seeker's own answer wins over the recommender's "did not say" (2).
    assert d.liked["140066"] is True and d.liked["102249"] is True
    # Another dialogue, with dislikes: liked 0 is False, 2 leaves the movie out.
    other = next(x for x in dialogues if x.id == "12290")
    assert other.liked["143452"] is False and other.liked["99261"] is False
    assert other.liked["120948"] is True


def test_each_recommender_turn_with_a_new_catalog_movie_is_a_case(
    redial: ModuleType, dialogues: list, matched: dict[str, str]
) -> None:
    found, skipped = redial.cases(dialogues[0], lambda m: m in matched)
    assert [c.turn for c in found] == [6, 8, 10]
    first, second, third = found
    assert first.query == "comedies i like kristin wigg"
    assert [text for text, _ in first.earlier] == [
        "hi how are u",
        "would u have any recommendations for me im good thanks fo asking",
    ]
    assert first.targets == ("136983",) and first.mentioned == () and first.liked == ()
    # How to Train Your Dragon has no year: not in the catalog, so not a target.
    assert second.targets == ("131869",) and second.unmatched == ("161259",)
    assert second.mentioned == ("136983", "140066")
    assert second.liked == ("136983", "140066")
    assert second.earlier[-1] == ("comedies i like kristin wigg", ("136983",))
    assert second.conversation == (
        "hi how are u would u have any recommendations for me im good thanks fo asking "
        "comedies i like kristin wigg something like yes have watched Bridesmaids (2011) ?"
    )
    assert third.targets == ("102249",)
    assert third.liked == ("136983", "140066", "131869")  # not 161259: not in the catalog
    assert third.earlier[-1][1] == ("131869", "161259")
    assert skipped == {"no_catalog_target": 0, "no_seeker_turn": 0}
    # Over all 600 dialogues.
    every = [redial.cases(d, lambda m: m in matched) for d in dialogues]
    assert sum(len(c) for c, _ in every) == 1431
    assert sum(len(x.targets) for c, _ in every for x in c) == 1751
    assert sum(s["no_catalog_target"] for _, s in every) == 236


def test_redial_titles_land_on_the_pool_with_the_article_folded(
    redial: ModuleType, dialogues: list, matched: dict[str, str]
) -> None:
    titles = {m: t for d in dialogues for m, t in d.titles.items()}
    assert len(titles) == 1438
    assert len(matched) == 1124
    assert redial._exact_matches(titles) == 900  # as written, without the importer's rule
    by_title = {t: matched.get(m) for m, t in titles.items()}
    assert by_title["The Lion King (1994)"] == "ml:364"  # "Lion King, The (1994)"
    assert by_title["A Little Princess (1995)"] == "ml:262"
    assert by_title["Ghostbusters (1984)"] == "ml:2716"  # "Ghostbusters (a.k.a. Ghost Busters)"
    assert by_title["Bridesmaids (2011)"] == "ml:86833"
    assert by_title["How to Train Your Dragon"] is None


def test_intervals_resample_whole_dialogues(redial: ModuleType) -> None:
    values = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    groups = np.array([0, 0, 1, 1, 1])
    # Every resample of the same dialogue twice: the interval is the dialogue's own recall.
    only_first = np.zeros((10, 2), dtype=np.int64)
    assert redial.dialogue_ci(values, groups, only_first) == (1.0, 1.0)
    both = np.array([[0, 1]] * 10)
    assert redial.dialogue_ci(values, groups, both) == pytest.approx((0.4, 0.4))
