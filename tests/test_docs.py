"""The documentation site builds with warnings as errors, and the tutorials' code runs.

Conventions of ``docs/tutorials/*.md`` that this module relies on:

- ``--8<-- "examples/NAME.py"`` includes a whole example; tests/test_scripts.py runs
  every example at small sizes (checked here).
- a ```` ```python ```` block is a program: it runs here as written.
- a ```` ```bash ```` block is run here with ``bash -e`` in a scratch directory, each
  ``qdkit run`` and ``qdkit resume`` cut to a few iterations (``--iterations`` given
  last wins); blocks for a person at the keyboard or for other hosts are ```` ```sh ````
  and are not run.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = sorted(glob.glob(os.path.join(ROOT, "docs", "tutorials", "*.md")))
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NEEDS_MODEL = ("--judge llm", "--task text")


def blocks(path, language):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [body for lang, body in FENCE.findall(text) if lang == language and "--8<--" not in body]


def environment():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(MPLBACKEND="Agg", WANDB_MODE="offline", PYTHONPATH=ROOT, NO_MKDOCS_2_WARNING="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def shortened(block):
    """The block with each command on one line and every run cut to a few iterations."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        if re.search(r"\bqdkit (run|resume)\b", line):
            line += " --iterations 2 --no-progress" if "qdkit run" in line else " --iterations 4 --no-progress"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "loop" / "index.html").read_text()
    assert "qdkit.ask_tell.Scheduler" in page and "qdkit.map_elites.run" in page  # the reference is generated
    tutorial = (tmp_path / "site" / "tutorials" / "ask-tell" / "index.html").read_text()
    assert "ProcessPoolExecutor" in tutorial  # the examples are included


def test_every_included_example_is_run_by_the_tests():
    with open(os.path.join(ROOT, "tests", "test_scripts.py"), encoding="utf-8") as f:
        tested = f.read()
    included = set()
    for path in TUTORIALS:
        with open(path, encoding="utf-8") as f:
            included.update(re.findall(r'--8<-- "([^"]+)"', f.read()))
    assert included, "no tutorial includes an example"
    for name in sorted(included):
        assert os.path.isfile(os.path.join(ROOT, name)), name
        assert f'"{os.path.basename(name)}"' in tested, (
            f"{name} is in a tutorial but tests/test_scripts.py never runs it"
        )


@pytest.mark.parametrize("path", TUTORIALS, ids=[os.path.basename(p)[:-3] for p in TUTORIALS])
def test_tutorial_code_runs(path, tmp_path):
    from feedback import local_server

    ran = 0
    for i, body in enumerate(blocks(path, "python")):
        script = tmp_path / f"block{i}.py"
        script.write_text(body)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=environment(), capture_output=True,
                                text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, f"python block {i} of {os.path.basename(path)}:\n{result.stderr[-3000:]}"
        ran += 1
    for i, body in enumerate(blocks(path, "bash")):
        if any(flag in body for flag in NEEDS_MODEL) and not local_server.available():
            continue  # CI installs the local model; without it these commands need an endpoint
        result = subprocess.run(["bash", "-e", "-c", shortened(body)], cwd=tmp_path, env=environment(),
                                capture_output=True, text=True, timeout=900)  # fmt: skip
        assert result.returncode == 0, f"bash block {i} of {os.path.basename(path)}:\n{result.stderr[-3000:]}"
        ran += 1
    included = "--8<--" in open(path, encoding="utf-8").read()
    assert ran or included, f"{os.path.basename(path)} has no code"
