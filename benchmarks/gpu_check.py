"""GPU check: one short script (at most ~8 minutes on one GPU) for a machine with CUDA.

1. The quickstart study with bf16-mixed on CUDA (`mcu experiment`, trainer overridden), timed per stage.
2. A LoRA-space curve on a Llama-architecture model of >= 100M parameters built from a config (no download):
   base in bf16, two LoRA adapters (r=8 on q/v) as endpoints, CurveModule fit through the Lightning Trainer,
   printing steps per second and peak GPU memory against the memory model's prediction.

    python -m benchmarks.gpu_check                      # on a GPU machine
    python -m benchmarks.gpu_check --device cpu --hidden 64 --layers 2 --steps 3 --skip-study   # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_study(workdir: Path, accelerator: str) -> dict:
    """The quickstart study, bf16-mixed on the accelerator; returns the per-stage seconds."""
    trainer = json.dumps({"accelerator": accelerator, "devices": 1, "precision": "bf16-mixed", "log_every_n_steps": 10})
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mcu_lightning.cli",
            "experiment",
            "--config",
            str(REPO / "configs/quickstart/experiment.yaml"),
            "--trainer",
            trainer,
            "--progress",
            "false",
            "--output_dir",
            str(workdir / "runs"),
        ],
        check=True,
        cwd=workdir,
    )
    total = time.perf_counter() - started
    stages = {}
    for marker in sorted((workdir / "runs" / "quickstart").rglob("stage.json")):
        record = json.loads(marker.read_text())
        stages[record["stage"]] = round(record["seconds"], 1)
    summary = (workdir / "runs/quickstart/report/summary.md").read_text().splitlines()
    return {"wall_seconds": round(total, 1), "stages": stages, "summary_head": summary[:12]}


def llama(args: argparse.Namespace) -> torch.nn.Module:
    """The Llama-architecture model of the check on the fictitious vocabulary (>= 100M parameters by default)."""
    from mcu_lightning.models import tiny_causal_lm

    return tiny_causal_lm(
        tokenizer="fictitious",
        hidden_size=args.hidden,
        intermediate_size=int(args.hidden * 2.75),
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 256),
        max_position_embeddings=256,
        seed=0,
    )


def lora_curve_check(args: argparse.Namespace, workdir: Path) -> dict:
    from lightning.pytorch import Trainer
    from peft import LoraConfig, get_peft_model

    from mcu_lightning.data import QADataModule
    from mcu_lightning.models import estimate_memory, load_tokenizer, save_model
    from mcu_lightning.models.memory import lora_param_count
    from mcu_lightning.modules import CurveModule

    tokenizer = load_tokenizer("fictitious")
    base = llama(args)
    num_params = sum(p.numel() for p in base.parameters())
    base_dir = save_model(base.to(torch.bfloat16), workdir / "base", tokenizer=tokenizer)
    adapters = []
    for seed in (1, 2):
        model = get_peft_model(
            llama(args),
            LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"]),
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        folder = workdir / f"adapter{seed}"
        model.save_pretrained(str(folder))
        adapters.append(str(folder))
    module = CurveModule(endpoints=adapters, base=str(base_dir), dtype="bfloat16", eval_ts=3)
    data = QADataModule(tokenizer="fictitious", batch_size=args.batch_size, max_length=64)
    trainer = Trainer(
        accelerator=args.device if args.device != "cuda" else "gpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - started
    lora_params = lora_param_count(base.config, r=8, target_modules=("q_proj", "v_proj"))
    predicted = estimate_memory(num_params=num_params, param_dtype="bfloat16", mode="curve", lora_params=lora_params)
    result = {
        "num_params": num_params,
        "lora_params": lora_params,
        "steps": args.steps,
        "steps_per_second": round(args.steps / seconds, 2),
        "predicted_bytes_without_activations": predicted.total,
    }
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
        result.update(peak_bytes=peak, peak_over_prediction=round(peak / predicted.total, 3))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result: dict = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device}
        if not args.skip_study:
            result["study"] = run_study(workdir, "gpu" if args.device == "cuda" else args.device)
        result["lora_curve"] = lora_curve_check(args, workdir)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
