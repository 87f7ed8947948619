"""Dataset cards (README.md with YAML configs and features) and their plots, rendered from dataset_card.md."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

from mantis_data.bands import BANDS, SURVEYS, zero_point
from mantis_data.release import PARQUET_DIR, WEBDATASET_DIR
from mantis_data.schema import (
    IMAGE_FIELDS,
    IMAGE_SHAPES,
    SCALAR_FIELDS,
    SPLITS,
    parquet_features,
    webdataset_features,
)

from .io import atomic_write_bytes

TEMPLATE = Path(__file__).resolve().parent.parent / "dataset_card.md"

FORMATS = {
    "webdataset": {"folder": WEBDATASET_DIR, "title": "WebDataset", "suffix": ".tar"},
    "parquet": {"folder": PARQUET_DIR, "title": "Parquet", "suffix": ".parquet"},
}


def render_template(template: str, values: dict[str, str]) -> str:
    """Replace ``{{ name }}`` placeholders; an unknown name is an error, not a silent blank."""

    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"dataset card template uses {{{{ {name} }}}} but no value was given")
        return str(values[name])

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, template)


def markdown_table(frame: pd.DataFrame, index_name: str | None = None) -> str:
    """A GitHub-flavoured markdown table of a DataFrame (index as first column when named)."""
    df = frame.reset_index() if index_name is not None else frame
    if index_name is not None:
        df = df.rename(columns={df.columns[0]: index_name})
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def band_table() -> str:
    """The 9-band table from mantis_data.bands."""
    rows = []
    for b in BANDS:
        s = SURVEYS[b.survey]
        zp = zero_point(b.name)
        zp = "25 + 2.5 log10(EXPTIME) (per sample: `ps1_zp`)" if zp is None else f"{zp:g}"
        rows.append(
            {
                "band": b.name,
                "survey": s.title,
                "wavelength (A)": f"{b.wavelength_angstrom:g}",
                "pixel scale (arcsec)": f"{s.pixel_scale_arcsec:g}",
                "cutout (px)": f"{s.cutout_size} x {s.cutout_size}",
                "field (arcsec)": f"{s.field_of_view_arcsec:g}",
                "flux unit": s.flux_unit,
                "zero point (mag)": f"{zp} {s.mag_system}",
            }
        )
    return markdown_table(pd.DataFrame(rows))


def split_description(split: dict) -> str:
    """The card's paragraph on how galaxies were split (from the MANIFEST's ``parameters.split``)."""
    if split.get("scheme") == "healpix":
        nside = int(split["nside"])
        side = 58.6 / nside
        return (
            f"Split scheme `healpix` (a sky-region holdout): each galaxy's split depends on its HEALPix cell "
            f"alone (nested, nside {nside}, cells about {side:.2g} deg on a side, from the ICRS position). A "
            "hash of the cell gives train/validation/test at 70/10/20 % of the cells, so every cell's galaxies "
            "are in one split and validation and test hold out whole regions of the sky. Adding galaxies never "
            "moves a galaxy to another split. (The paper's scheme hashes `target_id` instead.)"
        )
    return (
        "Each galaxy's split depends on its `target_id` alone (a hash picks one of 16 chunks, a second hash gives\n"
        "train/validation/test at 70/10/20 % inside each chunk, the paper's scheme), so rebuilding the release\n"
        "or adding galaxies never moves a galaxy to another split."
    )


def schema_table(fmt: str) -> str:
    """The sample schema with types and units, named as the given format stores them."""
    rows = []
    if fmt == "webdataset":
        rows.append({"field": "`__key__`", "type": "string", "meaning": "target_id (no dots)"})
    else:
        rows.append({"field": "`target_id`", "type": "string", "meaning": "survey name + '-' + survey object id"})
    for f in IMAGE_FIELDS:
        name = f"{f}.npy" if fmt == "webdataset" else f
        bands = " ".join(SURVEYS[f].bands)
        rows.append(
            {
                "field": f"`{name}`",
                "type": f"float32 {IMAGE_SHAPES[f]}",
                "meaning": f"{bands}, {SURVEYS[f].flux_unit}, {SURVEYS[f].pixel_scale_arcsec:g} arcsec/px",
            }
        )
    for name, (arrow, _, meaning) in SCALAR_FIELDS.items():
        field = f"`json.{name}`" if fmt == "webdataset" else f"`{name}`"
        rows.append({"field": field, "type": str(arrow), "meaning": meaning})
    return markdown_table(pd.DataFrame(rows))


def card_yaml(
    fmt: str,
    shard_names: dict[str, list[str]],
    version: str,
    split_stats: dict[str, dict[str, tuple[int, int]]] | None = None,
    prefix: str = "",
) -> dict:
    """The YAML header of one card: configs (default, tiny) listing each split's files explicitly, and
    dataset_info with the features and, when given, each split's (num_examples, num_bytes) per config
    (``split_stats[config][split]``; bytes of the shard files), so 🤗 Datasets refuses a shard that is
    missing or holds another number of samples, and never reads one the card does not list. ``prefix``:
    the shard paths' folder relative to the card (the root card's ``mantis_shrimp/``)."""
    suffix = FORMATS[fmt]["suffix"]
    splits = [s for s in SPLITS if shard_names.get(s)]
    default = [{"split": s, "path": [f"{prefix}data/{n}{suffix}" for n in shard_names[s]]} for s in splits]
    tiny = [{"split": s, "path": [f"{prefix}data/{shard_names[s][0]}{suffix}"]} for s in splits]
    features = webdataset_features() if fmt == "webdataset" else parquet_features()

    def info(name: str) -> dict:
        out = {"config_name": name, "features": features._to_yaml_list()}
        if split_stats is not None:
            stats = split_stats.get(name, {})
            out["splits"] = [
                {"name": s, "num_bytes": int(stats.get(s, (0, 0))[1]), "num_examples": int(stats.get(s, (0, 0))[0])}
                for s in splits
            ]
        return out

    return {
        "pretty_name": f"Mantis Shrimp ({FORMATS[fmt]['title']})",
        "license": "cc-by-4.0",
        "task_categories": ["image-classification", "tabular-regression"],
        "tags": ["astronomy", "photometric-redshift", "galaxies", "multi-band", "webdataset" if fmt == "webdataset" else "parquet"],
        "configs": [
            {"config_name": "default", "data_files": default, "default": True},
            {"config_name": "tiny", "data_files": tiny},
        ],
        "dataset_info": [info("default"), info("tiny")],
        "version": version,
    }


ROOT_CARD = """# Mantis Shrimp release {version}

This is the root of a Mantis Shrimp release: `MANIFEST.json` (version, checksums, counts),
`targets_audit.parquet`, and the same samples in two encodings, each a 🤗 Datasets folder with its
own card: `{wds}/` (WebDataset, documented in `{wds}/README.md`) and `{pq}/` (Parquet).

Loading **this folder** is a deliberate choice, not a fallback: the configs above point at the
WebDataset shards (configs `default` and `tiny`, paths from this folder). In this folder:

```python
import os

from datasets import load_dataset

# the WebDataset shards, and the same samples as Parquet
ds = load_dataset("{wds}", split="train")
pq = load_dataset("{pq}", split="train")
# this folder itself: the WebDataset shards, the same dataset as ds
same = load_dataset(os.getcwd(), split="train")
```

Pass this folder as a path (`os.getcwd()` or `/path/to/release`), not as `"."`: 🤗 Datasets then
fails with "dataset_name should be specified". From any other folder, pass the path
(`load_dataset("/path/to/release/{wds}")`): a name that is no folder there is looked up on the Hub. The
field names differ between the two encodings and a missing E(B-V) is NaN in both: see `{wds}/README.md`.
"""


def root_card(shard_names: dict[str, list[str]], version: str, files: dict[str, dict] | None = None) -> str:
    """The release root's README.md: YAML configs naming the WebDataset shards (default, tiny) by their
    paths from the root, and a short text saying so (🤗 Datasets takes one builder per folder, so the
    Parquet shards are loaded from their own folder)."""
    wds, pq = FORMATS["webdataset"]["folder"], FORMATS["parquet"]["folder"]
    head = card_yaml("webdataset", shard_names, version, None if files is None else split_stats(files, "webdataset"),
                     prefix=f"{wds}/")
    head["pretty_name"] = "Mantis Shrimp"
    text = yaml.safe_dump(head, sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n\n" + ROOT_CARD.format(version=version, wds=wds, pq=pq)


def split_stats(files: dict[str, dict], fmt: str) -> dict[str, dict[str, tuple[int, int]]]:
    """{config: {split: (samples, bytes)}} of one format's shards: all of them (default), the first of each split (tiny)."""
    out: dict[str, dict[str, tuple[int, int]]] = {"default": {}, "tiny": {}}
    for _, info in sorted(files.items()):
        if info.get("format") != fmt:
            continue
        split, n, size = info["split"], int(info["samples"]), int(info["bytes"])
        total = out["default"].get(split, (0, 0))
        out["default"][split] = (total[0] + n, total[1] + size)
        out["tiny"].setdefault(split, (n, size))
    return out


def plot_redshifts(release_targets: pd.DataFrame, path: Path) -> None:
    """PNG: the release's redshift distribution, all samples then one panel per survey (mantis_data.plots)."""
    from mantis_data.plots import redshift_histograms

    redshift_histograms(release_targets["z"].to_numpy(), release_targets["survey"].to_numpy(), path)


def plot_sky(release_targets: pd.DataFrame, path: Path) -> None:
    """PNG: the release's sky density, HEALPix counts per deg^2, all samples then per survey (mantis_data.plots)."""
    from mantis_data.plots import sky_density

    sky_density(release_targets["ra"].to_numpy(), release_targets["dec"].to_numpy(),
                release_targets["survey"].to_numpy(), path)


def write_cards(
    out_root: Path,
    manifest: dict,
    shard_names: dict[str, list[str]],
    release_targets: pd.DataFrame,
    catalog_table: pd.DataFrame,
    cutout_rejections: dict[str, int],
    dust_note: str,
    files: dict[str, dict] | None = None,
) -> list[Path]:
    """Write README.md and assets/*.png into both dataset folders and the root's README.md; return the paths.

    ``files``: the manifest's shard entries; with them each card records every split's num_examples
    and num_bytes (for the ``default`` and the ``tiny`` config), which 🤗 Datasets checks on load.
    """
    template = TEMPLATE.read_text()
    counts = pd.DataFrame(manifest["counts_by_survey"]).fillna(0).astype(int)
    counts = counts.reindex(columns=[s for s in SPLITS if s in counts.columns])
    counts.loc["total"] = counts.sum(axis=0)
    counts["all"] = counts.sum(axis=1)
    cutouts = (
        markdown_table(pd.DataFrame({"reason": list(cutout_rejections), "targets": list(cutout_rejections.values())}))
        if cutout_rejections
        else "None."
    )
    written: list[Path] = []
    figures: dict[str, Path] = {}  # drawn once, copied into the second folder (the same data)
    for fmt, spec in FORMATS.items():
        other = FORMATS["parquet" if fmt == "webdataset" else "webdataset"]
        folder = out_root / spec["folder"]
        if fmt == "webdataset":
            plain = (
                "Plain `webdataset`, without this package or 🤗 Datasets:\n\n```python\nimport webdataset as wds\n\n"
                f'urls = "{spec["folder"]}/data/train-{{00000..{len(shard_names.get("train", [""])) - 1:05d}}}.tar"\n'
                'for sample in wds.WebDataset(urls, shardshuffle=False).decode():\n'
                '    ps1, meta = sample["ps1.npy"], sample["json"]   # (5, 170, 170) float32, dict\n```'
            )
            stream_print = 'sample["__key__"], sample["json"]["z"]'
        else:
            plain = (
                "Plain `pyarrow`, without this package or 🤗 Datasets:\n\n```python\nimport numpy as np, pyarrow.parquet as pq\n\n"
                f'table = pq.read_table("{spec["folder"]}/data/train-00000.parquet")\n'
                'ps1 = np.asarray(table.column("ps1").combine_chunks().storage.flatten().flatten().flatten()).reshape(-1, 5, 170, 170)\n```'
            )
            stream_print = 'sample["target_id"], sample["z"]'
        values = {
            "format_title": spec["title"],
            "other_folder": other["folder"],
            "other_title": other["title"],
            "folder": spec["folder"],
            "version": manifest["version"],
            "build_note": manifest.get("note", ""),
            "counts_table": markdown_table(counts, index_name="survey"),
            "split_description": split_description(manifest.get("parameters", {}).get("split", {"scheme": "id"})),
            "band_table": band_table(),
            "schema_table": schema_table(fmt),
            "catalog_table": markdown_table(catalog_table, index_name="survey"),
            "cutout_table": cutouts,
            "dust_note": dust_note,
            "stream_print": stream_print,
            "plain_snippet": plain,
        }
        header = yaml.safe_dump(card_yaml(fmt, shard_names, manifest["version"], None if files is None else split_stats(files, fmt)), sort_keys=False, allow_unicode=True)
        text = f"---\n{header}---\n\n{render_template(template, values)}"
        readme = folder / "README.md"
        atomic_write_bytes(text.encode("utf-8"), readme)
        written.append(readme)
        (folder / "assets").mkdir(parents=True, exist_ok=True)
        for name, plot in (("redshift_hist.png", plot_redshifts), ("sky_map.png", plot_sky)):
            path = folder / "assets" / name
            if name in figures:
                atomic_write_bytes(figures[name].read_bytes(), path)
            else:
                plot(release_targets, path)
                figures[name] = path
            written.append(path)
    root_readme = out_root / "README.md"
    atomic_write_bytes(root_card(shard_names, manifest["version"], files).encode("utf-8"), root_readme)
    return [*written, root_readme]
