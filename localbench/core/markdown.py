"""Markdown helpers: a value as a table cell, a DataFrame as a Markdown table."""
from __future__ import annotations

import math

import pandas as pd


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table."""
    if frame.empty:
        return "_(no rows)_\n"
    head = "| " + " | ".join(map(str, frame.columns)) + " |\n| " + " | ".join("---" for _ in frame.columns) + " |\n"
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))
