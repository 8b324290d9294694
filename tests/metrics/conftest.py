"""Fixtures of the metrics tests (defined in qa_fixtures.py, which tests and spawned workers import by name)."""

from qa_fixtures import bigram

__all__ = ["bigram"]
