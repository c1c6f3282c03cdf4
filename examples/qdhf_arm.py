"""QDHF on the arm: descriptors learned from similarity judgments.

A simulated judge (it sees the end-effector position) answers triplets of elites; a
linear projection of the joint positions is trained on its answers and refitted at
0, 10, 25 and 50% of the run. The final archive is then scored with the true
end-effector descriptors.

    python examples/qdhf_arm.py --iterations 500
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import feedback
from emitters import iso_line
from qdkit import GridArchive, map_elites, tasks

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=500)
parser.add_argument("--judgments", type=int, default=1000)
args = parser.parse_args()

arm = tasks.get("arm", dof=8)  # arm.features: its 16 joint coordinates
projection = feedback.Projection(feature_dim=16, dims=2)  # learned descriptors: a linear map of them to 2-D
archive = feedback.LearnedArchive.create(
    shape=(32, 32), projection=projection, params=projection.init(jax.random.key(1)),
    example_genotype=arm.example_genotype,
)  # fmt: skip
judge = feedback.SimulatedJudge.from_task(arm)  # answers from the end-effector position
refitter = feedback.Refitter(judge, iterations=args.iterations, judgments=args.judgments)
emitter = iso_line(256, 0.01, 0.1, lower=arm.genotype_lower, upper=arm.genotype_upper)

state = refitter.start(map_elites.init(jax.random.key(0), arm, archive, emitter))
state, _ = map_elites.run(state, arm, emitter, args.iterations, chunk_size=25, callbacks=[refitter])
for entry in refitter.log:
    print(f"refit at {entry['iteration']:5d}: {entry['judgments']} judgments, loss {entry['loss']:.4f}, "
          f"{entry['elites_before']} -> {entry['elites_after']} elites")  # fmt: skip

# score the learned archive with the true descriptors
elites = jnp.asarray(np.asarray(state.archive.genotypes)[np.asarray(state.archive.occupied)])
truth = GridArchive.create(shape=(32, 32), lower=arm.lower, upper=arm.upper, example_genotype=arm.example_genotype)
evaluation = arm.score(None, elites)
truth, _ = truth.add(elites, evaluation.fitness, evaluation.descriptors)
print(f"{len(state.archive)} learned-space elites cover {float(truth.coverage()):.1%} of the true end-effector grid")
