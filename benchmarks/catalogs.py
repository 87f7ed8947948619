"""Benchmark: compile paper-sized catalogs of all eight surveys (Table 1's N_avail) on this machine.

    python benchmarks/catalogs.py [--scale 1.0] [--repeat 2] [--workdir DIR] [--keep]

Writes synthetic inputs in the surveys' real layouts (the ones builders.catalogs reads and the mock
sky writes: SDSS SpecObjAll CSV, DESI zall FITS, DEEP2 / GAMA / VIPERS / WiggleZ FITS, VVDS and 6dFGS
ASCII with sexagesimal 6dFGS coordinates) with vectorised writers, at N (half of ``--scale`` x the
paper's N_avail) and 2N, then times ``compile_targets`` on each in a fresh process (``--repeat`` times, interleaved; the
best is reported, the slowest judged), so that its peak RSS (getrusage ru_maxrss) is the compile's alone. Generation is not timed. The synthetic rows carry the
quality flags each cut reads, with accepted fractions near the paper's N_samples / N_avail, about 8%
of rows re-observing another row's galaxy within 0.5 arcsec (cross-survey duplicates, some with another
redshift), DESI non-primary coadds, GAMA repeat spectra per CATAID, rows below dec -30 and a few
malformed text rows. Prints wall and CPU seconds, peak RSS and rows/s at N and 2N, the 2N/N time ratio,
and PASS/FAIL against the targets (2N under 120 s and 8 GB on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.mock.catalogs import (  # noqa: E402
    DEEP2_COLUMNS,
    DESI_HEALPIX_NSIDE,
    GAMA_COLUMNS,
    SDSS_COLUMNS,
    SIXDF_COLUMNS,
    VIPERS_COLUMNS,
    VVDS_COLUMNS,
    WIGGLEZ_COLUMNS,
    healpix_nest,
)

N_AVAIL: dict[str, int] = {
    "sdss": 5_100_000, "desi": 2_400_000, "deep2": 53_000, "gama": 340_000,
    "vvds": 41_000, "vipers": 60_000, "6dfgs": 120_000, "wigglez": 220_000,
}
"""Rows per survey at full size: the paper's Table 1 N_avail (SDSS and DESI as the issue states)."""

TIME_LIMIT_S = 120.0
RSS_LIMIT_BYTES = 8 * 1024**3

DESI_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TARGETID", "K"), ("SURVEY", "7A"), ("PROGRAM", "6A"), ("HEALPIX", "J"), ("TARGET_RA", "D"),
    ("TARGET_DEC", "D"), ("Z", "D"), ("ZERR", "D"), ("ZWARN", "K"), ("SPECTYPE", "6A"), ("SUBTYPE", "20A"),
    ("DELTACHI2", "D"), ("COADD_FIBERSTATUS", "J"), ("ZCAT_PRIMARY", "L"), ("ZCAT_NSPEC", "I"),
)
_DTYPES = {"J": np.int32, "K": np.int64, "I": np.int16, "E": np.float32, "D": np.float64, "L": bool}


# ------------------------------------------------------------------------------------------- generation


class _Sky:
    """Positions for the synthetic rows: fresh ones, or re-observations of earlier rows' galaxies."""

    def __init__(self, rng: np.random.Generator, reuse: float = 0.08):
        self.rng = rng
        self.reuse = reuse
        self.ra = np.zeros(0)
        self.dec = np.zeros(0)
        self.z = np.zeros(0)

    def draw(self, n: int, dec_range: tuple[float, float], z_draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ra, dec, z) of n rows (degrees): ~8% re-observe an earlier row within 0.5 arcsec (10% of those with another z)."""
        rng = self.rng
        s0, s1 = np.sin(np.radians(dec_range))
        ra = rng.uniform(0.0, 360.0, n)
        dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
        z = z_draw(n)
        if len(self.ra):
            again = np.flatnonzero(rng.random(n) < self.reuse)
            src = rng.integers(0, len(self.ra), len(again))
            r = 0.5 / 3600.0 * np.sqrt(rng.random(len(again)))
            t = rng.uniform(0, 2 * np.pi, len(again))
            dec[again] = np.clip(self.dec[src] + r * np.sin(t), -90, 90)
            ra[again] = (self.ra[src] + r * np.cos(t) / np.maximum(np.cos(np.radians(dec[again])), 1e-3)) % 360.0
            conflict = rng.random(len(again)) < 0.1
            z[again] = np.where(conflict, z[again], self.z[src] + rng.normal(0, 1e-4, len(again)))
        keep = rng.random(n) < min(1.0, 2e6 / max(n, 1))  # a sample is enough to re-observe from
        self.ra = np.concatenate([self.ra, ra[keep]])
        self.dec = np.concatenate([self.dec, dec[keep]])
        self.z = np.concatenate([self.z, z[keep]])
        return ra, dec, z


def _choice(rng: np.random.Generator, values, p, n: int) -> np.ndarray:
    return np.asarray(values)[rng.choice(len(values), size=n, p=np.asarray(p) / np.sum(p))]


def _write_fits(path: Path, columns: tuple[tuple[str, str], ...], data: dict[str, np.ndarray], extname: str | None = None) -> None:
    from astropy.io import fits

    cols = []
    for name, fmt in columns:
        arr = data[name]
        if fmt.endswith("A"):
            arr = np.asarray(arr).astype(f"S{int(fmt[:-1])}")
        else:
            arr = np.asarray(arr).astype(_DTYPES[fmt])
        cols.append(fits.Column(name=name, format=fmt, array=arr))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name=extname)]).writeto(path, overwrite=True)


def _write_text(path: Path, header_lines: list[str], columns: list[np.ndarray], sep: str) -> None:
    """Rows joined with ``sep`` from string arrays, vectorised with numpy string ops."""
    line = columns[0].astype(str)
    for c in columns[1:]:
        line = np.char.add(np.char.add(line, sep), c.astype(str))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as fh:
        fh.write("\n".join(header_lines) + "\n")
        fh.write("\n".join(line.tolist()) + "\n")


def _fmt(values: np.ndarray, spec: str) -> np.ndarray:
    return np.char.mod(spec, values)


def _sexagesimal(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cs = np.rint(ra / 15.0 * 360000.0).astype(np.int64) % (24 * 360000)
    h, rem = np.divmod(cs, 360000)
    m, rem = np.divmod(rem, 6000)
    ra_text = np.array([f"{a:02d} {b:02d} {c // 100:02d}.{c % 100:02d}" for a, b, c in zip(h.tolist(), m.tolist(), rem.tolist(), strict=True)])
    ds = np.rint(np.abs(dec) * 36000.0).astype(np.int64)
    d, rem2 = np.divmod(ds, 36000)
    m2, rem2 = np.divmod(rem2, 600)
    sign = np.where(dec < 0, "-", "+")
    dec_text = np.array([f"{s}{a:02d} {b:02d} {c // 10:02d}.{c % 10}" for s, a, b, c in zip(sign.tolist(), d.tolist(), m2.tolist(), rem2.tolist(), strict=True)])
    return ra_text, dec_text


def generate(folder: Path, factor: float, seed: int = 0) -> dict[str, int]:
    """Write all eight catalogs at ``factor`` x N_AVAIL under ``folder``; returns rows per survey."""
    rng = np.random.default_rng(seed)
    sky = _Sky(rng)
    n = {s: max(10, int(round(v * factor))) for s, v in N_AVAIL.items()}
    lowz = lambda k: 0.01 + rng.gamma(2.5, 0.05, k)  # noqa: E731
    midz = lambda k: np.abs(rng.normal(0.55, 0.25, k)) + 0.01  # noqa: E731
    highz = lambda k: np.abs(rng.normal(0.9, 0.3, k)) + 0.05  # noqa: E731

    # SDSS: SpecObjAll CSV (accepted ~51%: zWarning and class cuts, z_noqso / z_person sometimes set)
    k = n["sdss"]
    ra, dec, z = sky.draw(k, (-35.0, 85.0), midz)
    cls = _choice(rng, ["GALAXY", "STAR", "QSO"], [0.70, 0.14, 0.16], k)
    zwarn = np.where(rng.random(k) < 0.12, _choice(rng, [4, 16, 128, 1], [4, 2, 1, 1], k), 0)
    noqso = np.where(rng.random(k) < 0.3, z, 0.0)
    data = {
        "specObjID": 299489677444933632 + np.arange(k, dtype=np.int64) * 1024, "ra": ra, "dec": dec, "z": z,
        "zErr": 1e-5 * (1 + z), "zWarning": zwarn, "class": cls, "subClass": np.full(k, ""), "z_noqso": noqso,
        "zErr_noqso": np.where(noqso > 0, 1e-5, 0.0), "zWarning_noqso": zwarn, "z_person": np.zeros(k),
        "class_person": np.zeros(k, dtype=np.int64), "plate": rng.integers(266, 9000, k), "mjd": rng.integers(51578, 58543, k),
        "fiberID": rng.integers(1, 1000, k), "survey": np.full(k, "boss"), "programname": np.full(k, "boss"),
    }
    import pyarrow as pa
    import pyarrow.csv as pacsv

    (folder / "sdss").mkdir(parents=True, exist_ok=True)
    table = pa.table({c: data[c] for c in SDSS_COLUMNS})
    pacsv.write_csv(table, folder / "sdss" / "SpecObjAll.csv", write_options=pacsv.WriteOptions(quoting_style="none"))
    with open(folder / "sdss" / "SpecObjAll.csv", "a") as fh:  # a few malformed rows, as a truncated export has
        fh.write("299489677444933633,12.5,1.0\n299489677444933634,abc,1.0,0.1,0,0,GALAXY,,0,0,0,0,0,1,1,1,boss,boss\n")
    del table, data

    # DESI: zall-pix ZCATALOG (~15% extra coadds, not primary; accepted ~46%)
    k = n["desi"]
    ra, dec, z = sky.draw(k, (-25.0, 80.0), highz)
    tid = 39627000000000000 + np.arange(k, dtype=np.int64) * 7
    extra = np.flatnonzero(rng.random(k) < 0.15)
    extra = extra[extra > 0]
    tid[extra], ra[extra], dec[extra], z[extra] = tid[extra - 1], ra[extra - 1], dec[extra - 1], z[extra - 1]
    primary = np.ones(k, dtype=bool)
    primary[extra] = False
    spectype = _choice(rng, ["GALAXY", "STAR", "QSO"], [0.75, 0.12, 0.13], k)
    zwarn = np.where(rng.random(k) < 0.2, 4, 0)
    _write_fits(folder / "desi" / "zall-pix-fuji.fits", DESI_COLUMNS, {
        "TARGETID": tid, "SURVEY": np.full(k, "sv3"), "PROGRAM": np.full(k, "dark"),
        "HEALPIX": healpix_nest(DESI_HEALPIX_NSIDE, ra, dec), "TARGET_RA": ra, "TARGET_DEC": dec, "Z": z,
        "ZERR": 1e-5 * (1 + z), "ZWARN": zwarn, "SPECTYPE": spectype, "SUBTYPE": np.full(k, ""),
        "DELTACHI2": rng.uniform(10, 1e4, k), "COADD_FIBERSTATUS": np.zeros(k), "ZCAT_PRIMARY": primary,
        "ZCAT_NSPEC": np.ones(k),
    }, extname="ZCATALOG")

    # DEEP2 (accepted ~64%)
    k = n["deep2"]
    ra, dec, z = sky.draw(k, (0.0, 53.0), highz)
    q = _choice(rng, [-1, 1, 2, 3, 4], [0.05, 0.12, 0.15, 0.18, 0.50], k)
    cls = np.where(q == -1, "STAR", _choice(rng, ["GALAXY", "AGN"], [0.98, 0.02], k))
    data = {c: np.zeros(k) for c, _ in DEEP2_COLUMNS}
    data.update({"OBJNO": 11000000 + np.arange(k), "RA": ra, "DEC": dec, "CLASS": cls, "SUBCLASS": np.full(k, ""),
                 "SLITNAME": np.full(k, "001"), "COMMENT": np.full(k, ""), "Z": z, "ZBEST": z, "ZQUALITY": q})
    _write_fits(folder / "deep2" / "zcat.deep2.dr4.fits", DEEP2_COLUMNS, data)

    # GAMA SpecObj (~1.7 spectra per CATAID; accepted ~59%)
    k = n["gama"]
    ra, dec, z = sky.draw(k, (-35.0, 3.0), lowz)
    cataid = 6800 + np.arange(k) // 2 + (rng.random(k) < 0.3)
    cataid = np.maximum.accumulate(cataid)
    nq = _choice(rng, [1, 2, 3, 4], [0.1, 0.15, 0.25, 0.5], k)
    first = np.r_[True, cataid[1:] != cataid[:-1]]
    grp = np.cumsum(first) - 1
    ra, dec = ra[first][grp], dec[first][grp]
    data = {c: np.zeros(k) for c, _ in GAMA_COLUMNS}
    data.update({"SPECID": np.char.add("G_", np.arange(k).astype(str)), "SURVEY": np.full(k, "GAMA"), "RA": ra, "DEC": dec,
                 "Z": z, "NQ": nq, "FILENAME": np.full(k, ""), "CATAID": cataid, "GAMA_NAME": np.full(k, ""),
                 "IS_SBEST": first, "IS_BEST": first})
    _write_fits(folder / "gama" / "SpecObj.fits", GAMA_COLUMNS, data, extname="SPECOBJ")

    # VVDS: four ASCII tables (accepted ~25%: ZFLAGS 3 or 4 only)
    k = n["vvds"]
    parts = {"F10_WIDE": 0.55, "F02_DEEP": 0.25, "CDFS_DEEP": 0.1, "F02_UDEEP": 0.1}
    start = 0
    for j, (part, frac) in enumerate(parts.items()):
        m = int(round(k * frac)) if j < len(parts) - 1 else k - start
        ra, dec, z = sky.draw(m, (-32.0, 3.0), highz)
        flags = _choice(rng, [0, 1, 2, 3, 4, 9, 12, 13, 14, 22, 23, 24], [4, 10, 25, 12, 13, 5, 2, 3, 3, 8, 7, 8], m)
        num = np.char.mod("%09d", 20000000 + start + np.arange(m))
        cols = [num, _fmt(ra, "%.6f"), _fmt(dec, "%.6f"), _fmt(rng.uniform(19, 24, m), "%.3f"), _fmt(z, "%.4f"), flags.astype(str)]
        cols[4][:2] = "*******"  # unreadable values, as an overflowing fixed-width column prints
        _write_text(folder / "vvds" / f"cesam_vvds_sp{part}.txt", ["# VVDS final release", "  ".join(VVDS_COLUMNS)], cols, "  ")
        start += m

    # VIPERS W1 and W4 (accepted ~82%)
    k = n["vipers"]
    for j, field in enumerate(("W1", "W4")):
        m = k // 2 if j == 0 else k - k // 2
        ra, dec, z = sky.draw(m, (-6.0, 3.0), highz)
        zflg = _choice(rng, [2.5, 3.5, 4.5, 3.2, 1.5, 9.5, 22.5, 13.5, 0.0], [20, 30, 25, 10, 4, 3, 3, 2, 3], m)
        data = {c: np.zeros(m) for c, _ in VIPERS_COLUMNS}
        data.update({"num": (1 + 3 * j) * 100_000_000 + np.arange(m), "alpha": ra, "delta": dec, "zspec": z, "zflg": zflg,
                     "classFlag": _choice(rng, [1, 0, -1, 2], [0.9, 0.05, 0.03, 0.02], m), "pointing": np.full(m, field)})
        _write_fits(folder / "vipers" / f"VIPERS_{field}_SPECTRO_PDR2.fits", VIPERS_COLUMNS, data)

    # 6dFGS: tab-separated ASCII, sexagesimal (accepted ~47%, most of the survey is south of -30)
    k = n["6dfgs"]
    ra, dec, z = sky.draw(k, (-90.0, 0.0), lowz)
    ra_text, dec_text = _sexagesimal(ra, dec)
    name = np.char.add("g", np.arange(k).astype(str))
    quality = _choice(rng, [1, 2, 3, 4, 6], [0.1, 0.1, 0.15, 0.6, 0.05], k)
    cols = [name, np.arange(k).astype(str), ra_text, dec_text, _fmt(rng.uniform(12, 16, k), "%.2f"),
            _fmt(rng.uniform(11, 15, k), "%.2f"), _fmt(z, "%.5f"), np.full(k, "1"), quality.astype(str)]
    cols[3][:2] = "-12 61 00.0"  # invalid minutes
    _write_text(folder / "6dfgs" / "6dFGSzDR3.txt", ["# 6dFGS DR3", "\t".join(SIXDF_COLUMNS)], cols, "\t")

    # WiggleZ (accepted ~64%)
    k = n["wigglez"]
    ra, dec, z = sky.draw(k, (-20.0, 10.0), midz)
    _write_fits(folder / "wigglez" / "WiggleZ_final.fits", WIGGLEZ_COLUMNS, {
        "WiggleZ_Name": np.char.add("R00J", np.arange(k).astype(str)), "RA": ra, "Dec": dec, "Redshift": z,
        "Q": _choice(rng, [1, 2, 3, 4, 5], [0.1, 0.1, 0.15, 0.45, 0.2], k), "NUV": np.zeros(k), "r": np.zeros(k),
    })
    return n


# ----------------------------------------------------------------------------------------------- timing


def compile_once(folder: Path) -> dict:
    """Compile ``folder`` in this process: seconds, peak RSS (bytes), rows, accepted, counts by survey."""
    from builders.catalogs.compile import compile_targets, find_catalogs

    catalogs = find_catalogs(folder)
    start = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start.ru_utime + start.ru_stime
    t0 = time.perf_counter()
    targets, audit = compile_targets(catalogs)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    invariant = bool(audit["accepted"].sum() + audit["reject_reason"].notna().sum() == len(audit))
    return {
        "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu0, "peak_rss_bytes": peak, "rows": len(audit), "accepted": len(targets),
        "audit_invariant": invariant,
        "by_survey": {s: [int(v), int(a)] for s, v, a in zip(
            audit["survey"].value_counts().index, audit["survey"].value_counts().values,
            audit[audit["accepted"]]["survey"].value_counts().reindex(audit["survey"].value_counts().index, fill_value=0).values,
            strict=True)},
    }


def _run_child(folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--compile-only", str(folder)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"compile of {folder} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Generate N and 2N inputs, time the compile of each in a fresh process, print the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="2N = scale x the paper's N_avail (default 1)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the inputs (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs")
    ap.add_argument("--repeat", type=int, default=2, help="compile runs per size (the best is reported; default 2)")
    ap.add_argument("--compile-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compile_only:
        print(json.dumps(compile_once(args.compile_only)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-catalogs-", dir=args.workdir))
    runs: dict[str, list[dict]] = {"N": [], "2N": []}
    try:
        folders = {}
        for label, factor in (("N", args.scale / 2), ("2N", args.scale)):
            folders[label] = work / label
            t0 = time.perf_counter()
            sizes = generate(folders[label], factor, seed=1 if label == "N" else 2)
            gen_s = time.perf_counter() - t0
            mb = sum(p.stat().st_size for p in folders[label].rglob("*") if p.is_file()) / 1e6
            print(f"[{label}] generated {sum(sizes.values()):,} rows ({mb:,.0f} MB) in {gen_s:.1f} s (not timed): "
                  + ", ".join(f"{s} {v:,}" for s, v in sizes.items()), flush=True)
        for rep in range(args.repeat):  # interleaved, so that load from other work hits both sizes alike
            for label in ("N", "2N"):
                r = _run_child(folders[label])
                runs[label].append(r)
                print(f"  run {rep + 1} {label}: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
                      f"peak RSS {r['peak_rss_bytes'] / 1024**3:.2f} GB", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    results = {label: min(rs, key=lambda r: r["seconds"]) for label, rs in runs.items()}
    print()
    print(f"best of {args.repeat} runs per size (fresh process each):")
    print(f"{'size':<5}{'rows':>12}{'accepted':>12}{'wall s':>9}{'CPU s':>8}{'peak RSS GB':>13}{'rows/s':>12}  audit")
    for label, r in results.items():
        print(f"{label:<5}{r['rows']:>12,}{r['accepted']:>12,}{r['seconds']:>9.1f}{r['cpu_seconds']:>8.1f}"
              f"{r['peak_rss_bytes'] / 1024**3:>13.2f}{r['rows'] / r['seconds']:>12,.0f}  "
              f"{'rows read = accepted + rejected' if r['audit_invariant'] else 'BROKEN'}")
    n, n2 = results["N"], results["2N"]
    print(f"scaling: time(2N) / time(N) = {n2['seconds'] / n['seconds']:.2f} wall, "
          f"{n2['cpu_seconds'] / n['cpu_seconds']:.2f} CPU, for {n2['rows'] / n['rows']:.2f}x the rows "
          f"(peak RSS {n2['peak_rss_bytes'] / n['peak_rss_bytes']:.2f}x)")
    print("accepted / read at 2N by survey: " + ", ".join(
        f"{s} {a:,}/{v:,}" for s, (v, a) in sorted(n2["by_survey"].items())))
    worst = max(runs["2N"], key=lambda r: r["seconds"])
    ok_time = worst["seconds"] < TIME_LIMIT_S
    ok_rss = max(r["peak_rss_bytes"] for r in runs["2N"]) < RSS_LIMIT_BYTES
    cores = os.cpu_count()
    print(f"machine: {cores} cores, load average {os.getloadavg()[0]:.1f} (other work on the machine slows the wall times)")
    print(f"{'PASS' if ok_time else 'FAIL'}: 2N compile {worst['seconds']:.1f} s in the slowest run (target < {TIME_LIMIT_S:.0f} s)")
    print(f"{'PASS' if ok_rss else 'FAIL'}: 2N peak RSS {max(r['peak_rss_bytes'] for r in runs['2N']) / 1024**3:.2f} GB "
          f"(target < {RSS_LIMIT_BYTES / 1024**3:.0f} GB)")
    return 0 if ok_time and ok_rss and n2["audit_invariant"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
