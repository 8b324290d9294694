"""Peak memory of curve fitting vs plain fine-tuning of the same model with the same optimizer (AdamW).

On CUDA the peak is ``torch.cuda.max_memory_allocated`` over one step. On CPU torch keeps no allocator statistics, so
the peak comes from tensor-bytes accounting: a ``TorchDispatchMode`` sees every tensor each op creates (forward,
backward and optimizer), counts its storage's bytes while any tensor on that storage is alive, and adds the
persistent state found by walking the model, the curve and the optimizer. Both are compared with
:func:`mcu_lightning.models.memory.estimate_memory` (fp32 weights here; activations taken from the plain step).
Target: the curve holds no copy of the model beyond the endpoints, the control point, its gradient and AdamW state,
i.e. ``curve peak - plain peak`` stays near ``(2 + 1 + 1 + 2) * 4 N - (1 + 2) * 4 N`` plus theta(t).

    python -m benchmarks.curve_memory
    python -m benchmarks.curve_memory --device cuda --batch-size 64 --seq-len 512 --hidden-size 512 --layers 8
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks._common import add_model_arg, build_lm, image_batch, lm_batch, parser, perturbed, setup, write_json
from benchmarks.curve_step import loss_of
from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.models import SmallConvNet, call_model
from mcu_lightning.models.memory import estimate_memory


class TensorBytes(TorchDispatchMode):
    """Live bytes of the storages created under this mode (``known`` pointers excluded), and their peak."""

    def __init__(self, known: set[int]) -> None:
        super().__init__()
        self.known = known
        self.sizes: dict[int, int] = {}
        self.holders: dict[int, int] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, Tensor):
                self._track(tensor)
        return out

    def _track(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self.known:
            return
        if ptr not in self.sizes:
            self.sizes[ptr] = storage.nbytes()
            self.current += self.sizes[ptr]
            self.peak = max(self.peak, self.current)
        self.holders[ptr] = self.holders.get(ptr, 0) + 1
        weakref.finalize(tensor, self._release, ptr)

    def _release(self, ptr: int) -> None:
        self.holders[ptr] -= 1
        if self.holders[ptr] == 0:
            del self.holders[ptr]
            self.current -= self.sizes.pop(ptr)


def live_tensors(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer) -> dict[int, int]:
    """Storage pointer -> bytes of every parameter, gradient, buffer and optimizer state tensor."""
    out: dict[int, int] = {}

    def add(tensor: Tensor | None) -> None:
        if isinstance(tensor, Tensor) and tensor.untyped_storage().data_ptr():
            out[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()

    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            add(tensor)
            add(tensor.grad)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    return out


def peak_of_step(step: Callable[[], None], modules: list[nn.Module], optimizer, device: torch.device) -> dict:
    """Persistent bytes before the step and the peak during it (the step after a warm-up one)."""
    step()  # creates the optimizer state
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        persistent = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return {"persistent": persistent, "peak": torch.cuda.max_memory_allocated(device)}
    known = live_tensors(modules, optimizer)
    persistent = sum(known.values())
    with TensorBytes(set(known)) as counter:
        step()
    return {"persistent": persistent, "peak": persistent + counter.peak}


def _plain(model: nn.Module, batch: dict, device: torch.device) -> dict:
    """Fine-tune a copy: everything it holds is freed on return (so a CUDA measurement of the curve starts clean)."""
    plain = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-4)

    def step() -> None:
        loss_of(call_model(plain, batch), batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return peak_of_step(step, [plain], optimizer, device)


def _curve(model: nn.Module, batch: dict, device: torch.device) -> dict:
    """Fit a Bezier(3) curve from the model to a perturbed copy: one step at t = 0.37."""
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    template = copy.deepcopy(model).requires_grad_(False)
    curve = Curve(template, [start, perturbed(start, 0.05, seed=1)], shape=Bezier(3)).train()
    del start  # the curve keeps its own flat copies
    optimizer = torch.optim.AdamW(curve.control_points.parameters(), lr=1e-4)

    def step() -> None:
        loss_of(curve(0.37, batch), batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return peak_of_step(step, [curve, template], optimizer, device)


def measure(model: nn.Module, batch: dict, device: torch.device) -> dict:
    return {"plain": _plain(model, batch, device), "curve": _curve(model, batch, device)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("curve_memory", __doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=16, help="conv net batch size")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--lm-batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    add_model_arg(p)
    args = p.parse_args(argv)
    device = setup(args)
    lm = build_lm(args, device, args.layers)
    cases = [
        ("conv", SmallConvNet(image_size=args.image_size, in_channels=3).to(device),
         image_batch(args.batch_size, 3, args.image_size, device), f"conv batch {args.batch_size}"),
        ("lm", lm, lm_batch(args.vocab_size, args.lm_batch_size, args.seq_len, device),
         f"lm batch {args.lm_batch_size} seq {args.seq_len}"),
    ]  # fmt: skip
    if args.model:  # a real LM: its case only
        cases = cases[1:]
    rows = []
    for kind, model, batch, label in cases:
        n = sum(p.numel() for p in model.parameters())
        mem = measure(model, batch, device)
        plain_states = estimate_memory(n, param_dtype=torch.float32, mode="finetune")
        activations = max(mem["plain"]["peak"] - plain_states.persistent, 0)
        predicted_plain = estimate_memory(n, param_dtype=torch.float32, mode="finetune", activations_bytes=activations)
        predicted_curve = estimate_memory(n, param_dtype=torch.float32, mode="curve", activations_bytes=activations)
        model_bytes = 4 * n
        extra = (mem["curve"]["peak"] - predicted_curve.total) / model_bytes
        row = {
            "case": label,
            "model": kind,
            "params": n,
            "plain_peak": mem["plain"]["peak"],
            "curve_peak": mem["curve"]["peak"],
            "plain_persistent": mem["plain"]["persistent"],
            "curve_persistent": mem["curve"]["persistent"],
            "ratio": mem["curve"]["peak"] / mem["plain"]["peak"],
            "curve_vs_predicted": mem["curve"]["peak"] / predicted_curve.total,
            "curve_persistent_vs_predicted": mem["curve"]["persistent"] / predicted_curve.persistent,
            "plain_vs_predicted": mem["plain"]["peak"] / predicted_plain.total,
            "extra_model_copies": extra,
            "target": "extra_model_copies < 1",
            "meets_target": extra < 1.0,
        }
        rows.append(row)
        mib = 2**20
        print(
            f"curve_memory {label}: curve/plain peak ratio {row['ratio']:.3f}  "
            f"(curve {row['curve_peak'] / mib:.2f} MiB, "
            f"plain {row['plain_peak'] / mib:.2f} MiB, model {model_bytes / mib:.2f} MiB)"
        )
        print(
            f"curve_memory {label}: measured/predicted  curve peak {row['curve_vs_predicted']:.3f}, curve persistent "
            f"{row['curve_persistent_vs_predicted']:.3f}, plain peak {row['plain_vs_predicted']:.3f}; "
            f"curve beyond prediction {extra:+.2f} model copies (target < 1)"
        )
    write_json(args.out, "curve_memory", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
