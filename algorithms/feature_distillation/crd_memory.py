"""CRD's pieces that are plain PyTorch: the embedding head and the two memory banks (RepDistiller's ``Embed`` and
``ContrastMemory``). :class:`~.crd.CRD` composes them into a Composer distillation term; this module imports only
torch, so the same arithmetic runs anywhere (``benchmarks/measurements/crd_step_overhead.py`` times it on a GPU image without
Composer). Under ``torch.distributed`` the banks take every rank's batch and ``Z`` is averaged, so they stay equal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ['Embed', 'ContrastMemory']


def _world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_available() and \
        torch.distributed.is_initialized() else 1


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(_world())]
    torch.distributed.all_gather(parts, t)
    return torch.cat(parts)


class Embed(nn.Module):
    """RepDistiller's ``Embed``: flatten, ``Linear(dim_in -> dim_out)``, L2-normalise each row."""

    def __init__(self, dim_in: int, dim_out: int = 128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.reshape(x.shape[0], -1).float())
        return x / x.pow(2).sum(1, keepdim=True).sqrt()  # RepDistiller's Normalize(2), no epsilon


class ContrastMemory(nn.Module):
    """RepDistiller's ``ContrastMemory``: two banks ``N x d`` (buffers, so checkpointed with the model), initialised
    uniform in ``[-stdv, stdv]``, ``stdv = 1/sqrt(d/3)``, and the normalisation constants ``Z`` (``-1`` until the
    first batch sets them to ``mean(exp(scores / T)) * N``, then kept).

    ``forward(v_s, v_t, idx, contrast_idx)`` returns the normalised scores ``[B, K+1]`` of the student embedding
    against the teacher bank and of the teacher embedding against the student bank (RepDistiller's ``out_v1``,
    ``out_v2``), then moves each bank's rows ``idx`` towards the batch's embeddings with momentum.
    """

    def __init__(self, feat_dim: int, num_data: int, nce_t: float = 0.07, nce_m: float = 0.5):
        super().__init__()
        self.nce_t, self.nce_m = nce_t, nce_m
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer('memory_s', torch.rand(num_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('memory_t', torch.rand(num_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('z', torch.full((2,), -1.0))  # Z for (student scores, teacher scores)

    def scores(self, v: torch.Tensor, memory: torch.Tensor, contrast_idx: torch.Tensor) -> torch.Tensor:
        """``exp(memory[contrast_idx] . v / T)``, ``[B, K+1]`` (the bank rows are constants)."""
        weight = memory.index_select(0, contrast_idx.reshape(-1)).detach().view(*contrast_idx.shape, -1)
        return torch.exp(torch.bmm(weight, v.unsqueeze(2)).squeeze(2) / self.nce_t)

    def forward(self, v_s: torch.Tensor, v_t: torch.Tensor, idx: torch.Tensor,
                contrast_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_s = self.scores(v_s, self.memory_t, contrast_idx)
        out_t = self.scores(v_t, self.memory_s, contrast_idx)
        with torch.no_grad():
            if bool((self.z < 0).any()):  # the first batch fixes Z (the same on every rank)
                z = torch.stack([out_s.mean(), out_t.mean()]) * self.memory_s.shape[0]
                if _world() > 1:
                    torch.distributed.all_reduce(z)
                    z /= _world()
                self.z.copy_(torch.where(self.z < 0, z, self.z))
            self.update(v_s, v_t, idx)
        return out_s / self.z[0], out_t / self.z[1]

    @torch.no_grad()
    def update(self, v_s: torch.Tensor, v_t: torch.Tensor, idx: torch.Tensor) -> None:
        """``bank[idx] = normalize(m * bank[idx] + (1 - m) * v)`` for both banks; under DDP with every rank's batch,
        so that the banks stay equal on all ranks."""
        if _world() > 1:
            v_s, v_t, idx = (_all_gather(t.detach().contiguous()) for t in (v_s, v_t, idx))
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            w = memory.index_select(0, idx) * self.nce_m + v.detach().to(memory.dtype) * (1 - self.nce_m)
            memory.index_copy_(0, idx, w / w.pow(2).sum(1, keepdim=True).sqrt())
