"""Manifold walks: inputs that leave a layer's output (nearly) unchanged.

    config.py    what a walk is (WalkConfig), torch-free
    registry.py  the walk methods by name, each module imported on first use
    core.py      the walk state, the ratio r and distances
    page_walks.py  the page's tangent and clamped walks
    jacobian.py  the Jacobian walk (least-gain directions of dO/de) and re-projection
    driver.py    running batches of walks into records
    figures.py   figures from walk records

The names below are imported on first use (PEP 562): the config is read and checked before torch loads.
"""
from ..lazy import lazy

__all__ = ["CONVENTIONS", "WalkConfig", "WalkResult", "WalkState", "input_at_output", "ratio", "ratio_between", "walk",
           "walk_items"]
__getattr__, __dir__ = lazy(__name__, {
    "CONVENTIONS": "config", "WalkConfig": "config", "WalkState": "core", "input_at_output": "core", "ratio": "core",
    "WalkResult": "driver", "ratio_between": "driver", "walk": "driver", "walk_items": "driver"})
