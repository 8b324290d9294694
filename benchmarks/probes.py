"""Each robustness probe's cost relative to one plain evaluation of the same model (the suite on every split).

The quickstart's setting: a tiny Llama on the embedded fictitious facts (forget10), the TOFU suite with ROUGE
(greedy generation of ``--max-new-tokens``). Plain: ``suite.update_many`` + ``compute`` over the evaluation batches.
Each probe runs as a module's test runs it (after the suite, on the same batches). Reported: the paired ratio
probe / plain (median over back-to-back pairs); no target, the figure tells what a stride ``every`` buys.

    python -m benchmarks.probes
    python -m benchmarks.probes --repeats 3 --hidden-size 32
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from benchmarks._common import interleaved, median, paired_ratio, parser, setup, write_json
from mcu_lightning.data import QADataModule
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import tiny_causal_lm
from mcu_lightning.probes import Distance, Probe, ProbeContext, Quantize, Relearn, Sharpness


def probes(relearn_steps: int) -> list[Probe]:
    return [
        Relearn(split="forget", fraction=0.5, steps=relearn_steps, batch_size=8, lr=1e-3),
        Relearn(name="relearn_benign", split="retain", fraction=0.5, steps=relearn_steps, batch_size=8, lr=1e-3),
        Quantize(name="quant4", bits=4),
        Quantize(name="quant8", bits=8),
        Distance(),
        Sharpness(iterations=10, samples=5),
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("probes", __doc__.splitlines()[0])
    p.set_defaults(repeats=5, warmup=1)
    p.add_argument("--hidden-size", type=int, default=64, help="the tiny LM's width (quickstart: 64)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers (quickstart: 2)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="ROUGE generation length (quickstart: 16)")
    p.add_argument("--relearn-steps", type=int, default=10, help="relearning steps (quickstart: 10)")
    args = p.parse_args(argv)
    device = setup(args)

    data = QADataModule(data="fictitious", max_length=48, eval_batch_size=64)
    data.setup("test")
    model = (
        tiny_causal_lm(
            hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size, num_hidden_layers=args.layers
        )
        .to(device)
        .eval()
    )
    suite = QASuite(max_new_tokens=args.max_new_tokens).to(device)
    suite.bind(data.tokenizer)
    batches = [
        (split, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        for split in data.eval_splits
        for batch in data.eval_dataloader(split)
    ]

    def plain() -> object:
        suite.reset()
        with torch.no_grad():
            suite.update_many(model, batches)
        return suite.compute()

    references = {"base": {n: p.detach().clone() + 0.01 for n, p in model.named_parameters()}}
    context = ProbeContext(suite, batches, plain(), data, references)
    variants: dict[str, Callable[[], object]] = {"plain": plain}
    for probe in probes(args.relearn_steps):
        variants[probe.name] = lambda probe=probe: probe(model, context)
    with warnings.catch_warnings():  # no oracle here: forget quality and privleak warn on every evaluation
        warnings.simplefilter("ignore", UserWarning)
        times = interleaved(variants, args.repeats, args.warmup, device)
    rows = []
    base = times["plain"]
    print(f"plain evaluation: {median(base) * 1e3:.1f} ms (every split, ROUGE with {args.max_new_tokens} new tokens)")
    for name, series in times.items():
        if name == "plain":
            continue
        ratio = paired_ratio(series, base)
        print(f"{name}: ratio {ratio:.3f}  (probe {median(series) * 1e3:.1f} ms, plain {median(base) * 1e3:.1f} ms)")
        rows.append({"case": name, "seconds": median(series), "plain_seconds": median(base), "ratio": ratio})
    write_json(args.out, "probes", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
