"""Write params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra composition).

    python -m localbench.config.compose [HYDRA_OVERRIDE ...]     e.g. experiment=ci
"""
import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump


def compose(overrides: list[str], output: Path = Path("params.yaml"), conf: Path = Path("conf")) -> None:
    compose_and_dump(output, str(conf.resolve()), None, "config", str(Path(".dvc/plugins").resolve()), overrides)


if __name__ == "__main__":
    compose(sys.argv[1:])
