"""The human judge, driven through a real pseudo-terminal as a person would use it."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import feedback
from feedback import CANT_TELL, A, B

pexpect = pytest.importorskip("pexpect")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import sys
import numpy as np
import feedback
from qdkit.tasks.arm import draw_arm
items = np.linspace(-1, 1, 36, dtype=np.float32).reshape(3, 3, 4)  # 3 triplets of 4-joint arms
judge = feedback.HumanJudge(sys.argv[1], draw=draw_arm, image_dir=sys.argv[2])
try:
    print("CHOICES", judge(items[:, 0], items[:, 1], items[:, 2]).tolist())
except feedback.JudgingStopped as e:
    print("STOPPED", e)
"""


def env():
    e = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    e["MPLBACKEND"] = "Agg"
    e["PYTHONPATH"] = ROOT
    return e


def spawn(args, cwd):
    child = pexpect.spawn(sys.executable, args, cwd=str(cwd), env=env(), encoding="utf-8", timeout=120)
    child.logfile_read = open(os.path.join(cwd, "session.log"), "a")  # noqa: SIM115
    return child


def test_terminal_session_with_invalid_key_undo_quit_and_resume(tmp_path):
    script = tmp_path / "judge.py"
    script.write_text(SCRIPT)
    path = tmp_path / "judgments.jsonl"
    child = spawn([str(script), str(path), str(tmp_path / "images")], tmp_path)
    child.expect(r"\[1/3\]")
    child.expect(r"image: (\S+\.png)")
    assert os.path.getsize(child.match.group(1)) > 1000
    child.expect("quit")
    child.sendline("a")
    child.expect(r"\[2/3\]")
    child.expect("quit")
    child.sendline("x")  # not a key: asked again
    child.expect("'x' is not one of a, b, s, u, q")
    child.expect("quit")
    child.sendline("b")
    child.expect(r"\[3/3\]")
    child.expect("quit")
    child.sendline("u")  # undo the b: the second triplet again
    child.expect(r"\[2/3\]")
    child.expect("quit")
    child.sendline("s")
    child.expect(r"\[3/3\]")
    child.expect("quit")
    child.sendline("q")
    child.expect("STOPPED 1 judgments still to give")
    child.expect(pexpect.EOF)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.get("choice", "undo") for r in records] == [A, B, "undo", CANT_TELL]
    assert list(feedback.read_answers(str(path)).values()) == [A, CANT_TELL]

    # coming back: the two answers are kept, only the third triplet is asked
    child = spawn([str(script), str(path), str(tmp_path / "images")], tmp_path)
    child.expect(r"\[3/3\]")
    child.expect("quit")
    child.sendline("b")
    child.expect(r"CHOICES \[0, -1, 1\]")
    child.expect(pexpect.EOF)
    assert len(path.read_text().splitlines()) == 5


def test_corrupt_judgments_file_names_the_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"id": "x", "choice": 0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2: not a judgment record"):
        feedback.read_answers(str(path))


def test_cli_run_with_a_human_judge_label_and_resume(tmp_path):
    """`qdkit run --judge human` stops at a refit, `qdkit label` answers, `resume` finishes."""
    out = tmp_path / "run"
    qdkit = [os.path.join(os.path.dirname(sys.executable), "qdkit")]
    run_args = ["run", "--task", "arm", "--descriptors", "learned", "--judge", "human", "--judgments", "8",
                "--iterations", "20", "--batch-size", "32", "--shape", "8x8", "--no-progress", "--out", str(out)]  # fmt: skip
    child = pexpect.spawn(qdkit[0], run_args, cwd=str(tmp_path), env=env(), encoding="utf-8", timeout=180)
    child.expect(r"\[1/2\]")  # the refit at iteration 0: 2 of the 8 judgments
    child.expect(r"image: \S+\.png")
    child.expect("quit")
    child.sendline("a")
    child.expect(r"\[2/2\]")
    child.expect("quit")
    child.sendline("q")
    child.expect("Labelling stopped")
    child.expect(pexpect.EOF)
    assert len(feedback.read_answers(str(out / "judgments-human.jsonl"))) == 1

    child = pexpect.spawn(qdkit[0], ["label", str(out)], cwd=str(tmp_path), env=env(), encoding="utf-8", timeout=180)
    child.expect(r"\[2/2\]")
    child.expect("quit")
    child.sendline("b")
    child.expect("Labelled and refitted")
    child.expect(pexpect.EOF)

    child = pexpect.spawn(qdkit[0], ["resume", str(out), "--no-progress"], cwd=str(tmp_path), env=env(),
                          encoding="utf-8", timeout=180)  # fmt: skip
    for _ in range(6):  # refits at iterations 2, 5 and 10, two triplets each
        child.expect(r"\[\d/2\]")
        child.expect("quit")
        child.sendline("a")
    child.expect("20 iterations")
    child.expect(pexpect.EOF)
    with np.load(out / "judgments.npz") as f:
        assert int(f["done"]) == 4 and f["choice"].shape == (8,)
    assert len(feedback.read_answers(str(out / "judgments-human.jsonl"))) == 8


def test_end_of_input_and_wrong_runs_stop_cleanly(tmp_path):
    from click.testing import CliRunner

    from qdkit.cli import main

    out = tmp_path / "run"
    args = ["run", "--task", "arm", "--descriptors", "learned", "--judge", "human", "--judgments", "8",
            "--iterations", "20", "--batch-size", "32", "--shape", "8x8", "--no-progress", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args, input="a\n")  # one answer, then the input ends
    assert result.exit_code == 0, result.output
    assert "Labelling stopped" in result.output and "qdkit resume" in result.output
    assert len(feedback.read_answers(str(out / "judgments-human.jsonl"))) == 1
    plain = tmp_path / "plain"
    assert CliRunner().invoke(main, ["run", "--iterations", "2", "--no-progress", "--out", str(plain)]).exit_code == 0
    result = CliRunner().invoke(main, ["label", str(plain)])
    assert result.exit_code == 1 and "not a run with --descriptors learned --judge human" in result.output
