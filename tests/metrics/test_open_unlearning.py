"""open-unlearning's TOFU_EVAL.json / TOFU_SUMMARY.json: written from our results, read back as an oracle."""

import json
import math

import numpy as np
import pytest
from test_qa_suite import run

from mcu_lightning.core.names import TOFU_EVAL_JSON, TOFU_SUMMARY_JSON
from mcu_lightning.metrics import EvalResult, QASuite
from mcu_lightning.metrics.forget_quality import forget_quality
from mcu_lightning.metrics.open_unlearning import from_open_unlearning, to_open_unlearning, write_open_unlearning
from mcu_lightning.metrics.oracle import load_oracle, oracle_aggregate, oracle_values


def _oracle(n: int = 40, seed: int = 0) -> EvalResult:
    rng = np.random.default_rng(seed)
    index = [float(i) for i in range(n)]  # per-sample values are ordered by index (EvalResult)
    tr = rng.lognormal(0.0, 0.4, n).tolist()
    prob = rng.uniform(0.1, 0.9, n).tolist()
    per_sample = {
        "forget": {"index": index, "truth_ratio": tr, "prob": prob, "loss": [-math.log(p) for p in prob]},
        "holdout": {"index": index, "mia_min_k": rng.normal(2.0, 1.0, n).tolist()},
    }
    aggregates = {"forget/truth_ratio": 0.7, "forget/prob": float(np.mean(prob)), "mia_min_k_auc": 0.55}
    aggregates.update({"forget_quality": math.nan, "model_utility": 0.61, "privleak": -3.0})
    return EvalResult(aggregates=aggregates, per_sample=per_sample)


def test_round_trip_gives_the_same_forget_quality(tmp_path):
    ours = _oracle()
    ours.to_json(tmp_path / "test_metrics.json")
    write_open_unlearning(ours, tmp_path)
    from_ours, from_theirs = load_oracle(tmp_path / "test_metrics.json"), load_oracle(tmp_path / TOFU_EVAL_JSON)
    model_tr = np.random.default_rng(1).lognormal(0.5, 0.4, 40)
    expected = forget_quality(model_tr, oracle_values(from_ours, "forget", "truth_ratio"))
    assert 0 < expected < 0.5  # a real comparison, not the trivial p = 1
    assert forget_quality(model_tr, oracle_values(from_theirs, "forget", "truth_ratio")) == expected
    np.testing.assert_array_equal(
        oracle_values(from_theirs, "forget", "truth_ratio"), oracle_values(from_ours, "forget", "truth_ratio")
    )
    assert oracle_aggregate(from_theirs, "mia_min_k_auc") == 0.55


def test_schema_and_names(tmp_path):
    logs, summary = to_open_unlearning(_oracle())
    assert set(logs) == {
        "forget_Q_A_Prob",
        "forget_truth_ratio",
        "mia_min_k",
        "forget_quality",
        "model_utility",
        "privleak",
    }
    row = logs["forget_Q_A_Prob"]["value_by_index"]["0"]
    assert set(row) == {"prob", "avg_loss"} and row["avg_loss"] == pytest.approx(-math.log(row["prob"]))
    assert list(logs["forget_truth_ratio"]["value_by_index"]) == [str(i) for i in range(40)]  # sorted by index
    assert logs["mia_min_k"]["agg_value"] == logs["mia_min_k"]["auc"] == 0.55
    assert len(logs["mia_min_k"]["holdout"]["value_by_index"]) == 40
    holdout = _oracle().per_sample["holdout"]["mia_min_k"]
    assert logs["mia_min_k"]["holdout"]["agg_value"] == pytest.approx(np.mean(holdout))  # its attack's mean score
    assert logs["forget_quality"] == {"agg_value": None}  # NaN -> null, as open-unlearning writes a missing p-value
    assert summary == {  # a null aggregate is left out, as open-unlearning's summarize does
        "forget_Q_A_Prob": logs["forget_Q_A_Prob"]["agg_value"],
        "forget_truth_ratio": 0.7,
        "model_utility": 0.61,
        "privleak": -3.0,
    }
    eval_path, summary_path = write_open_unlearning(_oracle(), tmp_path)
    assert json.loads(eval_path.read_text()) == json.loads(json.dumps(logs))
    assert json.loads(summary_path.read_text()) == summary


def test_reads_an_open_unlearning_retain_log(tmp_path):
    """A file laid out as open-unlearning's evaluator writes it (keys sorted, string indices, extra fields)."""
    log = {
        "forget_Q_A_Prob": {"agg_value": 0.2, "value_by_index": {"1": {"prob": 0.3, "avg_loss": 1.2}, "0": None}},
        "forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {"1": {"score": 0.5}, "0": {"score": 0.8}}},
        "mia_min_k": {"agg_value": 0.4, "auc": 0.4, "forget": {"value_by_index": {}}},
        "forget_quality": {"agg_value": None},
    }
    (tmp_path / TOFU_EVAL_JSON).write_text(json.dumps(log, indent=4))
    oracle = load_oracle(tmp_path / TOFU_EVAL_JSON)
    assert oracle.per_sample["forget"]["index"] == [0.0, 1.0]
    assert oracle.per_sample["forget"]["truth_ratio"] == [0.8, 0.5]
    assert math.isnan(oracle.per_sample["forget"]["prob"][0])
    assert oracle.aggregates["mia_min_k_auc"] == 0.4 and math.isnan(oracle.aggregates["forget_quality"])


def test_a_log_without_oracle_metrics_is_refused(tmp_path):
    with pytest.raises(ValueError, match="without 'forget_truth_ratio' or 'mia_min_k'"):
        from_open_unlearning({"model_utility": {"agg_value": 0.5}})


def test_suite_writes_both_files_and_reads_either_oracle(bigram, tmp_path):
    with pytest.warns(UserWarning):
        oracle = run(QASuite(rouge=False), bigram)
    oracle.aggregates.update({"mia_loss_auc": 0.5, "mia_zlib_auc": 0.5, "mia_min_k_auc": 0.5})
    names = QASuite(rouge=False).export(oracle, tmp_path)
    assert names == [TOFU_EVAL_JSON, TOFU_SUMMARY_JSON]
    logs = json.loads((tmp_path / TOFU_EVAL_JSON).read_text())
    assert "ra_Q_A_Prob_normalised" in logs and "ra_Truth_Ratio" in logs  # real authors: normalised prob
    oracle.to_json(tmp_path / "test_metrics.json")
    results = []
    for path in (tmp_path / "test_metrics.json", tmp_path / TOFU_EVAL_JSON):
        with pytest.warns(UserWarning, match="model_utility"):
            results.append(run(QASuite(rouge=False, oracle=str(path)), bigram))
    for name in ("forget_quality", "privleak", "privleak_loss", "privleak_zlib"):
        assert results[0].aggregates[name] == results[1].aggregates[name], name
    assert results[1].aggregates["privleak"] == pytest.approx(-75.0)


K = 3  # perturbed answers per question


def _full(n: int = 6, seed: int = 0) -> EvalResult:
    """Every per-sample column and record the QA suite produces, on the four TOFU splits and the holdout; one
    NaN (a sample without answer tokens) and one missing perturbed option."""
    rng = np.random.default_rng(seed)
    index = [float(i) for i in range(n)]
    per_sample, records, aggregates = {}, {}, {}
    for split in ("forget", "retain", "real_authors", "world_facts", "holdout"):
        loss = rng.uniform(0.2, 3.0, n).tolist()
        table = {"index": index, "loss": loss, "truth_ratio": rng.lognormal(0, 0.4, n).tolist()}
        table["prob"] = [math.exp(-v) for v in loss]
        if split in ("real_authors", "world_facts"):
            table["prob"] = rng.uniform(0.2, 0.9, n).tolist()  # normalised: not exp(-loss)
        if split in ("forget", "retain"):
            table["para_loss"] = rng.uniform(0.2, 3.0, n).tolist()
        table.update({c: rng.uniform(0, 1, n).tolist() for c in ("rouge", "rouge1_recall", "rougeL_f1")})
        table.update({c: rng.uniform(0, 1, n).tolist() for c in ("extraction_strength", "exact_memorization")})
        table.update({"mia_min_k": rng.normal(2, 1, n).tolist(), "mia_zlib": rng.uniform(0, 0.1, n).tolist()})
        table.update(
            {c: rng.normal(0, 1, n).tolist() for c in ("mia_min_k_plus_plus", "mia_gradnorm", "mia_reference")}
        )
        per_sample[split] = table
        pert = rng.uniform(0.2, 3.0, (n, K)).tolist()
        pert[1][2] = math.nan
        records[split] = {
            "index": index,
            "perturbed_loss": pert,
            "generation": [f"{split} generation {i} é" for i in range(n)],
            "ground_truth": [f"{split} answer {i}" for i in range(n)],
            "input": [f"{split} question {i}?" for i in range(n)],
        }
        for metric in ("prob", "rouge", "truth_ratio"):
            aggregates[f"{split}/{metric}"] = float(np.mean(table[metric]))
    per_sample["forget"]["exact_memorization"][2] = math.nan
    aggregates.update({"forget/extraction_strength": 0.4, "forget/exact_memorization": 0.5})
    aggregates.update({"mia_loss_auc": 0.6, "mia_zlib_auc": 0.55, "mia_min_k_auc": 0.52})
    aggregates.update({"mia_min_k_plus_plus_auc": 0.51, "mia_gradnorm_auc": 0.49, "mia_reference_auc": 0.58})
    aggregates.update({"forget_quality": 0.03, "model_utility": 0.61, "privleak": -3.0})
    return EvalResult(aggregates=aggregates, per_sample=per_sample, records=records)


def test_every_key_open_unlearning_writes_for_our_metrics():
    logs, summary = to_open_unlearning(_full())
    per_split = {"Q_A_Prob", "Q_A_ROUGE", "Q_A_PERT_Prob"}
    expected = {f"{p}_{m}" for p in ("forget", "retain", "ra", "wf") for m in per_split}
    expected |= {"forget_Q_A_PARA_Prob", "retain_Q_A_PARA_Prob", "ra_Q_A_Prob_normalised", "wf_Q_A_Prob_normalised"}
    expected |= {"forget_truth_ratio", "retain_Truth_Ratio", "ra_Truth_Ratio", "wf_Truth_Ratio"}
    expected |= {"extraction_strength", "exact_memorization", "mia_loss", "mia_zlib", "mia_min_k"}
    expected |= {"mia_min_k_plus_plus", "mia_gradnorm", "mia_reference"}
    expected |= {"forget_quality", "model_utility", "privleak"}
    assert set(logs) == expected
    full = _full()
    rouge = logs["forget_Q_A_ROUGE"]["value_by_index"]["3"]  # open-unlearning's eval_text_similarity keys
    assert set(rouge) == {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}
    assert rouge["generation"] == "forget generation 3 é" and rouge["input"] == "forget question 3?"
    assert rouge["rougeL_recall"] == full.per_sample["forget"]["rouge"][3]
    pert = logs["forget_Q_A_PERT_Prob"]["value_by_index"]["1"]
    assert pert["avg_loss"][2] is None and pert["prob"][0] == pytest.approx(math.exp(-pert["avg_loss"][0]))
    per_sample_means = [np.nanmean(np.exp(-np.array(r, dtype=float))) for r in full.records["forget"]["perturbed_loss"]]
    assert logs["forget_Q_A_PERT_Prob"]["agg_value"] == pytest.approx(np.mean(per_sample_means))
    para = logs["retain_Q_A_PARA_Prob"]["value_by_index"]["0"]
    assert para["prob"] == pytest.approx(math.exp(-full.per_sample["retain"]["para_loss"][0]))
    # raw and normalised kept apart: ra_Q_A_Prob is the true answer's own probability, the normalised one ours
    ra_raw, ra_norm = logs["ra_Q_A_Prob"]["value_by_index"]["0"], logs["ra_Q_A_Prob_normalised"]["value_by_index"]["0"]
    assert ra_raw["prob"] == pytest.approx(math.exp(-full.per_sample["real_authors"]["loss"][0]))
    assert ra_norm == {"prob": full.per_sample["real_authors"]["prob"][0]}
    mia = logs["mia_zlib"]
    assert set(mia) == {"agg_value", "auc", "forget", "holdout"}
    assert mia["forget"]["agg_value"] == pytest.approx(np.mean(full.per_sample["forget"]["mia_zlib"]))
    assert logs["exact_memorization"]["value_by_index"]["2"] == {"score": None}
    assert summary["forget_quality"] == 0.03


def test_round_trip_keeps_every_key_and_value(tmp_path):
    """ours -> TOFU_EVAL.json -> ours -> TOFU_EVAL.json is the same file, texts, lists and nulls included."""
    write_open_unlearning(_full(), tmp_path)
    first = json.loads((tmp_path / TOFU_EVAL_JSON).read_text())
    back = from_open_unlearning(first)
    assert back.per_sample["real_authors"]["loss"] == _full().per_sample["real_authors"]["loss"]  # not all NaN
    assert back.per_sample["real_authors"]["prob"] == _full().per_sample["real_authors"]["prob"]
    assert back.records["forget"]["generation"] == _full().records["forget"]["generation"]
    write_open_unlearning(back, tmp_path / "again")
    assert json.loads((tmp_path / "again" / TOFU_EVAL_JSON).read_text()) == first
    assert (tmp_path / "again" / TOFU_SUMMARY_JSON).read_text() == (tmp_path / TOFU_SUMMARY_JSON).read_text()


def test_eval_result_json_keeps_records(tmp_path):
    full = _full()
    full.to_json(tmp_path / "m.json")
    assert EvalResult.from_json(tmp_path / "m.json").records == json.loads(json.dumps(full.records))
    _oracle().to_json(tmp_path / "plain.json")
    assert "records" not in json.loads((tmp_path / "plain.json").read_text())  # suites without records: as before
