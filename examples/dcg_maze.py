"""DCG-MAP-Elites on the maze, then archive distillation: one policy for every cell.

DCG-ME trains a critic and an actor conditioned on a target descriptor while it
searches; the actor, given any cell's descriptor, tries to reach that cell. We run the
search, take the actor out of the emitter state and measure it on every filled cell.

python examples/dcg_maze.py --iterations 200
"""

import argparse

import jax

import emitters
import qdkit
from emitters.distill import distill, summary

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=200)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--critic-steps", type=int, default=300, help="TD3 critic steps per iteration (the paper: 3000)")
args = parser.parse_args()

task = qdkit.tasks.get("maze")  # a pure-JAX maze: MLP policies, final (x, y) as descriptor
archive = qdkit.GridArchive.create(
    shape=(16, 16), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
)
config = emitters.TD3Config(critic_steps=args.critic_steps)  # everything else: the paper's settings
emitter = emitters.dcg(task, args.batch_size, num_injected=0, config=config)

state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
state, metrics = qdkit.map_elites.run(state, task, emitter, iterations=args.iterations)
print(f"DCG-ME: QD-score {metrics['qd_score'][-1]:.1f}, coverage {metrics['coverage'][-1]:.1%}")

policy = emitters.distilled_policy(state.emitter_state, task, state.archive)  # act(obs, target)
result = distill(task, state.archive, jax.random.key(1), policy=policy)
for line in summary(result.report):
    print(line)
policy.save("distilled.npz")  # emitters.DistilledPolicy.load("distilled.npz") gives it back
