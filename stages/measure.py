"""DVC stage `measure@<runtime>`: data/raw/<runtime>/ with requests.parquet, extra.json and server logs."""
import sys
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.measure.run import measure_runtime
from localbench.transport import servers

if __name__ == "__main__":
    setup_logging()
    servers.stop_on_signals()     # DVC's SIGTERM stops the servers as Ctrl-C does
    name = sys.argv[1]
    measure_runtime(name, params("model", "runtime", "engine", "workload", "convert", "load"), Path("data/raw") / name)
