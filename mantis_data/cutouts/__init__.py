"""Cutout sources: one target in, three native-resolution stamps (or recorded failures) out.

The Pan-STARRS and Legacy Survey HTTP clients, FITS parsing, the WCS centre check, the on-disk cache
layout and the local (cache) source. The builders' bulk fetch (``mantis_data/cutouts/fetch.py``) and forced
photo-z (``mantis_data.photoz``) both use them.
"""
