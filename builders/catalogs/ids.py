"""Stable target identifiers: ``<survey>-<native id>``, safe as WebDataset keys (no dots, no slashes)."""

from __future__ import annotations

import re

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9_+-]")


def make_target_id(survey: str, survey_objid) -> str:
    """The target id of one spectroscopic object: survey name, '-', native id with unsafe characters as '_'."""
    return f"{survey}-{_UNSAFE.sub('_', str(survey_objid).strip())}"


def make_target_ids(survey: str, survey_objids) -> np.ndarray:
    """Vectorised ``make_target_id`` over an array of native ids (object array of str)."""
    return np.array([make_target_id(survey, o) for o in survey_objids], dtype=object)
