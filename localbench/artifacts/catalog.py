"""The artifact catalog: every models/<format>/<quant>/artifact.json the convert stages wrote."""
from __future__ import annotations

import json
from pathlib import Path

from localbench.core.types import Artifact


def configured(convert: dict) -> set[tuple[str, str]]:
    """The (format, quant) pairs params.yaml asks for (GGUF F16 is always built: it is the others' base)."""
    pairs = {(fmt, str(q)) for fmt, cfg in convert.items() for q in (cfg or {}).get("quants", [])}
    return pairs | ({("gguf", "F16")} if "gguf" in convert else set())


def artifact_rows(convert: dict, models_dir: Path = Path("models")) -> list[dict]:
    """The configured artifacts' rows, ok or failed, in a stable order (leftovers of old configs ignored)."""
    wanted = configured(convert)
    rows = [json.loads(p.read_text()) for p in sorted(Path(models_dir).glob("*/*/artifact.json"))]
    return [r for r in rows if (r["format"], r["quant"]) in wanted]


def artifacts(formats: tuple[str, ...], convert: dict,
              models_dir: Path = Path("models")) -> tuple[list[Artifact], list[dict]]:
    """Usable artifacts of the given formats, and the failed conversion rows of those formats."""
    rows = [r for r in artifact_rows(convert, models_dir) if r["format"] in formats]
    ok = [Artifact(model=r["model"], format=r["format"], quant=r["quant"], path=r["path"],
                   size_bytes=r.get("size_bytes") or 0, tokenizer_path=r.get("tokenizer_path") or "")
          for r in rows if r["status"] == "ok"]
    return ok, [r for r in rows if r["status"] != "ok"]
