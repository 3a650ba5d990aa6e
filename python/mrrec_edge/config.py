"""Where mrrec-edge keeps its state, and its settings.

Everything lives under one home folder: ``$MRREC_HOME`` when set, else the platform's user data
dir (platformdirs). Settings come from ``<home>/config.toml``; every key is optional.

.. code-block:: toml

    [bundle]
    path = "/path/to/bundle"     # default: <home>/bundle; a relative path is from the home

    [embedder]
    batch_size = 64
    threads = 0                  # 0: every CPU this process may use

    [retrieval]                  # omitted: the core's tuned defaults
    exact_threshold = 4096       # filtered searches over fewer entries scan them exactly
    expansion_search = 40        # HNSW search breadth (recall vs latency)

    [assistant]                  # omitted: the orchestrator's defaults (mrrec_edge.assistant)
    global_k = 1                 # global memory entries in the prompt
    memory_k = 2                 # memories a call returns: less is faster, recalls less
    max_memory_calls = 2
    memory_token_budget = 384

    [grounding]                  # omitted: the bundle's fitted weights (mrrec bundle info)
    profile = 0.5                # each signal's weight; signals not named weigh 0
    request = 1.0
    user_cf = 1.0
    seed_cf = 0.5
    popularity = 0.2
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from mrrec_edge.errors import ConfigError
from mrrec_edge.files import user_path

APP_NAME = "mrrec-edge"
CONFIG_FILE = "config.toml"


def default_home() -> Path:
    env = os.environ.get("MRREC_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class EmbedderSettings:
    batch_size: int = 64
    threads: int = 0


@dataclass(frozen=True)
class RetrievalSettings:
    """Overrides of the core's retrieval defaults; ``None`` keeps the default."""

    exact_threshold: int | None = None
    expansion_search: int | None = None


@dataclass(frozen=True)
class AssistantSettings:
    """Overrides of the assistant's memory settings (``AssistantConfig``); ``None`` keeps the
    default. Less memory in the prompt answers faster and recalls less (docs/RESULTS.md)."""

    global_k: int | None = None
    memory_k: int | None = None
    max_memory_calls: int | None = None
    memory_token_budget: int | None = None


@dataclass(frozen=True)
class Settings:
    home: Path
    bundle_path: Path
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    assistant: AssistantSettings = field(default_factory=AssistantSettings)
    #: Grounding signal weights from config.toml; empty: the bundle's (mrrec_edge.grounding).
    grounding: dict[str, float] = field(default_factory=dict)

    @property
    def embedder_path(self) -> Path:
        return self.bundle_path / "embedder"

    @property
    def datasets_path(self) -> Path:
        return self.home / "datasets"

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / "mrrec.log"


def _section(data: dict[str, Any], name: str, cls: type, path: Path) -> Any:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: [{name}] has unknown key {key!r}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{path}: [{name}] {key} must be a non-negative integer")
        values[key] = value
    return cls(**values)


def load_settings(home: Path | None = None) -> Settings:
    """Settings for ``home`` (default: :func:`default_home`), read from its config.toml."""
    home = user_path(home or default_home())
    path = home / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - {"bundle", "embedder", "retrieval", "assistant", "grounding"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    bundle = data.get("bundle", {})
    if not isinstance(bundle, dict) or not isinstance(bundle.get("path", ""), str):
        raise ConfigError(f"{path}: [bundle] path must be a string")
    # A relative bundle path is read from the config file's folder, whatever the current one.
    bundle_path = home / Path(bundle.get("path") or "bundle").expanduser()
    return Settings(
        home=home,
        bundle_path=bundle_path,
        embedder=_section(data, "embedder", EmbedderSettings, path),
        retrieval=_section(data, "retrieval", RetrievalSettings, path),
        assistant=_section(data, "assistant", AssistantSettings, path),
        grounding=_grounding(data, path),
    )


def _grounding(data: dict[str, Any], path: Path) -> dict[str, float]:
    from mrrec_edge.errors import InputError
    from mrrec_edge.grounding import check_weights

    if "grounding" not in data:
        return {}
    try:
        return check_weights(data["grounding"], f"{path}: [grounding]")
    except InputError as exc:
        raise ConfigError(str(exc)) from None
