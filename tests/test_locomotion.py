"""brax locomotion tasks (few steps: brax is slow on CPU).

Each check runs in its own Python process (``tests/locomotion_checks.py``): with brax
(and MuJoCo) imported into the test process, later XLA compilations in that process
crashed twice in the full suite; with brax kept out they never did.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("brax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "locomotion_checks.py"), f"check_{name}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]


def test_walker_standing_still_lands_then_touches_the_ground_with_both_feet():
    run_check("walker_standing_still_lands_then_touches_the_ground_with_both_feet")


def test_ant_omni_descriptor_is_the_final_torso_position_and_drops_the_forward_reward():
    run_check("ant_omni_descriptor_is_the_final_torso_position_and_drops_the_forward_reward")


def test_anttrap_walls_stop_the_ant_and_the_paper_preset():
    run_check("anttrap_walls_stop_the_ant_and_the_paper_preset")


def test_pga_runs_on_a_brax_task():
    run_check("pga_runs_on_a_brax_task")


def test_imitation_of_the_elites_runs_on_a_brax_task():
    run_check("imitation_of_the_elites_runs_on_a_brax_task")
