"""The file and folder names every layer writes and reads, and the prefixes of metric columns, stated once.

A study folder (``<output_dir>/<study name>/``)::

    study.json                    the study as run and its plan
    base/  oracle/                a model stage: test_metrics.json, model/, checkpoints/last.ckpt
    endpoints/<name>/             an unlearning endpoint (the same files)
    merges/<name>/                a task-vector merge: model/, test_metrics.json
    curves/<name>/                a curve: curve_metrics.csv, barrier_summary.json, checkpoints/last.ckpt
        ensemble-<name>/          its ensemble: test_metrics.json, members.json
        plane/                    its metric plane: plane_metrics.csv, plane.json
        best-<metric>/            its exported best point: model/, best.json
    report/summary.md             the report

A probe's metrics are columns ``probe/<probe>/<metric>`` and their change ``probe/<probe>/<metric>_recovery``.
"""

from __future__ import annotations

# -- a study folder ---------------------------------------------------------------------------------------------
STUDY_JSON = "study.json"
ENDPOINTS_DIR = "endpoints"
MERGES_DIR = "merges"
CURVES_DIR = "curves"
REPORT_DIR = "report"
SUMMARY_MD = "summary.md"

# -- a stage folder ---------------------------------------------------------------------------------------------
#: The suite's numbers of a stage's test (``MCUModule`` writes it; the study, the report and the oracle read it).
TEST_METRICS = "test_metrics.json"
#: A saved model (a ``save_pretrained`` folder).
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
#: The checkpoint at the end of a fit (``checkpoints/last.ckpt``).
LAST_CHECKPOINT = "last.ckpt"
#: open-unlearning's evaluation files, written next to ``test_metrics.json`` in its compatibility mode.
TOFU_EVAL_JSON = "TOFU_EVAL.json"
TOFU_SUMMARY_JSON = "TOFU_SUMMARY.json"

# -- a curve folder and its uses --------------------------------------------------------------------------------
CURVE_METRICS_CSV = "curve_metrics.csv"
BARRIER_JSON = "barrier_summary.json"
PLANE_DIR = "plane"
PLANE_CSV = "plane_metrics.csv"
PLANE_JSON = "plane.json"
#: An ensemble's member points (its ``t``).
MEMBERS_JSON = "members.json"
#: Where ``export_best`` put the best point and why.
BEST_JSON = "best.json"

# -- files of the Hugging Face formats we test for --------------------------------------------------------------
#: A peft LoRA adapter folder has it.
ADAPTER_CONFIG = "adapter_config.json"
#: A model folder saved with its tokenizer has it.
TOKENIZER_CONFIG = "tokenizer_config.json"

# -- metric columns ---------------------------------------------------------------------------------------------
#: A probe's columns: ``probe/<probe>/<metric>``.
PROBE_PREFIX = "probe/"
#: A probe's change of a metric (after - before): ``probe/<probe>/<metric>_recovery``.
RECOVERY_SUFFIX = "_recovery"
