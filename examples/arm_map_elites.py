"""MAP-Elites on the planar arm from Python: build, run, inspect, plot.

python examples/arm_map_elites.py --iterations 500
"""

import argparse

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=500)
parser.add_argument("--out", default="arm_heatmap.png")
args = parser.parse_args()

task = qdkit.tasks.get("arm", dof=8)
archive = qdkit.GridArchive.create(
    shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
)
emitter = iso_line(batch_size=256, iso_sigma=0.01, line_sigma=0.1, lower=task.genotype_lower, upper=task.genotype_upper)

state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
state, metrics = qdkit.map_elites.run(state, task, emitter, iterations=args.iterations)

genotype, fitness, descriptor = state.archive.best()
print(f"{len(state.archive)} elites, coverage {float(state.archive.coverage()):.1%}")
print(f"QD-score {metrics['qd_score'][-1]:.1f}; best fitness {float(fitness):.4f} at {descriptor}")

qdkit.plot.archive_heatmap(state.archive, descriptor_names=task.descriptor_names)
plt.savefig(args.out, dpi=100, bbox_inches="tight")
print(f"wrote {args.out}")
