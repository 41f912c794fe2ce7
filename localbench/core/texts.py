"""Pinned texts shipped with the running Python: the quality stage's evaluation text and the calibration text
of importance matrices are both built here, from segments of the interpreter's own files (no download).

A segment is `{stdlib: <path under the standard library>}` (code) or `{pydoc_topic: <name>}` (a topic of the
Language Reference in `pydoc_data.topics`, prose), both under the PSF License, each with its pinned `sha256`
and a `tokens` quota. `build_text` cuts each segment to its quota at a token boundary (the model's HF
tokenizer's offsets), records every source's hash (a mismatch with the pinned one, e.g. another Python
version, is kept in `PinnedText.sources`) and joins them with a blank line.
"""
from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def segment_source(segment: dict) -> str:
    """What a segment names, e.g. 'stdlib textwrap.py' or "pydoc_data.topics['execmodel']"."""
    if "stdlib" in segment:
        return f"stdlib {segment['stdlib']}"
    if "pydoc_topic" in segment:
        return f"pydoc_data.topics[{segment['pydoc_topic']!r}]"
    raise ValueError(f"text segment {segment} names neither `stdlib` nor `pydoc_topic`")


def segment_text(segment: dict) -> tuple[str, str]:
    """(text, label) of one segment of the running Python."""
    label = segment_source(segment)
    if "stdlib" in segment:
        return (Path(sysconfig.get_paths()["stdlib"]) / segment["stdlib"]).read_text(encoding="utf-8"), label
    from pydoc_data.topics import topics      # ~0.7 MB of strings: loaded only for a segment that needs it
    return topics[segment["pydoc_topic"]], label


@dataclass
class PinnedText:
    text: str
    sources: list[dict]     # label, sha256 (of the whole source), pinned (matches cfg), tokens quota, chars used

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    @property
    def pinned(self) -> bool:
        return all(s["pinned"] for s in self.sources)


def build_text(segments: list[dict], tokenizer) -> PinnedText:
    """The text: each segment cut to its token quota at a token boundary, joined by a blank line."""
    parts, sources = [], []
    for seg in segments:
        text, label = segment_text(seg)
        digest = sha256_text(text)
        quota = int(seg["tokens"])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) > quota:
            text = text[:enc["offset_mapping"][quota - 1][1]]
        parts.append(text)
        sources.append({"label": label, "sha256": digest, "pinned": digest == seg.get("sha256"),
                        "tokens": quota, "chars": len(text), "python": sys.version.split()[0]})
    return PinnedText("\n\n".join(parts), sources)
