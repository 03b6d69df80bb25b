"""BatchNorm whose batch statistics span every process (CPU/gloo and GPU/NCCL alike).

The global encoder is a torchvision ResNet with BatchNorm. Under data parallelism plain BatchNorm
normalises each process's shard with that shard's statistics, so the trained model depends on how many
processes split the global batch (the original's behaviour under DDP). With the statistics reduced across
ranks, N processes × B/N samples compute the same thing as one process × B samples, which is what makes
"the same global batch gives the same training" hold. ``torch.nn.SyncBatchNorm`` refuses CPU tensors,
hence this small implementation (two all-reduces per layer: mean, then centred second moment, for the
same numerics as a one-process two-pass variance).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce  # autograd-aware all_reduce


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` with cross-process statistics in training mode; identical to it otherwise.

    Same parameters and buffers (and state-dict names) as ``BatchNorm2d``: models convert in place and
    checkpoints stay interchangeable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if not self.training or world == 1:
            return super().forward(x)

        c = x.shape[1]
        xf = x.float()
        count = torch.tensor([float(x.numel() // c)], device=x.device)
        local = torch.cat([xf.sum(dim=(0, 2, 3)), count])
        total = all_reduce(local)
        n = total[c]
        mean = total[:c] / n
        centred = xf - mean.view(1, c, 1, 1)
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n.detach() / (n.detach() - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1).float() + self.bias.view(1, c, 1, 1).float()
        return y.to(x.dtype)


def convert_global_bn(module: nn.Module) -> int:
    """Turn every plain ``BatchNorm2d`` under ``module`` into :class:`GlobalBatchNorm2d` in place.

    Returns how many layers were converted. Only exact ``BatchNorm2d`` instances change class (the
    subclass adds behaviour, no state), so parameters, buffers, hooks and optimiser references survive.
    """
    n = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
            n += 1
    return n
