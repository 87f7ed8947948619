"""Cutout sources: one target in, three native-resolution stamps (or recorded failures) out."""
