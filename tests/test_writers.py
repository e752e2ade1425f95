"""One writer per run folder: a second process on a folder another is writing is refused with one line naming it
(or waits, with --wait), two runs started at once never duplicate a record, and a SIGKILLed writer leaves a folder
the next run resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lmrep.errors import LmrepError
from lmrep.records import lock
from lmrep.records.folder import RunDir, read_jsonl

HOLD = """
import sys, time
from lmrep.records.folder import RunDir
RunDir.create("invert", {"steps": 1}, sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds: float = 60) -> subprocess.Popen:
    """A process that takes ``folder`` as its run folder and keeps it for ``seconds``."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def _lmrep(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmrep", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_one_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    p = _holder(out)
    try:
        with pytest.raises(LmrepError, match=rf"being written by another lmrep process \(pid {p.pid}\).*--wait"):
            RunDir.create("invert", {"steps": 1}, out)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert RunDir.create("invert", {"steps": 1}, out).path == out  # the kernel let go of the killed one's lock
    assert json.loads((out / "config.json").read_text())["steps"] == 1


@pytest.mark.slow
def test_with_wait_a_second_writer_goes_on_once_the_first_is_done(tmp_path, monkeypatch):
    out = tmp_path / "run"
    p = _holder(out, seconds=1.5)
    monkeypatch.setattr(lock.LOCKS, "wait", True)
    start = time.monotonic()
    RunDir.create("invert", {"steps": 1}, out)
    assert time.monotonic() - start > 0.5 and p.wait() == 0  # it waited for the holder to exit


def test_a_holder_with_another_configuration_is_still_refused_after_waiting(tmp_path, monkeypatch):
    out = tmp_path / "run"
    p = _holder(out, seconds=0.5)
    monkeypatch.setattr(lock.LOCKS, "wait", True)
    with pytest.raises(LmrepError, match="another configuration"):
        RunDir.create("invert", {"steps": 2}, out)
    p.wait()


def _invert(model, out, *extra):
    return _lmrep("invert", "The sky is blue.", "Hi there", "--model", model, "--layer", "1", "--steps", "30",
                  "--out", out, "--json", *extra)


@pytest.mark.slow
def test_two_inverts_at_once_on_one_folder_never_duplicate_a_record(tmp_path, tiny_gpt2_dir):
    out = tmp_path / "run"
    runs = [_invert(tiny_gpt2_dir, out) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    codes = sorted(rc for rc, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # [0, 0] only if one finished before the other began
    for rc, err in results:
        if rc == 2:
            assert "being written by another lmrep process (pid" in err and len(err.strip().splitlines()) == 1
    prompts = [r["prompt"] for r in read_jsonl(out / "items.jsonl")]
    assert sorted(prompts) == ["Hi there", "The sky is blue."]
    waited = [_invert(tiny_gpt2_dir, out, "--wait") for _ in range(2)]  # both go on, the second resumes
    assert [p.wait(timeout=300) for p in waited] == [0, 0]
    assert len(read_jsonl(out / "items.jsonl")) == 2


@pytest.mark.slow
def test_a_sigkilled_invert_leaves_a_folder_that_resumes(tmp_path, tiny_gpt2_dir):
    out = tmp_path / "run"
    p = _invert(tiny_gpt2_dir, out, "--batch-size", "1")
    deadline = time.monotonic() + 120
    while not (out / "config.json").exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    again = _invert(tiny_gpt2_dir, out, "--batch-size", "1")
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert sorted(r["prompt"] for r in read_jsonl(out / "items.jsonl")) == ["Hi there", "The sky is blue."]
