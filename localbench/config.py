"""Reading params.yaml (composed from conf/ by DVC's Hydra integration) in stage entry points."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

PARAMS = Path("params.yaml")


def params(*keys: str) -> dict:
    """The params.yaml sections a stage declares (all of them when no key is given)."""
    if not PARAMS.exists():
        raise SystemExit("params.yaml is missing: run `dvc exp run` (composes it from conf/) or restore it with git")
    cfg = OmegaConf.to_container(OmegaConf.load(PARAMS), resolve=True)
    if not keys:
        return cfg
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise SystemExit(f"params.yaml has no {missing}; recompose it from conf/ (`dvc exp run`)")
    return {k: cfg[k] for k in keys}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
