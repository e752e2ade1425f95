"""Every command runs offline with its defaults: the default models are the ones this machine has (a trained LM
where one exists offline), and a command says which stem and LM it used. Steps are cut to keep the tests short;
the models, layers and stems are the defaults. (reproduce --quick runs in test_reproduce.py, report in
test_report.py.)"""
from __future__ import annotations

import json

import pytest

from lmrep.cli import main

pytestmark = pytest.mark.slow  # every command here loads the trained default model


def test_invert_default(tmp_path, capsys):
    assert main(["invert", "The sky is blue.", "--steps", "2", "--out", str(tmp_path / "r"), "--json"]) == 0
    (rec,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rec["model"] == "smollm2-135m" and rec["trained"] and rec["layer_name"] == "blocks.0.hook_resid_post"


def test_walk_default(tmp_path, capsys):
    assert main(["walk", "The sky is blue.", "--steps", "1", "--out", str(tmp_path / "w"), "--json"]) == 0
    (rec,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rec["model"] == "smollm2-135m" and rec["trained"] and rec["layer"] == 12


def test_features_quick_default(tmp_path, capsys):
    assert main(["features", "--quick", "--steps", "1", "--out", str(tmp_path / "f"), "--json"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["n_seeds"] == 2 and summary["n_panels"] == 16 and summary["n_patches"] == 36
    assert "stem vit-b16-w576 (untrained)" in out.err and "LM smollm2-135m (trained)" in out.err
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    assert config["vit"] == "vit-b16-w576" and config["model"] == "smollm2-135m" and config["trained"]


def test_reconstruct_image_quick_default(tmp_path, capsys):
    assert main(["reconstruct-image", "--quick", "--steps", "1", "--out", str(tmp_path / "r"), "--json"]) == 0
    out = capsys.readouterr()
    models = {json.loads(x)["model"] for x in out.out.splitlines()}
    assert models == {"vit-b16-w576 stem + smollm2-135m", "dinov2-s14"}
    assert "LM smollm2-135m (trained)" in out.err


def test_models_lists_language_and_vision_models(capsys):
    assert main(["models", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    names = {r["name"]: r for r in rows}
    assert {"smollm2-135m", "vit-b16", "vit-l16", "dinov2-s14"} <= set(names)
    assert all(names[n]["offline"] for n in ("smollm2-135m", "vit-b16", "vit-l16"))
    assert names["vit-b16"]["kind"] == "vision" and names["smollm2-135m"]["kind"] == "language"
