"""The feature-visualisation loop: move an image's parameters to maximise objectives, one per image in a batch."""
from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from ..objective.schedule import decaying
from .config import RenderConfig
from .objectives import Objective
from .param import Param
from .transforms import Transform, compose


def values(objectives: list[Objective], acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each image's own objective: (B,) from B objectives, or one objective for every image."""
    if len(objectives) == 1:
        return objectives[0](acts)
    return torch.stack([o(acts)[b] for b, o in enumerate(objectives)])


def evaluate(models: dict[str, nn.Module], objectives: list[Objective], images: torch.Tensor) -> torch.Tensor:
    """Objective values of untransformed images, (B,), without gradients."""
    with torch.no_grad():
        return values(objectives, {name: m(images) for name, m in models.items()})


def render(models: dict[str, nn.Module], objectives: list[Objective], param: Param,
           transform: Transform = compose([]), cfg: RenderConfig = RenderConfig(), progress: bool = False) -> dict:
    """Maximise ``objectives`` over the images ``param`` makes, each step seeing ``transform(images, progress)``.

    ``models`` maps each layer name the objectives read to a module images -> (B, T, D). Returns the start and end
    images (B, 3, H, W), the objective values of both (untransformed), and the mean value per step.
    """
    params, make_image = param
    opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else _ScaledGD(params, lr=cfg.lr)
    sched = decaying(opt, cfg.steps)
    start = make_image().detach().clone()
    curve = []
    for i in tqdm(range(cfg.steps), disable=not progress, leave=False, desc="render"):
        opt.zero_grad()
        seen = transform(make_image(), i / max(1, cfg.steps - 1))
        v = values(objectives, {name: m(seen) for name, m in models.items()})  # (B,)
        (-v.sum()).backward()
        opt.step()
        sched.step()
        curve.append(float(v.detach().mean()))
    end = make_image().detach().clone()
    return dict(start=start, image=end, value_start=evaluate(models, objectives, start),
                value_end=evaluate(models, objectives, end), curve=curve)


class _ScaledGD(torch.optim.Optimizer):
    """Gradient descent whose step, per batch item, is the gradient divided by its largest absolute entry."""

    def __init__(self, params, lr: float):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad  # (B, ...)
                top = g.flatten(1).abs().amax(dim=1).clamp_min(1e-30).view(-1, *([1] * (g.dim() - 1)))
                p.add_(g / top, alpha=-group["lr"])
