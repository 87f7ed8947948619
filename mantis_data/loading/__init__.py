"""PyTorch loaders over a Mantis Shrimp release, for one process or many ranks under ``torch.distributed``.

Two datasets, one sampling plan:

* ``WebDatasetStream``: an ``IterableDataset`` over the WebDataset tar shards, local or by URL. Locally it
  takes each shard's offset index from the file the builder writes beside it (``tarindex``; a shard
  without one is scanned once per process with ``tarfile``) and copies each sample's three ``.npy``
  arrays out of a memory map of the shard straight into the batch tensors. Over ``http(s)://`` or
  ``file://`` URLs it streams each shard in order through ``tarfile``.
* ``ParquetDataset``: a map-style ``Dataset`` over the Parquet shards, memory-mapped; the image cubes
  are ``numpy`` views of the raw page values (``pages``), or pyarrow's decoding of one row group
  (32 samples) at a time for shards written otherwise. ``ds[i]`` is one sample; ``ds[request]`` a batch.

``make_loader`` wraps either in a ``MantisLoader`` (a ``DataLoader`` whose batches the datasets build
themselves) with ``set_epoch``, ``state_dict`` and ``load_state_dict``; its settings are one frozen
``LoaderConfig``. At open both datasets check the shards against the MANIFEST (sizes, sample keys and
redshifts; ``verify="sha256"``: every byte, hashed in the background).

Modules, one job each: ``shards`` (release and MANIFEST), ``tarindex`` and ``tar`` (tar shards),
``pages`` and ``parquet`` (Parquet shards), ``verify`` (sha256), ``redshifts``, ``seeds``, ``plan`` (the
per-epoch order), ``batch`` (batch assembly, shared-memory slots), ``copy`` (a batch's byte copies, over
``copy_threads`` threads), ``recycle`` (batch memory reused without workers), ``stream`` and ``mapstyle``
(the datasets), ``config`` and ``loader``.

Sampling (``order``), identical for both datasets:

* ``"sequential"``: every sample once, in release order (evaluation).
* ``"shuffle"``: every sample once; the order of the shards (WebDataset) or row groups (Parquet) is
  permuted per epoch, then a shuffle buffer of ``shuffle_buffer`` samples mixes each worker's stream
  (Parquet: consecutive windows of that many samples are shuffled, so that the row-group cache holds a
  window). ``shuffle_buffer=None`` draws a full uniform permutation instead (fine for local tar shards;
  on Parquet it decodes about one row group per sample).
* ``"balanced"``: the paper's class-balanced sampling: each of the redshift classes present in the split
  (``redshift.redshift_class``) has the same probability, a uniform member of the class is drawn, with
  replacement, ``batches_per_epoch`` batches per rank per epoch (paper: 1000). Needs random access
  (local shards). Samples whose redshift has no class (z <= 0 or z >= 1.6) are never drawn.
* ``"balanced-stream"``: balancing on a stream (also over URLs): each sample met in the shuffled stream is
  kept with probability ``min(1, cap / n_class)`` (``cap`` = ``balance_cap``, default the smallest class
  count, which makes the kept classes exactly flat), the stream repeating with new shuffles until
  ``batches_per_epoch`` batches are filled. ``acceptance_rate`` gives the expected fraction kept.

Ranks and workers. All ranks build the same per-epoch order from (seed, epoch); rank ``r`` takes the
``r``-th of ``world_size`` equal contiguous slices of it, so each sample goes to one rank per epoch and
every rank gets the same number of batches whatever the shard sizes. Remainders: with
``drop_last=True`` (the default for ``"shuffle"``) each rank gets ``N // world_size`` samples, in full
batches only; the few samples left out change every epoch. With ``drop_last=False`` (the default for
``"sequential"``) the order is padded by wrapping to ``ceil(N / world_size)`` per rank: the padding
repeats samples from the start and is marked ``valid = False``, so an evaluation that masks with
``valid`` counts every sample exactly once, on every rank the same number of batches (the last one
possibly short). Inside a rank the batches are dealt to ``num_workers`` contiguous streams, batch ``j``
coming from stream ``j % num_workers``, which is the order in which ``DataLoader`` returns them.

Epochs. ``MantisLoader`` keeps one ``DataLoader`` iteration running across epochs: the workers carry on
into epoch e + 1 (prefetching) while epoch e is consumed, when epochs are asked for in order; any other
request (resume, skipped or unfinished epoch) restarts them at the position asked for.

Resume. The order depends only on (seed, epoch, world_size, num_workers, batch_size, sampling options),
and each batch's augmentation on its ``aug_seed``, so ``state_dict()`` (epoch and batches consumed) is
enough to continue mid-epoch with exactly the remaining batches of an uninterrupted run.

A batch is a dict: ``galex`` (B,2,32,32), ``ps1`` (B,5,170,170), ``unwise`` (B,2,32,32) float32 linear
flux (or what the ``transform`` makes of them, e.g. ``image`` (B,9,120,120)); ``z`` float64 (B,);
``label`` int64 (B,), the redshift class, -1 when z is outside the grid; ``ebv`` float32 (B,2)
(``ebv_csfd``, ``ebv_planck``, mag) with missing values (NaN in the release; null in older releases) replaced by ``ebv_fill``
(default 0.0) and flagged in ``ebv_missing`` bool (B,2) (``ebv_fill=None`` keeps NaN); ``valid`` bool
(B,); ``index`` int64 (B,), the sample's position in the split; ``target_id`` list[str];
``aug_seed`` int64 0-d, the seed of this batch's augmentation.
"""

from .batch import to_device
from .config import FORMATS, VERIFY_MODES, LoaderConfig
from .loader import MantisLoader, make_loader
from .mapstyle import BatchRequest, ParquetDataset, PlanSampler
from .plan import ORDERS
from .redshifts import split_redshifts
from .seeds import dist_info
from .stream import WebDatasetStream

__all__ = [
    "ORDERS",
    "FORMATS",
    "VERIFY_MODES",
    "BatchRequest",
    "LoaderConfig",
    "MantisLoader",
    "ParquetDataset",
    "PlanSampler",
    "WebDatasetStream",
    "dist_info",
    "make_loader",
    "split_redshifts",
    "to_device",
]
