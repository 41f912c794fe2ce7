"""The artifact catalog: every models/<format>/<quant>/artifact.json the convert stages wrote."""
from __future__ import annotations

import json
from pathlib import Path

from localbench.runtimes.base import Artifact


def artifact_rows(models_dir: Path = Path("models")) -> list[dict]:
    """All artifact rows, ok or failed, in a stable order."""
    return [json.loads(p.read_text()) for p in sorted(Path(models_dir).glob("*/*/artifact.json"))]


def artifacts(formats: tuple[str, ...], models_dir: Path = Path("models")) -> tuple[list[Artifact], list[dict]]:
    """Usable artifacts of the given formats, and the failed conversion rows of those formats."""
    rows = [r for r in artifact_rows(models_dir) if r["format"] in formats]
    ok = [Artifact(model=r["model"], format=r["format"], quant=r["quant"], path=r["path"],
                   size_bytes=r.get("size_bytes") or 0, tokenizer_path=r.get("tokenizer_path") or "")
          for r in rows if r["status"] == "ok"]
    return ok, [r for r in rows if r["status"] != "ok"]
