"""Resampling index plan of ``mantis_data.transforms.Transform``: nearest-neighbour source pixels under rotate, flip, crop.

``_IndexPlan`` turns one batch's augmentation parameters into the flat source index (and validity mask)
of every output pixel, so rotation, flips and the centre crop are one gather; ``_CACHE_FRIENDLY_BYTES``
is the per-sample size above which the CPU path works one sample at a time.
"""

from __future__ import annotations

import torch

from .transforms_config import AugmentParams

_CACHE_FRIENDLY_BYTES = 64 * 1024
"""Per-sample source size above which the CPU path transforms one sample at a time."""


class _IndexPlan:
    """Nearest-neighbour source pixel of every output pixel under rotate -> flip -> centre crop.

    The source column of output pixel (i, j) is floor(a_j - b_i) and its row floor(c_j + d_i), with
    float64 vectors a = cos x_j + centre + 1/2, b = sin y_i, c = sin x_j + centre + 1/2, d = cos y_i
    (x, y: output pixel position from the image centre, after undoing the flips; counter-clockwise as
    displayed, y down; nearest = floor(v + 1/2)). Writing each vector as integer part + fraction,
    floor(a_j - b_i) = [a_j] - [b_i] - 1 + (frac a_j >= frac b_i) and floor(c_j + d_i) = [c_j] + [d_i] +
    (frac c_j >= 1 - frac d_i): the per-pixel work is two comparisons and integer adds.
    """

    def __init__(self, size: int, k: int, top: int, params: AugmentParams, device: torch.device):
        f64 = torch.float64
        self.size, self.k = size, k
        grid = torch.arange(top, top + k, dtype=f64, device=device)
        last = float(size - 1)
        cen = last / 2.0
        # output = flip(rotate(x)): undo the flips first (in full-image coordinates), then the rotation
        rows = torch.where(params.vflip[:, None], last - grid[None, :], grid[None, :]) - cen  # (B, K), down
        cols = torch.where(params.hflip[:, None], last - grid[None, :], grid[None, :]) - cen  # (B, K), right
        theta = torch.deg2rad(params.angle_deg.to(f64))[:, None]
        cos, sin = torch.cos(theta), torch.sin(theta)
        a = cos * cols + (cen + 0.5)  # over output columns j
        b = sin * rows  # over output rows i
        c = sin * cols + (cen + 0.5)
        d = cos * rows
        fa, fb, fc, fd = torch.floor(a), torch.floor(b), torch.floor(c), torch.floor(d)
        self.ra, self.rb, self.rc, self.rd1 = a - fa, b - fb, c - fc, 1.0 - (d - fd)
        # the source column and row are monotone in i and j: their extremes are at the crop's corners
        ends = [0, k - 1]
        xs_c = torch.stack([fa[:, j] - fb[:, i] - 1 + (self.ra[:, j] >= self.rb[:, i]).to(f64) for i in ends for j in ends])
        ys_c = torch.stack([fc[:, j] + fd[:, i] + (self.rc[:, j] >= self.rd1[:, i]).to(f64) for i in ends for j in ends])
        lo = float(torch.minimum(xs_c.min(), ys_c.min()))
        hi = float(torch.maximum(xs_c.max(), ys_c.max()))
        self.all_valid = lo >= 0 and hi <= last
        # int32 on the CPU (index_select takes it, half the memory traffic), int64 for gather elsewhere
        itype = torch.int32 if torch.device(device).type == "cpu" else torch.int64
        if self.all_valid:
            self.p = (fc * size + fa - 1).to(itype)  # (B, K) over j
            self.q = (fd * size - fb).to(itype)  # (B, K) over i
        else:
            self.fa1, self.fb, self.fc, self.fd = ((fa - 1).to(itype), fb.to(itype), fc.to(itype), fd.to(itype))

    def index(self, i: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(flat source index, validity or None) of sample ``i``: (K*K,), or of all samples: (B, K*K)."""
        sl = slice(None) if i is None else slice(i, i + 1)
        ra, rb, rc, rd1 = self.ra[sl], self.rb[sl], self.rc[sl], self.rd1[sl]
        ge_x = ra[:, None, :] >= rb[:, :, None]  # (n, K, K) bool
        ge_y = rc[:, None, :] >= rd1[:, :, None]
        kk = self.k * self.k
        if self.all_valid:
            idx = self.p[sl][:, None, :] + self.q[sl][:, :, None]
            idx.add_(ge_x).add_(ge_y, alpha=self.size)
            valid = None
        else:
            xs = (self.fa1[sl][:, None, :] - self.fb[sl][:, :, None]).add_(ge_x)
            ys = (self.fc[sl][:, None, :] + self.fd[sl][:, :, None]).add_(ge_y)
            last = self.size - 1
            valid = ((xs >= 0) & (xs <= last) & (ys >= 0) & (ys <= last)).view(-1, kk)
            idx = ys.clamp_(0, last).mul_(self.size).add_(xs.clamp_(0, last))
        idx = idx.view(-1, kk)
        if i is not None:
            return idx[0], (None if valid is None else valid[0])
        return idx, valid
