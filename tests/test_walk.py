"""Manifold walks: the invariants of each walk, the ratio r, the toy nets and the CLI, on tiny models."""
from __future__ import annotations

import json

import pytest
import torch

from lmrep.errors import LmrepError
from lmrep.models.layers import layer_model
from lmrep.objective.targets import FCNet, MLPMimic, make_target
from lmrep.walks import WalkConfig, WalkState, ratio, ratio_between, walk
from lmrep.walks.jacobian import least_directions
from lmrep.walks.page_walks import clamped_round

PROMPT = "The sky is blue."


def _state(target, text: str, cfg: WalkConfig, seed: int = 0) -> WalkState:
    from lmrep.objective.batching import prompt_generator
    lm = target.lm
    ids = lm.encode(text)
    e0 = lm.embed(torch.tensor([ids])).detach().clone()  # (1, T, d)
    mask = torch.ones(1, len(ids), dtype=torch.long)
    with torch.no_grad():
        out0 = target(e0, mask)
    return WalkState(target, cfg, e0.clone(), e0, out0, mask, [prompt_generator(seed, ids, lm.device)])


@pytest.mark.parametrize("method", ["tangent", "jacobian", "clamped"])
def test_zero_steps_is_the_identity(tiny_gpt2, method):
    target = layer_model(tiny_gpt2, 2)
    (res,) = walk(target, [PROMPT], WalkConfig(method=method, steps=0, directions=2, krylov=2))
    assert torch.equal(res.start, res.end)
    assert res.record["input_distance"] == 0 and res.record["output_distance"] == 0
    assert res.record["r"] is None and len(res.record["trajectory"]) == 1
    assert res.record["final_text"] == PROMPT


def test_jacobian_directions_are_orthonormal_and_move_the_output_less_than_random(tiny_gpt2):
    target = layer_model(tiny_gpt2, 3)
    state = _state(target, PROMPT, WalkConfig(method="jacobian"))
    V, gains, random_gain = least_directions(state, state.e, k=4, blocks=3)  # (1, n, 4)
    assert torch.allclose(V[0].T @ V[0], torch.eye(4), atol=1e-5)
    assert torch.all(gains[0][1:] >= gains[0][:-1])  # ascending

    h = 1e-3 * state.e.norm().item()  # a small move, where the linear picture holds

    def moved(direction: torch.Tensor) -> float:
        e = state.e + h * direction.reshape(state.e.shape)
        with torch.no_grad():
            return (target(e, state.mask) - state.out0).norm().item()

    along = [moved(V[0, :, j]) for j in range(4)]
    g = torch.Generator().manual_seed(1)
    rand = [moved(u / u.norm()) for u in torch.randn(16, V.shape[1], generator=g)]
    assert max(along) < sum(rand) / len(rand)  # measured: every direction beats the average random one
    # the gains the walk reports are the measured ones (finite differences agree to a few percent)
    assert along[0] / h == pytest.approx(gains[0, 0].item(), rel=0.05)
    assert random_gain is not None and gains[0, 0] < random_gain[0].mean()


@pytest.mark.parametrize("convention", ["text", "scripts"])
def test_clamped_walk_never_moves_the_clamped_part_by_gradient(tiny_gpt2, convention):
    target = layer_model(tiny_gpt2, 2)
    cfg = WalkConfig(method="clamped", convention=convention, noise=0.01, lr=0.05, inner_steps=3)
    state = _state(target, PROMPT, cfg)
    for _ in range(3):
        before = state.e.clone()
        saved = [g.get_state() for g in state.gens]
        (diag,) = clamped_round(state, 1)
        i, d = diag["split"], before.shape[-1]
        # replay the round's random draws: the split index, then the noise
        replay = torch.Generator().manual_seed(0)
        replay.set_state(saved[0])
        assert int(torch.randint(d, (1,), generator=replay)) == i
        draw = torch.randn if convention == "text" else torch.rand
        noise = cfg.noise * draw(before.shape[1:], generator=replay)
        clamped = slice(0, i) if convention == "text" else slice(i, d)
        free = slice(i, d) if convention == "text" else slice(0, i)
        assert torch.equal(state.e[0, :, clamped], before[0, :, clamped] + noise[:, clamped])
        if free.stop > free.start:
            assert not torch.equal(state.e[0, :, free], before[0, :, free])  # the free side did move


def test_clamped_walk_lowers_the_output_distance_it_descends(tiny_gpt2):
    target = layer_model(tiny_gpt2, 2)
    state = _state(target, PROMPT, WalkConfig(method="clamped", noise=0.05, lr=1e-3, inner_steps=1))
    (first,) = clamped_round(state, 1)
    state.cfg = WalkConfig(method="clamped", noise=0.0, lr=1e-3, inner_steps=20)
    with torch.no_grad():
        start = (target(state.e, state.mask) - state.out0).abs().sum().item()
    clamped_round(state, 2)
    with torch.no_grad():
        end = (target(state.e, state.mask) - state.out0).abs().sum().item()
    assert end < start


def test_tangent_walk_is_orthogonal_to_the_gradient(tiny_gpt2):
    (res,) = walk(layer_model(tiny_gpt2, 2), [PROMPT], WalkConfig(method="tangent", steps=2, step_size=0.01))
    for d in res.record["diagnostics"]:
        assert d["orthogonality_relative"] < 1e-4
    step = (res.end - res.start)  # (T, d): the same vector on every token, of length step_size per step
    assert torch.allclose(step, step[0].expand_as(step), atol=1e-7)
    assert step[0].norm().item() <= 0.02 + 1e-6


def test_ratio_has_one_definition(tiny_gpt2):
    e0 = torch.zeros(1, 2, 3)
    e = torch.ones(1, 2, 3)
    out0, out = torch.zeros(1, 2, 4), torch.full((1, 2, 4), 0.5)
    mask = torch.ones(1, 2)
    assert ratio(e0, e, out0, out, mask).item() == pytest.approx(6 / 4)
    assert torch.isnan(ratio(e0, e, out0, out0, mask)).all()


def test_a_batch_walks_like_its_walks_alone(tiny_gpt2):
    target = layer_model(tiny_gpt2, 2)
    cfg = WalkConfig(method="clamped", steps=2, inner_steps=2, noise=0.01, lr=1e-3)
    prompts = [PROMPT, "A much longer prompt than the first one"]
    together = list(walk(target, prompts, cfg))
    for p, res in zip(prompts, together):
        (alone,) = walk(target, [p], cfg)
        assert torch.allclose(alone.end, res.end, atol=1e-6)
        assert alone.record["r"] == pytest.approx(res.record["r"], rel=1e-4)


def test_a_walk_until_a_token_changes_stops_there_and_alone(tiny_gpt2):
    """Each walk stops at the first round whose decode differs from its start's, stays where it changed while the
    others go on, and gives the same walk in a batch as alone; a walk too small to change anything is censored."""
    target = layer_model(tiny_gpt2, 2)
    rms = tiny_gpt2.embedding_matrix.pow(2).mean().sqrt().item()
    prompts = [PROMPT, "A much longer prompt than the first one"]
    cfg = WalkConfig(method="clamped", steps=40, inner_steps=1, lr=1e-3, noise=2 * rms, until_change=True)
    together = list(walk(target, prompts, cfg, seeds=(0, 1)))
    rounds = [res.record["first_change"] for res in together]
    assert all(n is not None and 1 <= n < 40 for n in rounds), rounds
    assert len(set(rounds)) > 1  # they stop apart, so the batch really holds the stopped ones back
    for res, p in zip(together, prompts * 2):
        rec = res.record
        n = rec["first_change"]
        assert rec["steps_walked"] == n == rec["trajectory"][-1]["step"] == rec["snapshots"][-1]["step"]
        assert rec["snapshots"][-1]["changed"] >= 1 and all(s["changed"] == 0 for s in rec["snapshots"][:-1])
        assert rec["r_random"] is not None and rec["r"] == rec["trajectory"][-1]["r"]
    for i, p in enumerate(prompts):
        (alone,) = walk(target, [p], cfg, seeds=(0,))
        assert alone.record["first_change"] == together[i].record["first_change"]
        assert torch.allclose(alone.end, together[i].end, atol=1e-6)
    (tiny,) = walk(target, [PROMPT], WalkConfig(method="clamped", steps=3, inner_steps=1, lr=1e-3, noise=1e-9,
                                                until_change=True))
    assert tiny.record["first_change"] is None and tiny.record["steps_walked"] == 3


def test_jacobian_walk_runs_on_the_mlp_mimic_and_beats_a_random_move(tiny_gpt2):
    target = make_target(tiny_gpt2, toy="mlp")
    (res,) = walk(target, [PROMPT], WalkConfig(method="jacobian", steps=3, directions=4, krylov=3))
    rec = res.record
    assert rec["r"] > rec["r_random"]
    assert rec["diagnostics"][0]["gain_least"] < rec["diagnostics"][0]["gain_random"]


def test_toy_nets_map_embeddings_to_outputs():
    x = torch.randn(2, 3, 8)
    assert MLPMimic(8)(x).shape == (2, 3, 8)
    assert FCNet(3, 8)(x).shape == (2, 4 * 3 * 8)
    assert FCNet(3, 8, invertible=False)(x).shape == (2, 3 * 8)
    assert torch.equal(MLPMimic(8, seed=5).up.weight, MLPMimic(8, seed=5).up.weight)
    assert not any(p.requires_grad for p in MLPMimic(8).parameters())
    with pytest.raises(LmrepError):
        FCNet(4, 8)(x)


def test_bad_values_are_one_line_errors(tiny_gpt2):
    for bad in (dict(method="sideways"), dict(convention="both"), dict(lr=0.0), dict(noise=-1.0),
                dict(directions=0), dict(topk=10 ** 9)):
        with pytest.raises(LmrepError):
            WalkConfig(**bad).check(tiny_gpt2.vocab_size)
    with pytest.raises(LmrepError):
        make_target(tiny_gpt2, toy="fcnet")


@pytest.mark.slow
def test_cli_end_to_end_and_r_recomputed_from_saved_embeddings(tiny_gpt2_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    from lmrep.cli import main
    from lmrep.models.load import load_model
    out = tmp_path / "run"
    rc = main(["walk", PROMPT, "Hello there", "--model", str(tiny_gpt2_dir), "--layer", "2", "--method", "clamped",
               "--steps", "3", "--inner-steps", "2", "--lr", "1e-3", "--noise", "0.01", "--out", str(out), "--json"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["prompt"] for x in lines] == [PROMPT, "Hello there"]
    for name in ("config.json", "items.jsonl", "summary.json", "tensors.safetensors", "walk.png"):
        assert (out / name).exists()
    saved = load_file(str(out / "tensors.safetensors"))
    target = layer_model(load_model(str(tiny_gpt2_dir)), 2)
    for rec in lines:
        r = ratio_between(target, saved[f"{rec['id']}/start"], saved[f"{rec['id']}/end"])
        assert r == pytest.approx(rec["r"], rel=1e-5)


def test_cli_walks_until_a_change_and_says_when(tiny_gpt2_dir, tmp_path, capsys):
    from lmrep.cli import main
    out = tmp_path / "run"
    rc = main(["walk", PROMPT, "--model", str(tiny_gpt2_dir), "--layer", "2", "--until-change", "--steps", "40",
               "--noise", "0.2", "--seeds", "2", "--out", str(out)])
    assert rc == 0
    records = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    hit = sorted(r["first_change"] for r in records if r["first_change"] is not None)
    assert hit and json.loads((out / "summary.json").read_text())["first_change"] == hit
    printed = capsys.readouterr().out
    assert all(f"first token changed at step {n}" in printed for n in hit)


def test_cli_rejects_bad_input_on_one_line(tiny_gpt2_dir, capsys):
    from lmrep.cli import main
    assert main(["walk", PROMPT, "--model", str(tiny_gpt2_dir), "--layer", "9"]) == 2
    assert main(["walk", PROMPT, "--model", str(tiny_gpt2_dir), "--toy", "mlp", "--head", "norm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("lmrep walk: error:") for line in err)
