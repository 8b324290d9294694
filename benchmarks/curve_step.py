"""One curve-fitting training step vs one plain training step of the same model, batch and optimizer.

Curve step (what ``CurveModule.training_step`` does): draw t, ``Curve.forward(t, batch)`` (theta(t) =
sum_k c_k(t) P_k, then ``functional_call``), cross-entropy, backward into the control point, AdamW step. Plain step:
forward, the same loss, backward, AdamW on the model's weights. Targets: curve/plain <= 1.10 on the conv net (every
batch size), <= 1.20 on the causal LM, <= 1.10 on a real LM (``--model``).

LoRA space (``--lora R``): the curve between two rank-R adapters on q_proj/v_proj of the frozen
model (``lora_curve``, factors space: what a study's curve between LoRA endpoints trains) vs a plain LoRA step (peft,
AdamW on the adapter), same batch and loss.

    python -m benchmarks.curve_step                      # CPU defaults, < 2 min on 2 cores
    python -m benchmarks.curve_step --device cuda --batch-sizes 1,16,128,512 --lm-batch-sizes 1,8,32 --seq-len 512
    python -m benchmarks.curve_step --model smollm2-135m-instruct --lora 8 --lm-batch-sizes 4 --repeats 8
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._common import (
    add_model_arg,
    build_lm,
    image_batch,
    int_list,
    interleaved,
    lm_batch,
    median,
    paired_ratio,
    parser,
    perturbed,
    ratio_line,
    setup,
    write_json,
)
from mcu_lightning.curves import Bezier, Curve, lora_curve
from mcu_lightning.models import SmallConvNet, call_model


def loss_of(logits: Tensor, batch: dict) -> Tensor:
    """Cross-entropy: per image, or next-token on the answer (labels -100 ignored)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, batch["labels"])
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)


def paired_steps(
    plain: nn.Module, plain_opt: torch.optim.Optimizer, curve: nn.Module, curve_opt: torch.optim.Optimizer, batch: dict
) -> dict[str, Callable[[], None]]:
    """One training step each of ``curve`` (at a fresh random t per call) and ``plain``: forward, loss, backward,
    optimizer step, zero_grad."""
    ts = iter(torch.rand(1_000_000, generator=torch.Generator().manual_seed(0)).tolist())

    def plain_step() -> None:
        loss = loss_of(call_model(plain, batch), batch)
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    def curve_step() -> None:
        loss = loss_of(curve(next(ts), batch), batch)
        loss.backward()
        curve_opt.step()
        curve_opt.zero_grad(set_to_none=True)

    return {"curve": curve_step, "plain": plain_step}


def make_steps(model: nn.Module, batch: dict, lr: float = 1e-4) -> dict[str, Callable[[], None]]:
    """The curve step and the plain step, each with its own AdamW, on copies of ``model``."""
    plain = copy.deepcopy(model).train()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=lr)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    template = copy.deepcopy(model).requires_grad_(False)
    curve = Curve(template, [start, perturbed(start, 0.05, seed=1)], shape=Bezier(3)).train()
    curve_opt = torch.optim.AdamW(curve.control_points.parameters(), lr=lr)
    return paired_steps(plain, plain_opt, curve, curve_opt, batch)


def lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=4 * rank, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)


def make_lora_steps(model: nn.Module, batch: dict, rank: int, folder: Path, lr: float = 1e-4) -> dict[str, Callable]:
    """The LoRA-space curve step and the plain LoRA step (rank ``rank`` on q_proj/v_proj), each with its own AdamW;
    the curve's two endpoint adapters are random (nonzero B) and saved under ``folder``."""
    from peft import get_peft_model

    for seed in (0, 1):
        adapter = get_peft_model(copy.deepcopy(model), lora_config(rank))
        generator = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            for name, param in adapter.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=generator).to(param) * 0.02)
        adapter.save_pretrained(folder / f"end{seed}")
    plain = get_peft_model(copy.deepcopy(model), lora_config(rank)).train()
    plain_opt = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=lr)
    curve = lora_curve(copy.deepcopy(model), [folder / "end0", folder / "end1"]).train()
    curve_opt = torch.optim.AdamW(curve.control_points.parameters(), lr=lr)
    return paired_steps(plain, plain_opt, curve, curve_opt, batch)


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("curve_step", __doc__.splitlines()[0])
    p.set_defaults(repeats=40, warmup=3)
    p.add_argument("--batch-sizes", type=int_list, default=[1, 16, 128], help="conv net batch sizes")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=16, help="conv net width")
    p.add_argument("--lm-batch-sizes", type=int_list, default=[1, 8], help="causal LM batch sizes")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lora", type=int, default=0, help="also time LoRA space at this rank on the LM")
    add_model_arg(p)
    args = p.parse_args(argv)
    device = setup(args)
    rows = []
    cases = []
    if not args.model:  # a real LM (--model) is timed alone, against the 135M target of 1.10
        conv = SmallConvNet(image_size=args.image_size, in_channels=3, width=args.width).to(device)
        cases = [("conv", conv, bs, image_batch(bs, 3, args.image_size, device), 1.10) for bs in args.batch_sizes]
    lm = build_lm(args, device, args.layers)
    target = 1.10 if args.model else 1.20
    cases += [("lm", lm, bs, lm_batch(args.vocab_size, bs, args.seq_len, device), target) for bs in args.lm_batch_sizes]
    if args.lora:
        cases += [
            ("lora", lm, bs, lm_batch(args.vocab_size, bs, args.seq_len, device), target) for bs in args.lm_batch_sizes
        ]
    scratch = tempfile.TemporaryDirectory(prefix="curve_step_lora_")
    for kind, model, bs, batch, target in cases:
        if kind == "lora":
            steps = make_lora_steps(model, batch, args.lora, Path(scratch.name) / f"batch{bs}")
        else:
            steps = make_steps(model, batch)
        times = interleaved(steps, args.repeats, args.warmup, device)
        del steps
        curve_s, plain_s = median(times["curve"]), median(times["plain"])
        ratio = paired_ratio(times["curve"], times["plain"])
        label = f"{kind} batch {bs}" + (f" seq {args.seq_len}" if kind != "conv" else "")
        label += f" r {args.lora}" if kind == "lora" else ""
        print(ratio_line(f"curve_step {label}: curve/plain", curve_s, plain_s, f"<= {target:.2f}", ratio=ratio))
        rows.append(
            {
                "case": label,
                "model": kind,
                "batch_size": bs,
                "params": sum(p.numel() for p in model.parameters()),
                "curve_ms": curve_s * 1e3,
                "plain_ms": plain_s * 1e3,
                "ratio": ratio,
                "ratio_of_medians": curve_s / plain_s,
                "target": target,
                "meets_target": ratio <= target,
            }
        )
    scratch.cleanup()
    write_json(args.out, "curve_step", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
