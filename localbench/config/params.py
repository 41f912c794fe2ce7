"""Reading params.yaml (composed from conf/ by DVC's Hydra integration) in stage entry points.

Importing this module sets the pipeline's private environment (localbench.config.privacy). `params()` validates
the whole file against localbench.config.schema before returning any of it, so a wrong value stops the
first stage that starts, in one line. `engine_settings(name, cfg)` gives one runtime's engine.<name> as the typed
settings model its runtime receives (localbench.config.engines).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from localbench.config import privacy

if TYPE_CHECKING:
    from localbench.config.engines import Engine

privacy.apply()

PARAMS = Path("params.yaml")
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub")   # a line per request at INFO


def load(path: Path = PARAMS) -> dict:
    """params.yaml as a dict, resolved; SystemExit with one line when it is missing or not YAML."""
    from omegaconf import OmegaConf
    if not Path(path).exists():
        raise SystemExit(f"{path} is missing: run `dvc exp run` (composes it from conf/) or restore it with git")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # noqa: BLE001 - YAML or interpolation error: one line
        raise SystemExit(f"{path}: cannot be read: {str(exc).strip().splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise SystemExit(f"{path}: expected a mapping of config groups, got {type(cfg).__name__}")
    return cfg


def check(cfg: dict) -> None:
    """SystemExit with one line naming the key, the value and what is allowed, when `cfg` breaks the schema."""
    from localbench.config.schema import validate
    error = validate(cfg)
    if error:
        raise SystemExit(error)


def params(*keys: str) -> dict:
    """The params.yaml sections a stage declares (all of them when no key is given), after validating all."""
    cfg = load()
    check(cfg)
    if not keys:
        return cfg
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise SystemExit(f"params.yaml has no {missing}; recompose it from conf/ (`dvc exp run`)")
    return {k: cfg[k] for k in keys}


def engine_settings(name: str, cfg: dict) -> Engine:
    """engine.<name> of `cfg` (params.yaml's sections) as runtime <name>'s typed settings, every default filled
    in; SystemExit with one line when it breaks the schema."""
    from localbench.config.schema import engine
    return engine(name, (cfg.get("engine") or {}).get(name))


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
