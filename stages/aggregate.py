"""DVC stage `aggregate`: data/requests.parquet (all rows), data/summary.parquet, metrics/summary.json."""
import json
from pathlib import Path

from localbench.analysis.aggregate import headline, read_raw, summarize
from localbench.config.params import params

if __name__ == "__main__":
    params()    # the whole configuration is valid, or one line and exit
    rows = read_raw(Path("data/raw"))
    rows.to_parquet("data/requests.parquet", index=False)
    summarize(rows).to_parquet("data/summary.parquet", index=False)
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/summary.json").write_text(json.dumps(headline(rows), indent=2))
