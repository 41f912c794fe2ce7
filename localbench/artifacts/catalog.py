"""The artifact catalog: every models/<format>/<quant>/artifact.json the convert stages wrote."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from localbench.artifacts import integrity

from localbench.artifacts.converters.gguf import IMATRIX, OLLAMA
from localbench.core.schema import ARTIFACT_SCHEMA
from localbench.core.types import Artifact, RuntimeUnavailable


def configured(convert: dict) -> set[tuple[str, str]]:
    """The (format, quant) pairs params.yaml asks for (GGUF F16 is always built: it is the others' base; the
    calibrated and Ollama-made GGUFs are named <type>-imat and <type>-ollama, localbench.artifacts.converters.gguf;
    MLX's learned quants keep their names, localbench.artifacts.converters.mlx)."""
    pairs = {(fmt, str(q)) for fmt, cfg in convert.items() if isinstance(cfg, dict) for q in cfg.get("quants", [])}
    gguf = convert.get("gguf") or {}
    pairs |= {("gguf", f"{q}{IMATRIX}") for q in gguf.get("imatrix_quants", [])}
    pairs |= {("gguf", f"{q}{OLLAMA}") for q in gguf.get("ollama_quants", [])}
    pairs |= {("mlx", str(q)) for q in (convert.get("mlx") or {}).get("learned_quants", [])}
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


def write_artifact(out_dir: Path, target: Path, model: str, fmt: str, quant: str, make: Callable[[], dict]) -> dict:
    """Run one conversion (`make()` returns its artifact row) and write out_dir/artifact.json; a conversion that
    fails is a row with status `error` (`unsupported` where the tool has no kernel for it here: RuntimeUnavailable)
    and the reason, so the pipeline goes on. Single files get their sha256."""
    try:
        row = make()
    except Exception as exc:  # noqa: BLE001 - recorded, the pipeline goes on
        logging.getLogger("convert").error("%s %s: %s", fmt, quant, exc)
        status = "unsupported" if isinstance(exc, RuntimeUnavailable) else "error"
        row = {"model": model, "format": fmt, "quant": quant, "path": str(target), "status": status,
               "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    row = integrity.record({name: row.get(name) for name in ARTIFACT_SCHEMA.names}, target)
    (Path(out_dir) / "artifact.json").write_text(json.dumps(row, indent=2))
    return row
