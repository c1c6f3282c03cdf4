"""What S seeds of the arm default would take against one seed if parts of the
iteration cost nothing: a bound on what speeding those parts up can do for the ratio.

``seeds.py`` times S vmapped seeds of the arm default (8 joints, 32 x 32 grid,
Iso+LineDD, batch 256) against one seed. The issue's target is S = 16 in at most 4x one
seed's time on a 2-core CPU. This script asks whether making the Gaussian noise or the
arm's scoring faster could get there, by taking them out:

- ``noise``: every normal draw of the emitter (isotropic and line) is replaced by a
  constant that depends on the iteration's key (so XLA cannot hoist it out of the loop),
  which costs next to nothing: what any faster noise could at best reach. (Every child
  of an iteration then moves by the same amount, so the search is a poor one; what is
  timed assumes that selection, insertion and the metrics cost the same whatever the
  children are, as they do on a grid, up to how many rows are written.)
- ``scoring``: the arm's forward kinematics is replaced by fitness ``-x_0^2`` and
  descriptors ``(x_1, x_2) / pi``: what any faster scoring could at best reach;
- ``both``; ``none`` is the arm default as it is.

These runs are not MAP-Elites on the arm as published (the children and the archive
differ); they time the rest of the loop, parent selection, the children, insertion and
the metrics, which stays the same code. For each, one seed and S seeds over
``--devices`` devices (default: as many of the CPU cores as divide S; each device runs
its share vmapped, as ``qdkit run --seeds`` does; on a CPU the script makes that many
CPU devices before JAX starts) are timed in pairs, one call each, ``--repeats`` pairs
after a pair that compiles them. The table gives the median and the fastest call of
each, and the ratio of S seeds to one seed as the median of the pairs' ratios (a slow
spell of the machine slows both calls of a pair), with the ratio of the fastest calls
in brackets.

    python benchmarks/seeds_bound.py                   # S = 16, 1,000 iterations (under a minute on 2 cores)
    python benchmarks/seeds_bound.py --free none,both  # two of the four
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import seeds  # noqa: E402  (benchmarks/seeds.py)

from qdkit import rng, sharding, xla  # noqa: E402
from qdkit.tasks.base import Evaluation  # noqa: E402

FREE = ("none", "noise", "scoring", "both")


def constant_normal(key, shape, dtype=jnp.float32, stream=0):
    """A stand-in for :func:`qdkit.rng.normal` that costs next to nothing: one value
    for the whole draw, from the key's first word (0 to 2.1 in steps of 0.3)."""
    del stream
    word = jax.random.key_data(key).reshape(-1)[0] if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key[0]
    return jnp.full(shape, 0.3, dtype) * (word & 7).astype(dtype)


def trivial_score(key, genotypes):
    del key
    x = genotypes
    return Evaluation(-x[:, 0] * x[:, 0], jnp.stack([x[:, 1], x[:, 2]], axis=1) / np.float32(np.pi), {})


def setup(free: str):
    """The arm default of ``seeds.py`` with ``free``'s parts taken out."""
    real = rng.normal_fn
    if free in ("noise", "both"):
        rng.normal_fn = lambda noise: constant_normal  # read by iso_line when it is built
    try:
        task, archive, emitter = seeds.setup()
    finally:
        rng.normal_fn = real
    if free in ("scoring", "both"):
        task = dataclasses.replace(task, score=trivial_score)
    return task, archive, emitter


def add_seed_options(parser: argparse.ArgumentParser, seeds_help: str, repeats_help: str) -> None:
    """``--seeds``, ``--iterations``, ``--repeats`` and ``--devices`` (also seeds_floor.py's)."""
    parser.add_argument("--seeds", type=int, default=16, help=seeds_help)
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per call")
    parser.add_argument("--repeats", type=int, default=7, help=repeats_help)
    parser.add_argument("--devices", type=int, default=None,
                        help="devices to split the seeds over (default: as many CPU cores as divide --seeds)")  # fmt: skip


def seed_devices(parser: argparse.ArgumentParser, args) -> int:
    """The options of :func:`add_seed_options` checked (a bad one refused in one line),
    and the number of devices to split the seeds over, made before JAX starts."""
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2; got {args.seeds}")
    if args.iterations < 1:
        parser.error(f"--iterations must be at least 1; got {args.iterations}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    if args.devices is not None and (args.devices < 1 or args.seeds % args.devices):
        parser.error(f"--devices must be at least 1 and divide --seeds ({args.seeds}); got {args.devices}")
    devices = sharding.usable_devices(args.seeds, xla.cpus()) if args.devices is None else args.devices
    xla.use_cpu_devices(devices)  # before JAX starts (a CPU makes that many devices)
    if devices > len(jax.devices()):
        if args.devices is not None:
            parser.error(f"--devices {devices}: JAX has {len(jax.devices())} device(s) here")
        devices = sharding.usable_devices(args.seeds)  # (e.g. one GPU)
    return devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--free", default=",".join(FREE),
                        help=f"comma-separated parts to take out, of {', '.join(FREE)} (default: all four rows)")  # fmt: skip
    add_seed_options(parser, "seeds vmapped in one run (at least 2)", "timed pairs of calls per row (medians)")
    args = parser.parse_args()
    rows = [x.strip() for x in args.free.split(",") if x.strip()]
    bad = [x for x in rows if x not in FREE]
    if bad or not rows:
        what = f"unknown {', '.join(map(repr, bad))}" if bad else "names nothing"
        parser.error(f"--free {what}; valid: {', '.join(FREE)}")
    devices = seed_devices(parser, args)
    print(f"# seeds_bound.py — {machine.cpu()}, jax {jax.__version__} ({jax.devices()[0].platform}); "
          f"arm default, {args.iterations} iterations; {args.seeds} seeds over {devices} device(s); "
          f"{args.repeats} timed pairs; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip
    mesh = sharding.batch_mesh(devices) if devices > 1 else None
    keys = jnp.stack([jax.random.key(k) for k in range(args.seeds)])
    print("Medians, the fastest call in brackets; the ratio is the median of the pairs' ratios:\n")
    print(f"| taken out | one seed, ms | {args.seeds} seeds, ms | {args.seeds} seeds / one seed | "
          f"mean final QD-score of the {args.seeds} |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for free in rows:
        task, archive, emitter = setup(free)
        seeds.timed(task, archive, emitter, jax.random.key(0), args.iterations)  # compiles
        seeds.timed(task, archive, emitter, keys, args.iterations, mesh)
        one, many = [], []
        for _ in range(args.repeats):
            one.append(seeds.timed(task, archive, emitter, jax.random.key(0), args.iterations)[0])
            seconds, scores = seeds.timed(task, archive, emitter, keys, args.iterations, mesh)
            many.append(seconds)
        ratio = statistics.median(m / o for o, m in zip(one, many))
        t1, ts, f1, fs = statistics.median(one), statistics.median(many), min(one), min(many)
        print(f"| {free} | {t1 * 1e3:.1f} ({f1 * 1e3:.1f}) | {ts * 1e3:.1f} ({fs * 1e3:.1f}) | "
              f"{ratio:.2f}× ({fs / f1:.2f}×) | {float(np.mean(scores)):.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
