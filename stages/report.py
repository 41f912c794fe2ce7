"""DVC stage `report`: report/report.md and report/index.html (the page), from one list of sections."""
import shutil
from pathlib import Path

from localbench.config.params import params
from localbench.report.render import report_from_outputs

if __name__ == "__main__":
    cfg = params("report", "quality", "workload")
    shutil.rmtree("report", ignore_errors=True)
    report_from_outputs(cfg["report"], cfg["quality"], cfg["workload"], Path("report"))
