"""DVC stage `artifacts`: data/artifacts.parquet (format, quant, size, bits/weight, conversion time)."""
from pathlib import Path

import pyarrow.parquet as pq

from localbench.artifacts.catalog import artifact_rows
from localbench.config.params import params
from localbench.core.schema import ARTIFACT_SCHEMA, to_table

if __name__ == "__main__":
    Path("data").mkdir(exist_ok=True)
    rows = [{k: r.get(k) for k in ARTIFACT_SCHEMA.names} for r in artifact_rows(params("convert")["convert"])]
    pq.write_table(to_table(rows, ARTIFACT_SCHEMA), "data/artifacts.parquet")   # sha256 stays in artifact.json
