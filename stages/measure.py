"""DVC stage `measure@<runtime>`: data/raw/<runtime>/ with requests.parquet, extra.json and server logs."""
import signal
import sys
from pathlib import Path

from localbench.config.params import params, setup_logging
from localbench.measure.run import measure_runtime
from localbench.transport import servers

if __name__ == "__main__":
    setup_logging()
    name, cfg = sys.argv[1], params("model", "runtime", "engine", "workload", "convert", "load")   # valid, or one line
    servers.stop_on_signals()     # Ctrl-C and DVC's SIGTERM stop the stage and its servers within seconds
    try:
        measure_runtime(name, cfg, Path("data/raw") / name)
    except BaseException:
        if servers.stopping() is None:
            raise
        # sessions closed in their `finally`; the rows measured so far are in data/partial/<name>.jsonl
        servers.exit_after_signal(f"measure@{name}: stopped by {signal.Signals(servers.stopping()).name}; the rows "
                                  f"measured so far are kept in data/partial/{name}.jsonl (rerun to resume)")
