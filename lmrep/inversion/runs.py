"""The two uses of ``lmrep invert`` as library calls: invert prompts, or the observed tensors of a states file.

Each checks everything before any work, makes the run folder from the run's config (resuming one that holds the
same config) and inverts what the folder has not finished.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import LmrepError
from ..models.layers import LayerModel, layer_model
from ..models.load import LoadedModel
from ..records.folder import RunDir
from . import states as states_file
from .base import config_dict, output_width
from .config import InvertConfig
from .locate import locate
from .report import run, run_states

log = logging.getLogger(__name__)

OnRecord = Callable[[dict], None] | None


class InvertRun(NamedTuple):
    records: list[dict]  # one per prompt or tensor, in input order
    layer_name: str  # the layer inverted (the one found, for --layer auto)
    run_dir: RunDir


def invert_prompts(lm: LoadedModel, prompts: list[str], cfg: InvertConfig, layer: int | str, head: str = "none",
                   out: str | Path | None = None, new: bool = False, on_record: OnRecord = None,
                   progress: bool = True) -> InvertRun:
    """Invert the output of ``layer`` for every prompt, each checked against the model before any work."""
    target = layer_model(lm, layer, head)
    cfg.fits(lm.vocab_size)
    for p in prompts:
        lm.encode(p)  # every prompt is checked before any work starts
    run_dir = RunDir.create("invert", dict(config_dict(cfg, target), prompts=prompts), out, new=new)
    records = run(run_dir, target, prompts, cfg, progress=progress, on_record=on_record)
    return InvertRun(records, target.name, run_dir)


def invert_states(path: str | Path, keys: list[str] | None, load_model: Callable[[], LoadedModel],
                  cfg: InvertConfig, layer: int | str, head: str = "none", seed: int = 0,
                  out: str | Path | None = None, new: bool = False, on_record: OnRecord = None,
                  progress: bool = True) -> InvertRun:
    """Invert the tensors of the states file ``path`` (only those under ``keys``, when given), each checked against
    the model and layer before any work. The model is loaded (``load_model()``) once the file has been read, so a
    bad file is refused before the slow load. ``layer="auto"`` finds the layer (and head) whose outputs these are
    and writes the search's evidence to layer_search.json."""
    observed = states_file.load(path)
    if keys:
        observed = observed.select(keys)
    lm = load_model()
    states_file.check_made_by(observed, lm, path)
    cfg.fits(lm.vocab_size)
    target, search = _target(lm, observed, cfg, layer, head, seed)
    states_file.check_width(observed, output_width(target), target.name, path)
    config = dict(config_dict(cfg, target), states=dict(file=Path(path).name, sha256=observed.digest,
                                                        keys=observed.keys), layer_search=layer == "auto")
    run_dir = RunDir.create("invert", config, out, new=new)
    if search:
        run_dir.write_json("layer_search.json", search)
    records = run_states(run_dir, target, observed, cfg, progress=progress, on_record=on_record)
    return InvertRun(records, target.name, run_dir)


def _target(lm: LoadedModel, observed: states_file.States, cfg: InvertConfig, layer: int | str, head: str,
            seed: int) -> tuple[LayerModel, dict | None]:
    """The layer to invert and, for ``layer="auto"``, what the search found."""
    if layer != "auto":
        return layer_model(lm, layer, head), None
    if head != "none":
        raise LmrepError("--layer auto finds the head too: leave --head out")
    found = locate(lm, observed.tensors[0][0], cfg, seed=seed)
    log.info("%s", found.text())
    return found.target, dict(found=found.target.name, matching=found.matching, evidence=found.evidence)
