"""``mantis-data explain``: Shapley values and MM-SHAP for the first N galaxies of a release split, resumable.

    mantis-data explain --checkpoint RUN/best.pt --release DIR --split test --n 500 --out EXPLAIN/

``EXPLAIN/`` then holds:

* ``parts/part-NNNNN.parquet``: results as they are computed (every ``--part-size`` galaxies, atomic);
  a rerun with the same arguments skips every galaxy already in a part;
* ``shapley.parquet``: one row per galaxy: ``target_id``, ``z``, ``survey``, ``seed``, ``v_all``, ``v_none``,
  ``shapley_<band>``, ``mm_shap_<band>`` (nine bands), ``survey_shapley_<survey>``,
  ``survey_mm_shap_<survey>`` (galex, ps1, unwise), ``target_<band>`` (a source found within 5 px);
* ``shapley_by_redshift.csv`` and ``shapley_by_redshift.md``: per-bin means with bootstrap intervals,
  ``survey_shapley_by_redshift.csv``;
* ``shapley_vs_redshift.png`` (the paper's figure 8) and ``baselines/<target_id>.png`` (figures 11-13);
* ``explain.json``: the run's parameters (a rerun with other parameters into the same folder is refused).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._io import atomic_write_parquet
from .bands import BANDS, SURVEY_ORDER
from .errors import MantisDataError

BAND_NAMES = tuple(b.name for b in BANDS)
PARAMS_FILE = "explain.json"


def _atomic_parquet(table, path: Path) -> None:
    atomic_write_parquet(table, path, compression="snappy")


def _surveys(release: Path, split: str) -> dict[str, str]:
    """target_id -> spectroscopic survey from the release's Parquet shards (empty if there are none)."""
    try:
        import pyarrow.parquet as pq

        from .release import open_release

        out: dict[str, str] = {}
        for f in open_release(release).shards("parquet", split):
            t = pq.read_table(f, columns=["target_id", "survey"])
            out.update(zip(t.column("target_id").to_pylist(), t.column("survey").to_pylist(), strict=True))
        return out
    except Exception:  # no Parquet folder: the results just have no survey
        return {}


def _read_parts(parts: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


def _row(target_id: str, z: float, survey: str, seed: int, r: dict) -> dict:
    row = {"target_id": target_id, "z": float(z), "survey": survey, "seed": int(seed),
           "v_all": r["v_all"], "v_none": r["v_none"]}
    for b in BAND_NAMES:
        row[f"shapley_{b}"] = r["shapley"][b]
    for b in BAND_NAMES:
        row[f"mm_shap_{b}"] = r["mm_shap"][b]
    for s in SURVEY_ORDER:
        row[f"survey_shapley_{s}"] = r["survey_shapley"][s]
    for s in SURVEY_ORDER:
        row[f"survey_mm_shap_{s}"] = r["survey_mm_shap"][s]
    targets = r.get("targets") or {}
    for b in BAND_NAMES:
        row[f"target_{b}"] = bool(targets[b].found) if b in targets else False
    return row


def _table(rows: list[dict]):
    import pyarrow as pa

    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return pa.table({k: pa.array(v, type=pa.string() if k in ("target_id", "survey") else None) for k, v in cols.items()})


def explain_release(
    checkpoint: str | Path,
    release: str | Path,
    out: str | Path,
    split: str = "test",
    n: int | None = None,
    *,
    seed: int = 0,
    batch_size: int = 128,
    part_size: int = 32,
    examples: int = 3,
    bootstrap: int = 1000,
    edges=None,
    device: str = "cpu",
    format: str = "webdataset",
    progress: bool = True,
) -> dict:
    """Explain the first ``n`` galaxies (all when None) of ``split`` and write the report into ``out``.

    Returns {"n": galaxies in the results, "new": computed by this call, "files": {name: path}}.
    """
    from .explain import explain_galaxy, galaxy_seed, load_model
    from .explain_report import (
        DEFAULT_EDGES,
        bin_summary,
        markdown_summary,
        plot_baselines,
        plot_vs_redshift,
        write_csv,
    )
    from .loading import make_loader

    out, release = Path(out), Path(release)
    edges = DEFAULT_EDGES if edges is None else tuple(edges)
    params = {"checkpoint": str(Path(checkpoint).resolve()), "release": str(release.resolve()), "split": split,
              "seed": int(seed)}
    out.mkdir(parents=True, exist_ok=True)
    pfile = out / PARAMS_FILE
    if pfile.is_file():
        old = json.loads(pfile.read_text())
        diff = {k: (old.get(k), v) for k, v in params.items() if old.get(k) != v}
        if diff:
            raise MantisDataError(
                f"{out} holds results of another run ({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                "use a new --out folder or the same arguments"
            )
    else:
        pfile.write_text(json.dumps(params, indent=2) + "\n")
    em = load_model(checkpoint, device=device)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    done_table = _read_parts(parts)
    done = set(done_table.column("target_id").to_pylist()) if done_table is not None else set()
    next_part = len(list(parts.glob("part-*.parquet")))
    surveys = _surveys(release, split)
    loader = make_loader(release, split, format=format, order="sequential", batch_size=16, num_workers=0,
                         images=SURVEY_ORDER, rank=0, world_size=1)
    from .release import open_release

    total = int(open_release(release).counts.get(split, 0))
    limit = min(n, total) if n is not None else total
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=limit, desc=f"explain {split}", unit="galaxy", initial=0)
    pending: list[dict] = []
    new = seen = 0
    example_dir = out / "baselines"
    n_examples = len(list(example_dir.glob("*.png"))) if example_dir.is_dir() else 0

    def flush() -> None:
        nonlocal next_part
        if pending:
            _atomic_parquet(_table(pending), parts / f"part-{next_part:05d}.parquet")
            next_part += 1
            pending.clear()

    for batch in loader:
        for i in range(len(batch["target_id"])):
            if limit is not None and seen >= limit:
                break
            if not bool(batch["valid"][i]):
                continue
            seen += 1
            tid = batch["target_id"][i]
            if bar is not None:
                bar.update(1)
            if tid in done:
                continue
            gseed = galaxy_seed(tid, seed)
            cubes = {s: batch[s][i].numpy() for s in SURVEY_ORDER}
            r = explain_galaxy(em, cubes["ps1"], cubes["galex"], cubes["unwise"], batch["ebv"][i].numpy(),
                               seed=gseed, batch_size=batch_size)
            pending.append(_row(tid, float(batch["z"][i]), surveys.get(tid, ""), gseed, r))
            new += 1
            if n_examples < examples:
                example_dir.mkdir(exist_ok=True)
                plot_baselines(cubes, r["baselines"], example_dir / f"{tid}.png",
                               title=f"{tid}  z = {float(batch['z'][i]):.3f}: stored cutouts (top), sep baselines (bottom)")
                n_examples += 1
            if len(pending) >= part_size:
                flush()
        if limit is not None and seen >= limit:
            break
    flush()
    if bar is not None:
        bar.close()
    table = _read_parts(parts)
    if table is None:
        raise MantisDataError(f"split {split!r} of {release} has no galaxies to explain")
    _atomic_parquet(table, out / "shapley.parquet")
    cols = {c: table.column(c).to_numpy() for c in table.column_names if c not in ("target_id", "survey")}
    band_rows = bin_summary(cols, edges, bootstrap=bootstrap, seed=seed, kind="band")
    survey_rows = bin_summary(cols, edges, bootstrap=bootstrap, seed=seed, kind="survey")
    write_csv(band_rows, out / "shapley_by_redshift.csv")
    write_csv(survey_rows, out / "survey_shapley_by_redshift.csv")
    from .explain_report import _atomic_text

    _atomic_text(out / "shapley_by_redshift.md",
                 f"# Band importance, {table.num_rows} galaxies of {split}\n\n" + markdown_summary(band_rows, survey_rows))
    plot_vs_redshift(band_rows, survey_rows, out / "shapley_vs_redshift.png",
                     title=f"Shapley and MM-SHAP vs redshift ({table.num_rows} galaxies, {split})")
    files = {k: str(out / k) for k in ("shapley.parquet", "shapley_by_redshift.csv", "shapley_by_redshift.md",
                                       "survey_shapley_by_redshift.csv", "shapley_vs_redshift.png")}
    return {"n": table.num_rows, "new": new, "files": files}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mantis-data explain``."""
    p.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt) or the released best_early.pt")
    p.add_argument("--release", required=True, type=Path, help="release folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="split whose galaxies are explained")
    p.add_argument("--n", type=int, default=None, help="explain the first N galaxies of the split (default: all)")
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    p.add_argument("--seed", type=int, default=0, help="baseline noise seed (per galaxy: hashed with its id)")
    p.add_argument("--batch-size", type=int, default=128, help="coalitions per forward pass")
    p.add_argument("--part-size", type=int, default=32, help="galaxies per results part (the resume granularity)")
    p.add_argument("--examples", type=int, default=3, help="baseline example figures to write")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per redshift bin")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--format", default="webdataset", choices=["webdataset", "parquet"], help="which encoding of the release to read")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``mantis-data explain``; print where the results are."""
    if args.n is not None and args.n < 1:
        raise MantisDataError(f"--n must be at least 1, not {args.n}")
    res = explain_release(args.checkpoint, args.release, args.out, args.split, args.n, seed=args.seed,
                          batch_size=args.batch_size, part_size=args.part_size, examples=args.examples,
                          bootstrap=args.bootstrap, device=args.device, format=args.format,
                          progress=not args.no_progress)
    print(f"explained {res['n']} galaxies ({res['new']} new) -> {args.out}")
    for k, v in res["files"].items():
        print(f"  {k:<32} {v}")
    return 0


def register(subparsers) -> None:
    """Add the ``explain`` subcommand to ``mantis-data``."""
    p = subparsers.add_parser("explain", help="Shapley values and MM-SHAP of a model over bands and surveys")
    add_arguments(p)
    p.set_defaults(func=run)
