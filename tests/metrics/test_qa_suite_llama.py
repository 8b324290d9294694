"""End to end: QASuite with generation on a tiny random LlamaForCausalLM and a word-level tokenizer built here."""

import math
import warnings

import pytest
import torch
from qa_fixtures import qa_batch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mcu_lightning.metrics import QASuite

WORDS = [
    *("who", "wrote", "the", "book", "where", "was", "born", "what", "is", "author", "city", "paris", "london"),
    *("rome", "novel", "poem", "play", "alice", "bob", "carol", "she", "he", "in", "a", "of", "capital", "france"),
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def make_batch(tokenizer, rows: list[dict], start: int) -> dict:
    """A QA evaluation sub-batch from texts: {"q": ..., "a": ..., "para": ..., "pert": [...]}."""

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    def answer(text: str) -> list[int]:
        return [*ids(text), tokenizer.eos_token_id]

    batch = qa_batch(
        [ids(row["q"]) for row in rows],
        [answer(row["a"]) for row in rows],
        list(range(start, start + len(rows))),
        [answer(row["para"]) for row in rows] if "para" in rows[0] else None,
        [[answer(p) for p in row["pert"]] for row in rows] if "pert" in rows[0] else None,
        length=12,
        pad=tokenizer.pad_token_id,
    )
    batch["answer"] = [row["a"] for row in rows]
    batch["question"] = [row["q"] for row in rows]
    return batch


def tofu_like(tokenizer) -> dict[str, list[dict]]:
    qa = {"q": "who wrote the book", "a": "alice wrote the book", "para": "the book is by alice"}
    pert = {"pert": ["bob wrote the novel", "carol wrote a poem"]}
    fact = {"q": "what is the capital of france", "a": "paris", "pert": ["london", "rome"]}
    short = {"q": "where was she born", "a": "she was born in rome", "para": "in rome"}
    return {
        "forget": [make_batch(tokenizer, [qa | pert, short | pert], 0), make_batch(tokenizer, [qa | pert], 2)],
        "retain": [make_batch(tokenizer, [short | pert, qa | pert], 0)],
        "holdout": [make_batch(tokenizer, [{"q": "who is bob", "a": "bob is an author of london"}, qa], 0)],
        "real_authors": [make_batch(tokenizer, [fact, fact | {"a": "rome"}], 0)],
        "world_facts": [make_batch(tokenizer, [fact], 0)],
    }


def evaluate(suite: QASuite, model, batches) -> dict[str, float]:
    for split, split_batches in batches.items():
        for batch in split_batches:
            suite.update(model, split, batch)
    return suite.compute()


def test_every_aggregate_is_finite_and_in_range(tokenizer, model):
    batches = tofu_like(tokenizer)
    suite = QASuite(max_new_tokens=4, generation_batch_size=1)
    suite.bind(tokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(suite, model, batches)
    messages = " ".join(str(w.message) for w in caught)
    assert "forget_quality needs the oracle's per-sample truth ratios" in messages
    agg = result.aggregates
    for split in batches:
        assert agg[f"{split}/loss"] > 0 and math.isfinite(agg[f"{split}/loss"])
        for metric in ("prob", "rouge", "extraction_strength", "exact_memorization"):
            assert 0.0 <= agg[f"{split}/{metric}"] <= 1.0, f"{split}/{metric}"
    for split in ("forget", "retain", "real_authors", "world_facts"):
        assert 0.0 <= agg[f"{split}/truth_ratio"] <= 1.0
    assert "holdout/truth_ratio" not in agg
    assert 0.0 <= agg["model_utility"] <= 1.0  # 0 when a component is 0 (ROUGE of a random model)
    for attack in ("loss", "zlib", "min_k"):
        assert 0.0 <= agg[f"mia_{attack}_auc"] <= 1.0
    assert math.isnan(agg["forget_quality"]) and math.isnan(agg["privleak"])
    assert result.per_sample["forget"]["index"] == [0.0, 1.0, 2.0]

    # the same model as its own oracle: identical truth-ratio distributions and AUCs
    suite = QASuite(max_new_tokens=4, oracle=result)
    suite.bind(tokenizer)
    again = evaluate(suite, model, batches).aggregates
    assert again["forget_quality"] == pytest.approx(1.0)
    assert again["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert again["forget/rouge"] == pytest.approx(agg["forget/rouge"])  # batched generation = one prompt at a time


def test_rouge_needs_a_bound_tokenizer(tokenizer, model):
    batch = tofu_like(tokenizer)["forget"][0]
    with pytest.raises(RuntimeError, match=r"suite.bind\(tokenizer\)"):
        QASuite(max_new_tokens=2).update(model, "forget", batch)


def test_scoring_forwards_build_no_kv_cache_and_generation_keeps_it(tokenizer, model):
    """Teacher-forced forwards run with ``use_cache`` off; ``generate`` still decodes with a cache."""
    seen = []  # the use_cache each forward of the decoder resolves to (its argument, else the config's)

    def record(module, args, kwargs):
        flag = kwargs.get("use_cache")
        seen.append(module.config.use_cache if flag is None else flag)

    hook = model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        suite = QASuite(max_new_tokens=3, generation_batch_size=4)
        suite.bind(tokenizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suite.update(model, "forget", tofu_like(tokenizer)["forget"][0])
    finally:
        hook.remove()
    assert seen[:3] == [False, False, False]  # answer, paraphrased, perturbed
    assert len(seen) > 3 and all(flag is True for flag in seen[3:])  # the decoding steps
    assert model.config.use_cache is True


def test_update_many_generates_across_batches_with_the_same_results(tokenizer, model):
    """One generate call for all splits' prompts (differently padded batches re-padded together) gives the same
    per-sample values as batch-by-batch updates, with fewer generate calls."""
    batches = [(split, batch) for split, items in tofu_like(tokenizer).items() for batch in items]
    calls = {"n": 0}
    original = model.generate

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    results, progress = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for many in (False, True):
            suite = QASuite(max_new_tokens=4)
            suite.bind(tokenizer)
            model.generate = counting
            try:
                if many:
                    suite.update_many(model, batches, lambda done, total: progress.append((done, total)))
                else:
                    for split, batch in batches:
                        suite.update(model, split, batch)
            finally:
                model.generate = original
            results.append((suite.compute(), calls["n"]))
            calls["n"] = 0
    (one_by_one, calls_each), (together, calls_many) = results
    assert calls_each == len(batches) > 1 and calls_many == 1
    # progress: each scored batch, then the one generation for all of them
    assert progress == [(done, len(batches) + 1) for done in range(1, len(batches) + 2)]
    assert one_by_one.per_sample.keys() == together.per_sample.keys()
    for split, table in one_by_one.per_sample.items():
        for name, values in table.items():
            assert together.per_sample[split][name] == pytest.approx(values, rel=1e-6, nan_ok=True), (split, name)


def test_suite_keeps_what_open_unlearnings_files_carry(tokenizer, model, tmp_path):
    """Per sample: the generation, its reference and prompt, the three ROUGE numbers, the paraphrase's loss and the
    K perturbed losses, so TOFU_EVAL.json has every key open-unlearning writes for them."""
    import json

    from rouge_score import rouge_scorer

    batches = tofu_like(tokenizer)
    suite = QASuite(max_new_tokens=4)
    suite.bind(tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(suite, model, batches)
    forget, texts = result.per_sample["forget"], result.records["forget"]
    assert texts["index"] == forget["index"] == [0.0, 1.0, 2.0]
    assert texts["ground_truth"] == ["alice wrote the book", "she was born in rome", "alice wrote the book"]
    assert texts["input"][1] == "where was she born"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    for i, (generation, truth) in enumerate(zip(texts["generation"], texts["ground_truth"], strict=True)):
        score = scorer.score(truth, generation)
        assert forget["rouge"][i] == pytest.approx(score["rougeL"].recall)
        assert forget["rouge1_recall"][i] == pytest.approx(score["rouge1"].recall)
        assert forget["rougeL_f1"][i] == pytest.approx(score["rougeL"].fmeasure)
    assert [len(row) for row in texts["perturbed_loss"]] == [2, 2, 2]
    assert all(v > 0 for v in forget["para_loss"])
    assert "para_loss" not in result.per_sample["real_authors"]  # no paraphrases there: TOFU compares the answer
    suite.export(result, tmp_path)
    logs = json.loads((tmp_path / "TOFU_EVAL.json").read_text())
    assert {"forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "ra_Q_A_Prob", "ra_Q_A_PERT_Prob"} <= set(logs)
    assert logs["forget_Q_A_ROUGE"]["value_by_index"]["0"]["generation"] == texts["generation"][0]
