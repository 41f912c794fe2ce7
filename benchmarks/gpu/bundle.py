"""benchmarks/gpu_run.py's results bundle on the lent GPU machine, run from the code folder:
    python benchmarks/gpu/bundle.py WORK KEEP

bundle/results/<host>-<part>/ (one per lease) from whatever the stages have written
(localbench.analysis.bundles.export_found), with the copy-bandwidth check (WORK/bandwidth_check.json) in
roofline.json and the run's own facts in manifest.json: the packed commit, nvidia-smi, the carried wheels' sizes,
the steps done, and the versions of the packages the wheels brought; the in-process check's records beside them
where they ran. Prints the host.
"""
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

from localbench.analysis import bundles

EXTRA_PACKAGES = ("llama_cpp_python", "mlx-cuda-13", "mlx", "mlx-lm", "omegaconf")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(work: Path, keep: Path) -> None:
    bw = work / "bandwidth_check.json"
    smi = work / "nvidia_smi.csv"
    facts = {"commit": (keep / "ctl" / "commit").read_text().strip(),
             "nvidia_smi": smi.read_text() if smi.exists() else "",
             "wheel_sizes": json.loads((keep / "ctl" / "wheel_sizes.json").read_text()),
             "steps": {p.name: p.read_text() for p in sorted((work / "done").iterdir())},
             "profiles": ["gpu", "gpu-load"],
             "part": (keep / "ctl" / "part").read_text().strip() if (keep / "ctl" / "part").exists() else "all",
             "extra_packages": {n: v for n in EXTRA_PACKAGES if (v := _version(n))}}
    shutil.rmtree("bundle", ignore_errors=True)
    dest = bundles.export_found(Path("bundle") / "results", json.loads(bw.read_text()) if bw.exists() else None, facts,
                                facts["part"])
    for check in ("link_check.json", "inprocess_check.json"):      # why llama.cpp in-process ran or did not
        if (work / check).exists():
            shutil.copy2(work / check, dest / check)
    print(dest.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
