"""The one engine under every command: a job's independent tasks, run by an executor, written as items.

``job``: tasks, stages, the inline executor and the driver that writes each finished item once; ``items``: the
run folder's items.jsonl (and the tensors its items carry), the resume rule and the progress bar; ``command``: a
single command's run. The worker processes and Ray executors of sweeps build on these in ``lmrep.experiments``.
"""
from .items import ITEMS, TENSOR_FIELD, TENSORS, ItemLog, MemoryLog, Progress, check_format, item_id
from .job import RETRIES, Event, Inline, ItemsFailed, Job, Outcome, Plan, Task, error_text, execute, run_here

__all__ = ["ITEMS", "TENSOR_FIELD", "TENSORS", "ItemLog", "MemoryLog", "Progress", "check_format", "item_id",
           "RETRIES", "Event", "Inline", "ItemsFailed", "Job", "Outcome", "Plan", "Task", "error_text", "execute",
           "run_here"]
