"""The result store: finished rows appended to a JSONL file as they finish, valid for one configuration key,
so an interrupted stage keeps them and a rerun with the same configuration resumes where it stopped."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from localbench.measure import drift

log = logging.getLogger(__name__)


class ResultStore:
    """Append-only JSONL of finished rows, valid only for one configuration key.

    On resume a torn last line (the process was killed while writing it) is cut off with a warning, and the
    rows of a load sweep that did not finish (no `load` window record after them) are dropped: the sweep
    runs again whole."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.rows: list[dict] = []
        self.windows: list[dict] = []       # measurement windows: probe readings and in-window references
        records = self._read() if self.path.exists() else []
        if records and records[0].get("key") == key:
            for record in records[1:]:
                (self.windows if record.get("record") == "window" else self.rows).append(record)
            finished = {w["window"] for w in self.windows}
            unfinished = [r for r in self.rows if r.get("phase") == "load" and r.get("window") not in finished]
            if unfinished:
                log.warning("dropping %d rows of a load sweep that did not finish (it runs again)", len(unfinished))
                self.rows = [r for r in self.rows if not (r.get("phase") == "load" and r.get("window") not in finished)]
            log.info("resuming: %d rows already measured in %s", len(self.rows), self.path)
        if not self.rows and not self.windows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"key": key}) + "\n")

    @classmethod
    def recorded(cls, path: Path) -> "ResultStore":
        """The store as its existing file holds it, under the file's own key (what an unfinished stage left)."""
        first = Path(path).open().readline()
        return cls(path, json.loads(first).get("key", "") if first.strip() else "")

    def _read(self) -> list[dict]:
        """The file's records; a torn last line is cut from the file, any other bad line skipped (warned)."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            log.warning("%s: the last line is incomplete (killed while writing?): %d bytes dropped",
                        self.path, len(data) - cut)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            data = data[:cut]
        text = data.decode(errors="replace")
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d is not valid JSON: skipped", self.path, number)
                if number == 1:
                    return []
        return records

    def done(self) -> set[tuple]:
        return {self.cell_key(r) for r in self.rows}

    @staticmethod
    def cell_key(row: dict) -> tuple:
        return (row["format"], row["quant"], row["transport"], row["prompt_id"], row["trial"], row["phase"],
                bool(row.get("cache_reuse")))

    def append(self, row: dict) -> None:
        self._write(row)
        self.rows.append(row)

    def append_window(self, window: dict) -> None:
        self._write({"record": "window", **window})
        self.windows.append(window)

    def swept(self, fmt: str, quant: str, transport: str) -> bool:
        """Whether a load sweep of this artifact and transport finished (its `load` window is recorded)."""
        return any(w.get("group") == "load" and (w.get("format"), w.get("quant"), w.get("transport")) ==
                   (fmt, quant, transport) for w in self.windows)

    def _write(self, record: dict) -> None:
        """Append one line; a full disk (or any write error) stops the stage with one line, rows kept."""
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
                f.flush()
        except OSError as exc:
            raise SystemExit(f"cannot append to {self.path}: {exc.strerror or exc}; the {len(self.rows)} rows "
                             f"before it are kept: free space and rerun to resume") from None

    def rows_with_drift(self) -> list[dict]:
        """The rows, each with how far its window's probe moved (NaN where the window was interrupted) and whether
        the window is flagged (localbench.measure.drift)."""
        windows = {w["window"]: w for w in self.windows}
        return [{**r, "window_drift": drift.window_drift(windows.get(r.get("window"))),
                 "drift_flag": bool((windows.get(r.get("window")) or {}).get("flagged"))} for r in self.rows]


def config_key(*parts) -> str:
    """A stable hash of everything that determines the rows (settings, workload, artifacts, prompts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
