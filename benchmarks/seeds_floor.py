"""How low the ratio of S seeds to one seed can go on this machine: the arm default's
MAP-Elites iteration written out by hand, its S seeds laid end to end in one archive.

The issue's target is 16 seeds of the arm default (8 joints, 32 x 32 grid, Iso+LineDD
with sigmas 0.01 and 0.1, batch 256, genotypes clipped to [-pi, pi]) in at most 4x one
seed's time on a 2-core CPU. ``seeds.py`` times qdkit's vmapped seeds; this script asks
what the same work costs when written as plainly as it can be, with no vmap at all
(``plain_loop.py``): the S archives are one archive of S x C cells, and an iteration
draws all S x 256 x 8 isotropic and S x 256 line normals in one draw each, scores the
S x 256 children in one call of the arm's scoring function (qdkit's, ``cos="fast"``)
and inserts them with one segment maximum and one segment minimum over the S x C cells.
A call is ``init`` (256 uniform genotypes per seed) and ``--iterations`` iterations in
one ``lax.scan``, jitted: no host work, no metrics but the final QD-score and coverage.

With S = 1 this is one seed, by the same code. The per-seed work is all there is in it
to amortise, so if S seeds here take close to S times one seed on one CPU, no
arrangement of qdkit's loop brings 16 seeds under 4x one seed's time on 2 CPUs. qdkit's
own one seed and S seeds (``seeds.py``'s calls, with metrics, the chunked loop and the
host's work) are timed alongside, in the same process, for comparison.

Every row is called once per round, ``--repeats`` rounds after one that compiles them;
a row's ratio is the median over the rounds of its time over the one-seed time of the
same round (of the hand-written one seed for the hand-written rows, of qdkit's for
qdkit's), with the ratio of the fastest calls in brackets. The rows:

- one seed (the hand-written step with S = 1; qdkit's loop);
- S seeds end to end on one device (XLA's CPU backend may still spread the larger
  kernels of one device over every core: on 2 CPUs, 16 seeds took less time than with
  the process kept on one CPU, RESULTS.md);
- S seeds end to end over ``--devices`` devices (``shard_map``: each device runs S / D
  seeds end to end; default: as many CPU cores as divide S), and qdkit's S seeds over
  the same devices (vmapped on each, as ``qdkit run --seeds`` does).

    python benchmarks/seeds_floor.py                     # S = 16, 1,000 iterations (about a minute on 2 cores)
    python benchmarks/seeds_floor.py --seeds 4 --iterations 200 --repeats 3   # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import plain_loop  # noqa: E402  (benchmarks/plain_loop.py)
import seeds  # noqa: E402  (benchmarks/seeds.py)
import seeds_bound  # noqa: E402  (benchmarks/seeds_bound.py)

from qdkit import map_elites, sharding  # noqa: E402


def arm_setup(score) -> plain_loop.Setup:
    """The arm default for :mod:`plain_loop`, scored by the arm's ``score``."""

    def fitness_and_descriptors(genotypes):
        evaluation = score(None, genotypes)
        return evaluation.fitness, evaluation.descriptors

    return plain_loop.Setup(fitness_and_descriptors, batch=256, dims=8, side=32, genotype_low=-np.pi,
                            genotype_high=np.pi, descriptor_low=-1.0, descriptor_high=1.0, iso_sigma=0.01,
                            line_sigma=0.1)  # fmt: skip


def run(setup: plain_loop.Setup, key, seeds: int, iterations: int):
    """``init`` and ``iterations`` iterations of ``seeds`` seeds end to end: each seed's
    final QD-score (offset -pi^2, as qdkit's arm) and coverage, and the archive (returned
    whole, so that XLA keeps all of it: from the QD-score alone it would drop the stored
    descriptors, work qdkit's loop does)."""
    archive = plain_loop.iterate(setup, plain_loop.init(setup, key, seeds), key, seeds, iterations)
    return (*plain_loop.summary(setup, archive, seeds, -(np.pi**2)), archive)


def hand_written(setup: plain_loop.Setup, seeds: int, iterations: int, mesh=None):
    """A jitted call ``f(keys)`` (one key per device) of :func:`run`."""
    if mesh is None:
        return jax.jit(lambda keys: run(setup, keys[0], seeds, iterations))
    per_device = seeds // mesh.devices.size
    spec = P(mesh.axis_names[0])
    return jax.jit(jax.shard_map(lambda keys: run(setup, keys[0], per_device, iterations),
                                 mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seeds_bound.add_seed_options(parser, "seeds in one run (at least 2)", "timed rounds (medians)")
    args = parser.parse_args()
    devices = seeds_bound.seed_devices(parser, args)
    s, d = args.seeds, devices
    print(f"# seeds_floor.py — {machine.cpu()}, jax {jax.__version__} ({jax.devices()[0].platform}); "
          f"arm default, {args.iterations} iterations; {s} seeds, {d} device(s); {args.repeats} timed rounds; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip

    task, archive, emitter = seeds.setup()
    setup = arm_setup(task.score)
    mesh = sharding.batch_mesh(d) if d > 1 else None
    key = jax.random.key(0)
    keys = jnp.stack([jax.random.key(k) for k in range(s)])
    one_key = jnp.stack([key])
    device_keys = jnp.stack([jax.random.key(k) for k in range(d)])

    def call(fn, *operands):
        def timed():
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*operands))
            return time.perf_counter() - start, float(np.mean(out[0])), float(np.mean(out[1]))

        return timed

    def qdkit_call(k, m):
        def timed():  # as seeds.timed, with the coverage too
            start = time.perf_counter()
            state = map_elites.init(k, task, archive, emitter, mesh=m)
            state, metrics = map_elites.run(state, task, emitter, args.iterations, mesh=m)
            jax.block_until_ready(state)
            seconds = time.perf_counter() - start
            return seconds, float(np.mean(metrics["qd_score"][-1])), float(np.mean(metrics["coverage"][-1]))

        return timed

    rows = [  # (label, call, the one-seed row it is divided by)
        ("hand-written, one seed", call(hand_written(setup, 1, args.iterations), one_key), 0),
        (f"hand-written, {s} seeds end to end, one device", call(hand_written(setup, s, args.iterations), one_key), 0),
    ]
    if mesh is not None:
        rows.append((f"hand-written, {s} seeds end to end over {d} devices",
                     call(hand_written(setup, s, args.iterations, mesh), device_keys), 0))  # fmt: skip
    first_qdkit = len(rows)
    rows.append(("qdkit, one seed", qdkit_call(key, None), first_qdkit))
    rows.append((f"qdkit, {s} seeds vmapped" + (f" over {d} devices" if mesh is not None else ""),
                 qdkit_call(keys, mesh), first_qdkit))  # fmt: skip

    for _, fn, _ in rows:
        fn()  # compiles
    times = [[] for _ in rows]
    results = [None] * len(rows)
    for _ in range(args.repeats):
        for i, (_, fn, _) in enumerate(rows):
            seconds, qd, coverage = fn()
            times[i].append(seconds)
            results[i] = (qd, coverage)
    print("\nWarm calls: median ms, the fastest in brackets; the ratio is the median over the rounds of the row's "
          "time over its one-seed row's:\n")  # fmt: skip
    print("(The QD-scores differ between rows as the random streams do: the hand-written seeds end to end draw "
          "one stream for all of them, qdkit's seeds one each.)\n")  # fmt: skip
    print("| configuration | ms | / one seed | mean final QD-score | mean coverage |")
    print("|---|---:|---:|---:|---:|")
    for i, (label, _, base) in enumerate(rows):
        ratio = statistics.median(t / b for t, b in zip(times[i], times[base]))
        fastest = min(times[i]) / min(times[base])
        qd, coverage = results[i]
        print(f"| {label} | {statistics.median(times[i]) * 1e3:.1f} ({min(times[i]) * 1e3:.1f}) | "
              f"{ratio:.2f}× ({fastest:.2f}×) | {qd:.1f} | {coverage:.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
