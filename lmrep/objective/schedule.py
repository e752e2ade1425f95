"""The learning-rate schedules: eta falling linearly to eta/10 over the run (the page's schedule, used by inversion,
feature visualisation and image reconstruction alike), or constant (one of the tuned setting's choices)."""
from __future__ import annotations

import torch


def decay(step: int, steps: int) -> float:
    """The factor on eta at ``step`` of ``steps``: 1 at the first step, 0.1 at the last."""
    return 1.0 - 0.9 * step / max(1, steps - 1)


def factor(schedule: str, step: int, steps: int) -> float:
    """The factor on eta at ``step`` of ``steps`` under ``schedule``."""
    return decay(step, steps) if schedule == "linear" else 1.0


def decaying(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that applies ``decay`` to ``opt``; call its ``step()`` after each optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: decay(i, steps))
