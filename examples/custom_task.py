"""Define your own task: any jittable score function over any genotype pytree.

Here a genotype is a dict of two vectors; the fitness rewards small weights and the
descriptors are the mean of each vector. A CVT archive covers the descriptor box.

    python examples/custom_task.py --iterations 200
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import qdkit
from emitters import gaussian, iso_line, mix

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=200)
args = parser.parse_args()


def score(key, genotypes):
    del key  # deterministic
    a, b = genotypes["a"], genotypes["b"]
    fitness = -(jnp.sum(a**2, axis=1) + jnp.sum(b**2, axis=1))
    descriptors = jnp.stack([jnp.mean(a, axis=1), jnp.mean(b, axis=1)], axis=1)
    return qdkit.Evaluation(fitness, descriptors, {})


task = qdkit.Task(
    name="two-vectors",
    score=score,
    example_genotype={"a": jnp.zeros(6), "b": jnp.zeros(4)},
    genotype_lower=-1.0,
    genotype_upper=1.0,
    lower=np.array([-1.0, -1.0], np.float32),
    upper=np.array([1.0, 1.0], np.float32),
    qd_offset=-10.0,
    descriptor_names=("mean of a", "mean of b"),
)
archive = qdkit.CVTArchive.create(cells=256, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype)
emitter = mix(
    iso_line(64, 0.02, 0.2, lower=-1.0, upper=1.0),
    gaussian(64, 0.1, lower=-1.0, upper=1.0),
)
state = qdkit.map_elites.init(jax.random.key(1), task, archive, emitter)
state, metrics = qdkit.map_elites.run(state, task, emitter, iterations=args.iterations)
print(f"coverage {metrics['coverage'][-1]:.1%}, QD-score {metrics['qd_score'][-1]:.1f}")
elites = state.archive.elites()
best = int(np.argmax(elites["fitness"]))
print(f"{len(elites['index'])} elites; best fitness {elites['fitness'][best]:.3f} at {elites['descriptors'][best]}")
