"""The page's language results as experiments that measure rates (``lmrep reproduce``), grids and sweeps of them,
and the reports rebuilt from their run folders. This module only names the package's public parts; the experiments'
protocol is in ``registry``."""
from .combine import combine
from .config import ReproduceConfig
from ..engine import ItemsFailed
from .executors import EXECUTORS, make_executor
from .rebuild import rebuild_any, rebuild_experiment, report_runs, reporter, reporters
from .registry import Experiment, check, experiments, get
from .reproduce import reproduce, reproduce_all, run_and_report

__all__ = ["EXECUTORS", "Experiment", "ItemsFailed", "ReproduceConfig", "check", "combine", "experiments", "get",
           "make_executor", "rebuild_any", "rebuild_experiment", "report_runs", "reporter", "reporters", "reproduce",
           "reproduce_all", "run_and_report"]
