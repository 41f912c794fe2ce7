"""The PyTorch runtime through the harness on whatever device torch picks (cuda > mps > cpu), on a model
with the exact architecture of conf/model/<name>.yaml (synthetic source) and seeded random weights.

    python benchmarks/torch_device_check.py TOKENIZER_DIR [MODEL_CONF] [PROMPT_TOKENS] [MAX_TOKENS] [TRIALS]

Used to check the CUDA path on a lent GPU machine, where no model can be downloaded.
"""
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

from localbench.core.types import Artifact, Request
from localbench.measure.executor import run_request
from localbench.runtimes.torch_runtime import TorchRuntime


def main(tokenizer_dir: str, model_conf: str = "conf/model/synthetic-qwen25-coder-3b.yaml", prompt_tokens: int = 512,
         max_tokens: int = 128, trials: int = 3) -> None:
    spec = yaml.safe_load(Path(model_conf).read_text())["synthetic"]
    runtime = TorchRuntime({"device": "auto"})
    probe = runtime.probe()
    print(f"probe: {probe.version} on {probe.device}")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(int(spec.get("seed", 0)))
        with torch.device(probe.device):          # random init on the device: minutes faster than on a CPU
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec["config"]), dtype=torch.bfloat16)
        model.save_pretrained(tmp)
        del model
        session = runtime.load(Artifact(spec["architecture_of"], "hf", "bf16", tmp, tokenizer_path=tokenizer_dir),
                               "inprocess")
        ids = tuple(int(i) for i in torch.randint(100, 30000, (int(prompt_tokens),), generator=torch.Generator().manual_seed(0)))
        for trial in range(int(trials) + 1):
            f = run_request(session, Request(f"p{trial}", ids, "", int(max_tokens)), timeout_s=600)
            print(f"{'warm-up' if trial == 0 else f'trial {trial}'}: status={f['status']} ttft={f['ttft_s']:.4f}s "
                  f"decode={f['decode_tps']:.1f} tok/s prefill={f['prefill_tps']:.0f} tok/s "
                  f"out={f['output_tokens']} device_mem={f['device_mem_bytes'] / 2**30:.2f} GiB "
                  f"peak_rss={f['peak_rss_bytes'] / 2**30:.2f} GiB")
        session.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
