"""Manifold walks: inputs that leave a layer's output (nearly) unchanged.

    core.py      config, the walk state, the ratio r and distances, the method registry
    page_walks.py  the page's tangent and clamped walks
    jacobian.py  the Jacobian walk (least-gain directions of dO/de) and re-projection
    driver.py    running batches of walks into records
    figures.py   figures from walk records
"""
from . import jacobian, page_walks  # noqa: F401  (each registers its moves)
from .core import CONVENTIONS, METHODS, WalkConfig, WalkState, input_at_output, ratio
from .driver import WalkResult, ratio_between, walk, walk_items

__all__ = ["CONVENTIONS", "METHODS", "WalkConfig", "WalkResult", "WalkState", "input_at_output", "ratio",
           "ratio_between", "walk", "walk_items"]
