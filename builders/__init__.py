"""Maintainer tools: build a Mantis Shrimp release from survey catalogs and cutouts (python -m builders)."""
