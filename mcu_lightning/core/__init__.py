"""The bottom layer: what every other layer shares, importing nothing of ours.

``forward``: the policy call (a batch in, logits out); ``per_sample``: per-sample answer NLL and log-probs and
the ignore index; ``atomic``: whole-or-absent file writes; ``errors``: the input-error type; ``registry``: class
paths named in YAML, resolved with close matches.
"""
