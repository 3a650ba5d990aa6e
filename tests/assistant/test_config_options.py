"""`--set KEY=VALUE` assistant settings (mrrec eval, benchmarks/assistant.py): typed like the
setting's default, and a bad pair is refused with what it should have been."""

from __future__ import annotations

import re

import pytest

from mrrec_edge.assistant import AssistantConfig, config_options


def test_options_take_the_type_of_each_setting() -> None:
    options = config_options(
        [
            "global_k=1",
            " memory_k = 2 ",
            "temperature=0.5",
            "seed=none",
            "memory_tiers=pattern,profile",
        ]
    )
    assert options == {
        "global_k": 1,
        "memory_k": 2,
        "temperature": 0.5,
        "seed": None,
        "memory_tiers": ("pattern", "profile"),
    }
    config = AssistantConfig(**options)
    assert config.global_k == 1 and config.max_memory_calls == AssistantConfig().max_memory_calls
    assert config_options(["seed=7"]) == {"seed": 7} and config_options([]) == {}


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("global_k", "'global_k': expected KEY=VALUE, KEY one of max_memory_calls"),
        ("top_k=3", "'top_k=3': expected KEY=VALUE"),
        ("global_k=-1", "global_k takes a non-negative whole number"),
        ("memory_k=two", "memory_k takes a non-negative whole number"),
        ("temperature=hot", "temperature takes a non-negative number"),
        ("seed=x", "seed takes a non-negative whole number or none"),
        ("memory_tiers=global", "memory_tiers takes a comma-separated list of behavior, pattern"),
        ("memory_tiers=", "memory_tiers takes a comma-separated list"),
    ],
)
def test_a_bad_option_names_itself_and_what_it_takes(pair: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config_options(["global_k=1", pair])
