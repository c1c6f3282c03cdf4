"""pyribs' sphere tutorial, ported to qdkit: only the imports and constructors change.

The loop is pyribs' ``ask`` / ``tell(objective, measures)``; the evaluation is NumPy,
outside both libraries.

python examples/ask_tell_sphere.py --iterations 1000
"""

import argparse

import numpy as np

import qdkit  # pyribs: from ribs.archives import GridArchive, ...
from emitters import iso_line

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=1000)
args = parser.parse_args()


def sphere(solutions):
    """The shifted sphere of pyribs' tutorials: objective in [0, 100], measures the sums of
    the two halves of the (clipped) solution."""
    dim = solutions.shape[1]
    shift = 5.12 * 0.4
    worst = (-5.12 - shift) ** 2 * dim
    objective = (np.sum((solutions - shift) ** 2, axis=1) - worst) / (0.0 - worst) * 100
    clipped = np.where(np.abs(solutions) > 5.12, 5.12 / np.where(solutions == 0, 1.0, solutions), solutions)
    measures = np.stack([clipped[:, : dim // 2].sum(axis=1), clipped[:, dim // 2 :].sum(axis=1)], axis=1)
    return objective, measures


dim, bound = 10, 5.12 * 5
# pyribs: archive = GridArchive(solution_dim=dim, dims=[20, 20], ranges=[(-bound, bound)] * 2)
archive = qdkit.GridArchive.create(
    shape=(20, 20), lower=[-bound, -bound], upper=[bound, bound], example_genotype=np.zeros(dim, np.float32)
)
# pyribs: emitters = [IsoLineEmitter(archive, iso_sigma=0.1, line_sigma=0.2, x0=np.zeros(dim), batch_size=36)]
emitter = iso_line(batch_size=36, iso_sigma=0.1, line_sigma=0.2)
# pyribs: scheduler = Scheduler(archive, emitters)
scheduler = qdkit.Scheduler(archive, emitter, initial=np.zeros((36, dim), np.float32))

for _ in range(args.iterations):  # the same loop: the first ask is the initial population
    solutions = scheduler.ask()
    objective, measures = sphere(solutions)
    scheduler.tell(objective, measures)

found = scheduler.archive
print(f"{len(found)} elites, coverage {float(found.coverage()):.1%}, QD-score {float(found.qd_score(0.0)):.1f}")
genotype, fitness, descriptor = found.best()
print(f"best objective {float(fitness):.2f} at measures {np.round(np.asarray(descriptor), 2)}")
