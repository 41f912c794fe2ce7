"""The report as section objects: report.md and report/index.html are both written from one list of Sections.

A section holds blocks in order: Markdown text, a table (a DataFrame; columns starting with "_" are anchors and
filter keys the page uses, not shown), or a figure (a PNG for Markdown, an interactive chart for the page).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from localbench.core.markdown import table


@dataclass(frozen=True)
class Figure:
    """One figure: its PNG, shown by report.md; the page draws an interactive chart in its place where
    localbench.report.charts has one of the PNG's name, else inlines the PNG."""
    title: str
    png: Path


@dataclass
class Section:
    """One titled part of the report. `collapsed`: closed by default on the page (calibration, fidelity, drift)."""
    id: str
    title: str
    blocks: list = field(default_factory=list)      # str (Markdown) | pd.DataFrame | Figure
    collapsed: bool = False
    level: int = 2

    def markdown(self) -> str:
        """The section in Markdown: its heading, then its blocks."""
        return "\n".join([f"{'#' * self.level} {self.title}\n", *map(block_markdown, self.blocks)])


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """A table's columns for people: the page's anchor and filter columns ("_..." names) left out."""
    return frame[[c for c in frame.columns if not str(c).startswith("_")]]


def block_markdown(block) -> str:
    if isinstance(block, pd.DataFrame):
        return table(shown(block))
    if isinstance(block, Figure):
        return f"![{block.title}](../{block.png.as_posix()})\n"
    return block


def to_markdown(sections: list[Section]) -> str:
    """report.md: the sections in order."""
    return "\n".join(s.markdown() for s in sections)
