"""Atomic file writes and checksums shared by the builders (the project's one helper: mantis_data._io)."""

from __future__ import annotations

from mantis_data._io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_parquet
from mantis_data.release import sha256_file

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_parquet", "sha256_file"]
