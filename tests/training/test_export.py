"""The LLM export's builder arguments: per precision, and the quantization variants
`benchmarks/quantization.py` compares."""

from __future__ import annotations

from tests.conftest import require_module

require_module("mrrec_train")

from mrrec_edge.bundle import DEFAULT_PRECISION, PRECISIONS  # noqa: E402
from mrrec_train.export import (  # noqa: E402
    COMMON_EXTRA_OPTIONS,
    PRECISION_EXTRA_OPTIONS,
    builder_args,
)


def test_quant_options_replace_the_precisions_own() -> None:
    assert DEFAULT_PRECISION in PRECISIONS
    shipped = builder_args("int4", "cpu")
    assert shipped[:4] == ["-e", "cpu", "-p", "int4"]
    assert set(PRECISION_EXTRA_OPTIONS["int4"]) <= set(shipped)
    variant = builder_args("int4", "cpu", ("algo_config=rtn", "is_symmetric=false"))
    assert variant[-2:] == ["algo_config=rtn", "is_symmetric=false"]
    assert not set(PRECISION_EXTRA_OPTIONS["int4"]) & set(variant)
    assert set(COMMON_EXTRA_OPTIONS) <= set(variant)  # pruning the lm_head is not a variant
    assert builder_args("int8", "cpu", ()) == builder_args("int8", "cpu")
