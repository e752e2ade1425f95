"""SipIt's per-position search, re-implemented from its published description, as the baseline for bench/exact.py.

Per position t, with tokens 0..t-1 known: a proxy embedding starts at a random vocabulary row. Each step verifies
one candidate, the nearest unvisited row to the proxy by L2 (the first is the starting row itself), by a forward
pass of prefix ids + [candidate] through the whole truncated model (no key/value cache), accepted when its last
output is ``torch.allclose`` to the target (rtol = atol = 1e-5). On a miss the candidate's row is marked visited,
and one forward+backward pass of [prefix embeddings, proxy] gives the gradient of the MSE at the last position;
clipped to norm 1, it takes one SGD step (lr 1.0, LinearLR down to 0.01 over ``reset_every`` steps). Every
``reset_every`` steps the proxy snaps to the last candidate's row and the schedule starts again;
``reset_every = 50 * (1 + V // 25000)`` at position 0 and 50 elsewhere. A step cap per position ends a search
that does not converge: that position counts as a miss and the search goes on with the last candidate.
"""
from __future__ import annotations

import time

import torch


def sipit_position(O, prefix: list[int], h: torch.Tensor, t: int, gen: torch.Generator,
                   max_steps: int) -> tuple[int, int, bool]:
    """Token at position t after ``prefix`` whose output is h (D,): (token, candidates verified, found)."""
    lm = O.lm
    W, V = lm.embedding_matrix.detach(), lm.vocab_size
    reset_every = 50 * (1 + (V // 25000 if t == 0 else 0))
    proxy = W[int(torch.randint(0, V, (1,), generator=gen))].clone().requires_grad_(True)  # (d,)
    opt = torch.optim.SGD([proxy], lr=1.0)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.01, total_iters=reset_every)
    visited = torch.zeros(V, dtype=torch.bool, device=W.device)
    ids = torch.tensor([prefix], dtype=torch.long, device=W.device)  # (1, t)
    before = lm.embed(ids)  # (1, t, d)
    cand = 0
    for step in range(max_steps):
        with torch.no_grad():
            dist = ((W - proxy.detach()) ** 2).sum(-1).masked_fill(visited, float("inf"))  # (V,)
            cand = int(dist.argmin())
            out = O(lm.embed(torch.cat([ids, torch.tensor([[cand]], device=W.device)], 1)))[0, -1]  # (D,)
        if torch.allclose(out, h, rtol=1e-5, atol=1e-5):
            return cand, step + 1, True
        visited[cand] = True
        with torch.enable_grad():
            pred = O(torch.cat([before, proxy[None, None]], 1))[0, -1]  # (D,)
            loss = torch.nn.functional.mse_loss(pred, h)
            opt.zero_grad()
            loss.backward()
        torch.nn.utils.clip_grad_norm_([proxy], 1.0)
        opt.step()
        sched.step()
        if (step + 1) % reset_every == 0:
            with torch.no_grad():
                proxy.copy_(W[cand])
            opt = torch.optim.SGD([proxy], lr=1.0)
            sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.01, total_iters=reset_every)
    return cand, max_steps, False


def sipit(O, ids: list[int], max_steps: int = 500, seed: int = 0) -> dict:
    """Invert one prompt's layer output by SipIt; a record with the fields the benchmark summarises."""
    lm = O.lm
    with torch.no_grad():
        target = O(lm.embed(torch.tensor([ids], device=lm.device)))[0]  # (T, D)
    gen = torch.Generator().manual_seed(seed)
    t0, got, steps, found = time.perf_counter(), [], [], []
    for t in range(len(ids)):
        token, n, ok = sipit_position(O, got, target[t], t, gen, max_steps)
        got.append(token)
        steps.append(n)
        found.append(ok)
    correct = sum(int(a == b) for a, b in zip(ids, got))
    return dict(target_ids=ids, recovered_ids=got, n_tokens=len(ids), token_accuracy=correct / len(ids),
                exact_match=got == ids, verified=all(found), candidates_per_token=sum(steps) / len(steps),
                candidates_max=max(steps), seconds=time.perf_counter() - t0, setup_seconds=0.0)
