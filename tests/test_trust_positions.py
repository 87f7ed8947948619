"""Issue 11 item 2: a damaged or misplaced cutout is refused with its reason, for every source, by default.

A copy of the demo's cutout cache is damaged in 34 ways, one clean release target per damage; the build
(the real ``build_release`` with the default ``LocalFitsSource``) must reject exactly the damaged
targets, each with its reason, crash on none, and keep every other target's fate.
"""

from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from builders.build import build_release
from mantis_data.cutouts.client import InvalidResponse, check_centre
from mantis_data.cutouts.fits import NoWcsError, centre_offset_px, position_failure, wcs_centre_offset_pixels
from mantis_data.cutouts.layout import cutout_path
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.release import AUDIT_NAME

ARCSEC36 = 36.0 / 3600.0


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False) as hdul:
            return hdul[0].header.copy(), np.array(hdul[0].data)


def _dump(header, data) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buf)
    return buf.getvalue()


def _edit(path, fn) -> None:
    header, data = _load(path)
    out = fn(header, data)
    path.write_bytes(_dump(*out) if isinstance(out, tuple) else out)


def _flip_data_bit(path, mask: int = 0x40) -> None:
    raw = bytearray(path.read_bytes())
    end = raw.find(b"END" + b" " * 77)
    start = -(-(end + 80) // 2880) * 2880
    # the sign/exponent byte of the first pixel (big-endian float32) whose exponent's top bit is clear:
    # and |value| in 1e-9..2: one flipped bit there multiplies it by 2**128 (a single-bit corruption)
    pos = next(p for p in range(start + 400, len(raw), 4) if 0x30 <= raw[p] & 0x7F < 0x3F)
    raw[pos] ^= mask
    path.write_bytes(bytes(raw))


def _flip_header_digit(path, key: str) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.find(key.ljust(8).encode() + b"=")
    assert at >= 0
    digits = [i for i in range(at + 10, at + 30) if chr(raw[i]).isdigit()]
    raw[digits[0]] = ord("7") if raw[digits[0]] != ord("7") else ord("3")  # the leading digit: degrees off
    path.write_bytes(bytes(raw))


def _shift(key, delta):
    def fn(h, d):
        h[key] = float(h[key]) + delta
        return h, d

    return fn


def _drop_wcs(h, d):
    for k in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        h.remove(k, ignore_missing=True)
    return h, d


def _set_pixels(value, where=(0, 0)):
    def fn(h, d):
        d = d.astype(np.float32)
        d[(..., *where)] = value
        return h, d

    return fn


HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"

# (survey, band or None, damage, expected reason prefix)
DAMAGES = [
    ("ps1", "g", "truncated", "ps1_unreadable: truncated data"),
    ("ps1", "r", "html", "ps1_unreadable: not FITS (an HTML page)"),
    ("ps1", "i", "empty", "ps1_unreadable: not FITS (empty)"),
    ("galex", None, "truncated", "galex_unreadable: truncated data"),
    ("galex", None, "html", "galex_unreadable: not FITS (an HTML page)"),
    ("unwise", None, "empty", "unwise_unreadable: not FITS (empty)"),
    ("ps1", "z", "wrong_shape", "ps1_bad_shape"),
    ("galex", None, "wrong_shape", "galex_bad_shape"),
    ("unwise", None, "three_planes", "unwise_bad_shape"),
    ("ps1", "z", "all_nan", "ps1_nan_fraction:z"),
    ("galex", None, "all_nan", "galex_nan_fraction:FUV"),
    ("unwise", None, "all_nan", "unwise_nan_fraction:W1"),
    ("ps1", "y", "no_wcs", "ps1_no_wcs"),
    ("galex", None, "no_wcs", "galex_no_wcs"),
    ("unwise", None, "no_wcs", "unwise_no_wcs"),
    ("ps1", "g", "off_centre_36", "ps1_wrong_position: 144.0 px"),
    ("galex", None, "off_centre_36", "galex_wrong_position: 24.0 px"),
    ("unwise", None, "off_centre_36", "unwise_wrong_position: 13.1 px"),
    ("ps1", None, "other_target", "ps1_wrong_position"),
    ("galex", None, "other_target", "galex_wrong_position"),
    ("unwise", None, "other_target", "unwise_wrong_position"),
    ("ps1", "r", "extreme", "ps1_bad_values: |pixel| 1e+30"),
    ("galex", None, "extreme", "galex_bad_values: |pixel| 1e+30"),
    ("unwise", None, "inf", "unwise_bad_values: inf [W1]"),
    ("ps1", "i", "flip_data_bit", "ps1_bad_values"),
    ("unwise", None, "flip_data_bit", "unwise_bad_values"),
    ("galex", None, "flip_header_crval", "galex_wrong_position"),
    ("ps1", "z", "flip_header_crval", "ps1_wrong_position"),
    ("ps1", "y", "no_exptime", "ps1_unreadable: missing keyword EXPTIME"),
    ("unwise", None, "all_zero", "unwise_empty"),
    ("ps1", "g", "deleted", "ps1_missing: g"),
    ("galex", None, "ps1_file", "galex_bad_shape"),
    ("unwise", None, "galex_bands", "unwise_unreadable: cube bands"),
    ("ps1", "i", "nan_5pct", "ps1_nan_fraction:i"),
    ("ps1", "g", "inf_pixel", "ps1_bad_values: inf [g]"),
]


def _damage(cache, tid, survey, band, kind, donor) -> None:
    path = cutout_path(cache, survey, tid, band if survey == "ps1" else None) if band or survey != "ps1" else None
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "html":
        path.write_bytes(HTML)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong_shape":
        _edit(path, lambda h, d: (fits.Header([c for c in h.cards if not c.keyword.startswith("NAXIS")]), d[..., :-3, :-3]))
    elif kind == "three_planes":
        _edit(path, lambda h, d: (h, np.concatenate([d, d[:1]]).astype(np.float32)))
    elif kind == "all_nan":
        _edit(path, lambda h, d: (h, np.full_like(d, np.nan, dtype=np.float32)))
    elif kind == "nan_5pct":
        _edit(path, _set_pixels(np.nan, (slice(0, 9), slice(None))))
    elif kind == "no_wcs":
        _edit(path, _drop_wcs)
    elif kind == "off_centre_36":
        _edit(path, _shift("CRVAL2", -ARCSEC36))
    elif kind == "other_target":
        for b in (("g", "r", "i", "z", "y") if survey == "ps1" else (None,)):
            shutil.copyfile(cutout_path(cache, survey, donor, b), cutout_path(cache, survey, tid, b))
    elif kind == "extreme":
        _edit(path, _set_pixels(1e30, (5, 7)))
    elif kind in ("inf", "inf_pixel"):
        _edit(path, _set_pixels(np.inf, (3, 3)))
    elif kind == "flip_data_bit":
        _flip_data_bit(path)
    elif kind == "flip_header_crval":
        _flip_header_digit(path, "CRVAL1")
    elif kind == "no_exptime":
        _edit(path, lambda h, d: (h.remove("EXPTIME") or h, d))
    elif kind == "all_zero":
        _edit(path, lambda h, d: (h, np.zeros_like(d, dtype=np.float32)))
    elif kind == "deleted":
        path.unlink()
    elif kind == "ps1_file":
        shutil.copyfile(cutout_path(cache, "ps1", tid, "g"), path)
    elif kind == "galex_bands":
        _edit(path, lambda h, d: (h.update(BAND0="f", BAND1="n", BANDS="fn") or h, d))
    else:
        raise AssertionError(kind)


@pytest.fixture(scope="module")
def damaged(demo_release, tmp_path_factory):
    """(clean audit, damaged audit, {target_id: expected reason}) of a build over a damaged cache copy."""
    tmp = tmp_path_factory.mktemp("damaged")
    cache = tmp / "cutouts"
    shutil.copytree(demo_release / "mock_inputs" / "cutouts", cache, ignore=shutil.ignore_patterns("fetch_manifest*"))
    clean = pd.read_parquet(demo_release / AUDIT_NAME)
    good = clean[clean["in_release"]].sort_values("target_id")
    assert len(good) > len(DAMAGES) + 2
    victims = good.iloc[: len(DAMAGES)]
    donor = good.iloc[-1]
    assert (abs(victims["dec"] - donor["dec"]) + abs(victims["ra"] - donor["ra"]) > 0.01).all()
    expected = {}
    for (survey, band, kind, reason), tid in zip(DAMAGES, victims["target_id"], strict=True):
        _damage(cache, tid, survey, band, kind, donor["target_id"])
        expected[tid] = (kind, reason)
    out = tmp / "release"
    build_release(demo_release / "work" / "targets.parquet", LocalFitsSource(cache), out, dust="bh", shard_mb=8, progress=False)
    return clean, pd.read_parquet(out / AUDIT_NAME), expected


def test_each_damage_is_rejected_with_its_reason(damaged):
    clean, audit, expected = damaged
    assert len(expected) >= 25
    got = audit[audit["accepted"]].set_index("target_id").loc[list(expected)]
    wrong = {}
    for tid, (kind, reason) in expected.items():
        row = got.loc[tid]
        why = row["cutout_reject_reason"]
        if bool(row["in_release"]) or why is None or not str(why).startswith(reason):
            wrong[kind] = (why, reason)
    assert wrong == {}
    assert not any(str(r).startswith("error:") for r in audit["cutout_reject_reason"].dropna())  # no crash


def test_no_clean_target_is_rejected(damaged):
    clean, audit, expected = damaged
    a = audit[~audit["target_id"].isin(list(expected))].sort_values(["survey", "source_file", "target_id"], na_position="first")
    b = clean[~clean["target_id"].isin(list(expected))].sort_values(["survey", "source_file", "target_id"], na_position="first")
    assert a["in_release"].sum() == b["in_release"].sum() > 50
    pd.testing.assert_series_equal(
        a["cutout_reject_reason"].reset_index(drop=True), b["cutout_reject_reason"].reset_index(drop=True)
    )


def test_http_clients_and_local_source_share_one_centre_check(demo_release):
    audit = pd.read_parquet(demo_release / AUDIT_NAME)
    row = audit[audit["in_release"]].iloc[0]
    path = cutout_path(demo_release / "mock_inputs" / "cutouts", "unwise", row["target_id"])
    header, _ = _load(path)
    fast = centre_offset_px(header, row["ra"], row["dec"] + ARCSEC36)
    slow = wcs_centre_offset_pixels(header, row["ra"], row["dec"] + ARCSEC36)
    assert fast == pytest.approx(slow, abs=1e-3) and fast == pytest.approx(36 / 2.75, abs=0.05)
    assert position_failure(header, row["ra"], row["dec"]) is None
    with pytest.raises(InvalidResponse, match=r"wrong_position: 13\.1 px"):
        check_centre(header, row["ra"], row["dec"] + ARCSEC36, 1.0)
    bare, _ = _drop_wcs(header.copy(), None)
    with pytest.raises(NoWcsError):
        centre_offset_px(bare, row["ra"], row["dec"])
    with pytest.raises(InvalidResponse, match="^no_wcs$"):
        check_centre(bare, row["ra"], row["dec"], 1.0)
    assert LocalFitsSource(demo_release / "mock_inputs" / "cutouts").max_offset_px == 1.0  # on by default
