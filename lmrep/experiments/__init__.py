"""The page's language results as experiments that measure rates (``lmrep reproduce``), grids and sweeps of them,
and the reports rebuilt from their run folders. This module only names the package's public parts, each imported
on first use (PEP 562), so that the configs (config.py) and executors' names are read before torch loads; the
experiments' protocol is in ``registry``."""
from ..lazy import lazy

__all__ = ["EXECUTORS", "Experiment", "ReproduceConfig", "check", "combine", "experiments", "get", "make_executor",
           "rebuild_any", "rebuild_experiment", "report_runs", "reporter", "reporters", "reproduce", "reproduce_all",
           "run_and_report"]
__getattr__, __dir__ = lazy(__name__, {
    "combine": "combine", "ReproduceConfig": "config", "EXECUTORS": "executors", "make_executor": "executors",
    "rebuild_any": "rebuild", "rebuild_experiment": "rebuild", "report_runs": "rebuild", "reporter": "rebuild",
    "reporters": "rebuild", "Experiment": "registry", "check": "registry", "experiments": "registry", "get": "registry",
    "reproduce": "reproduce", "reproduce_all": "reproduce", "run_and_report": "reproduce"})
