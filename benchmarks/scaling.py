"""How cost grows with the work: qdkit, pyribs and QDax on the same workload.

Workload (as in core_throughput.py): rastrigin with ``jnp.cos`` (qdkit and QDax are
handed the very same jitted function; pyribs the same maths in NumPy, float32), the
genotype in [0, 1]^D, descriptor = the first two genes, Iso+LineDD variation
(iso_sigma 0.005, line_sigma 0.05), each library with its own variation, random
numbers and archive. One quantity varies per sweep, the others stay at the base
(batch 1,024, a 100 x 100 grid, D = 100, one seed):

- ``batch``: 64 ... 16,384 evaluations per iteration;
- ``cells``: 10^3 ... 10^6 cells, grid (32^2, 100^2, 316^2, 1000^2) and CVT. The CVT
  centroids are uniform random points (seed 7), the same for the three libraries
  (k-means for 10^6 cells is not what is timed here; its set-up time is printed);
- ``genotype``: D = 10 ... 100,000 parameters (on a 32 x 32 grid with batch 256, so that
  an archive of 100,000-parameter elites fits in memory);
- ``seeds``: S = 1 ... 64 independent searches in one process: qdkit vmaps its run
  state (``map_elites.init`` with a vector of keys), QDax is vmapped the same way, and
  pyribs steps S schedulers in turn.

Every point runs in a fresh process (so that peak memory is that point's): it builds,
compiles and warms up, picks a number n of iterations that takes about ``--seconds``,
and times ``--repeats`` calls of n and of 2n iterations, interleaved. The cost of an
iteration is the difference of the medians over n iterations; what a call costs once
(qdkit's ``map_elites.run`` copies the run state it is handed, since its loop reuses the
buffers; every call hands results back to the host) is reported apart, as "per call".
``--libraries qdkit-donate`` adds qdkit handing its buffers over instead, as ``qdkit
run`` does: the empty archive to ``map_elites.init(..., donate=True)`` (the initial
state is written into it) and the state to ``map_elites.run(..., donate=True)`` (no
copy). Evaluations/s
count every seed; peak memory is the process's maximum resident set (``ru_maxrss``, read
as KB as Linux reports it), printed with what the process held after importing the
library, before building anything, and the peak once the archive and the initial state
were built ("peak when built"). ``--cells 1000000`` keeps only those points of the cells
sweep. Grid sizes are the nearest squares (32^2 = 1,024 cells are plotted as 10^3, 316^2
= 99,856 as 10^5). A point that fails or runs out of ``--timeout`` is reported as such,
not retried. Every point's process runs with the XLA:CPU flag qdkit sets on import
(``qdkit.xla``), QDax's too; ``QDKIT_XLA_DEFAULTS=0`` gives all of them XLA's defaults.

    python benchmarks/scaling.py                               # every sweep (about 30 minutes on 2 cores)
    python benchmarks/scaling.py --sweeps cells --libraries qdkit
    python benchmarks/scaling.py --sweeps cells --libraries qdkit,qdkit-donate,pyribs   # the copy's cost
    python benchmarks/scaling.py --quick                       # smoke run: small points only
    python benchmarks/scaling.py --report benchmarks/out/scaling.json   # reprint and replot
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import machine  # benchmarks/machine.py

HERE = os.path.dirname(os.path.abspath(__file__))
ISO, LINE = 0.005, 0.05
BASE = {"batch": 1024, "kind": "grid", "cells": 10_000, "dims": 100, "seeds": 1}
GRID_SIDE = {1_000: 32, 10_000: 100, 100_000: 316, 1_000_000: 1000}
SWEEPS = {
    "batch": [{"batch": b} for b in (64, 256, 1024, 4096, 16384)],
    "cells": [{"kind": k, "cells": c} for k in ("grid", "cvt") for c in (1_000, 10_000, 100_000, 1_000_000)],
    "genotype": [{"dims": d, "batch": 256, "cells": 1_000} for d in (10, 100, 1_000, 10_000, 100_000)],
    "seeds": [{"seeds": s} for s in (1, 4, 16, 64)],
}
QUICK = {
    "batch": [{"batch": b} for b in (64, 256)],
    "cells": [{"kind": k, "cells": 1_000} for k in ("grid", "cvt")],
    "genotype": [{"dims": 10, "batch": 256, "cells": 1_000}],
    "seeds": [{"seeds": s} for s in (1, 2)],
}
LIBRARIES = ("qdkit", "pyribs", "qdax")
#: ``qdkit-donate``: qdkit handing its archive over to ``map_elites.init`` and its state
#: to ``map_elites.run`` (``donate=True``, as ``qdkit run`` does), which then reuse their
#: buffers instead of new ones; only when asked for (``--libraries qdkit,qdkit-donate``).
ALL_LIBRARIES = ("qdkit", "qdkit-donate", "pyribs", "qdax")
AXIS = {"batch": "batch", "cells": "cells", "genotype": "dims", "seeds": "seeds"}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------- one point


def centroids_for(cells: int):
    import numpy as np

    return np.random.default_rng(7).uniform(0.0, 1.0, (cells, 2)).astype(np.float32)


def scorer(dims: int):
    """The rastrigin maths as one jitted function of a batch, ``(fitness, descriptors)``
    (qdkit and QDax get this very function)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(genotypes):
        x = genotypes * 10.0 - 5.0
        return -(10.0 * dims + jnp.sum(x * x - 10.0 * jnp.cos(2.0 * jnp.pi * x), axis=1)), genotypes[:, :2]

    return f


def rastrigin_np(x):
    import numpy as np

    z = x * 10.0 - 5.0
    return -(10.0 * x.shape[1] + np.sum(z * z - 10.0 * np.cos(2.0 * np.pi * z), axis=1)), x[:, :2]


def qdkit_point(p: dict):
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.join(HERE, ".."))
    import qdkit
    from emitters import iso_line

    dims, batch, seeds = p["dims"], p["batch"], p["seeds"]
    f = scorer(dims)
    base = qdkit.tasks.get("rastrigin", dims=dims)

    def score(key, genotypes):
        del key
        fitness, descriptors = f(genotypes)
        return qdkit.Evaluation(fitness, descriptors, {})

    task = qdkit.Task(**{**base.__dict__, "score": score, "name": "rastrigin-jnp.cos"})
    start = time.perf_counter()
    if p["kind"] == "grid":
        side = GRID_SIDE[p["cells"]]
        archive = qdkit.GridArchive.create(
            shape=(side, side), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    else:
        archive = qdkit.CVTArchive.create(
            centroids=centroids_for(p["cells"]), lower=task.lower, upper=task.upper,
            example_genotype=task.example_genotype,
        )  # fmt: skip
    setup = time.perf_counter() - start
    emitter = iso_line(batch, ISO, LINE, lower=0.0, upper=1.0)
    keys = jax.random.key(0) if seeds == 1 else jnp.stack([jax.random.key(k) for k in range(seeds)])
    donate = p["library"] == "qdkit-donate"  # the archive to init, and the state to each run call
    state = jax.block_until_ready(qdkit.map_elites.init(keys, task, archive, emitter, donate=donate))
    del archive
    holder = {"state": state}

    def step(n: int) -> None:
        holder["state"], _ = qdkit.map_elites.run(holder["state"], task, emitter, n, donate=donate)
        jax.block_until_ready(holder["state"].archive.fitness)

    def coverage() -> float:
        import numpy as np

        return float(np.mean(np.asarray(holder["state"].archive.coverage() if seeds == 1 else
                                        jax.vmap(lambda a: a.coverage())(holder["state"].archive))))  # fmt: skip

    return step, coverage, setup


def qdax_point(p: dict):
    import jax
    import jax.numpy as jnp
    from qdax.core.containers.mapelites_repertoire import compute_euclidean_centroids
    from qdax.core.emitters.mutation_operators import isoline_variation
    from qdax.core.emitters.standard_emitters import MixingEmitter
    from qdax.core.map_elites import MAPElites
    from qdax.utils.metrics import default_qd_metrics

    dims, batch, seeds = p["dims"], p["batch"], p["seeds"]
    f = scorer(dims)
    start = time.perf_counter()
    if p["kind"] == "grid":
        side = GRID_SIDE[p["cells"]]
        centroids = compute_euclidean_centroids(grid_shape=(side, side), minval=0.0, maxval=1.0)
    else:
        centroids = jnp.asarray(centroids_for(p["cells"]))
    setup = time.perf_counter() - start
    variation = functools.partial(isoline_variation, iso_sigma=ISO, line_sigma=LINE, minval=0.0, maxval=1.0)
    emitter = MixingEmitter(mutation_fn=None, variation_fn=variation, variation_percentage=1.0, batch_size=batch)
    algo = MAPElites(
        scoring_function=lambda genotypes, key: (*f(genotypes), {}),
        emitter=emitter,
        metrics_function=functools.partial(default_qd_metrics, qd_offset=40.5 * dims),
    )

    def init(key):
        key, k_init = jax.random.split(key)
        repertoire, emitter_state, _ = algo.init(jax.random.uniform(k_init, (batch, dims)), centroids, key)
        return repertoire, emitter_state, key

    def scan(carry, n):
        return jax.lax.scan(algo.scan_update, carry, None, length=n)[0]

    keys = jnp.stack([jax.random.key(k) for k in range(seeds)])
    if seeds == 1:
        carry = jax.jit(init)(keys[0])
        many = jax.jit(scan, static_argnums=1)
    else:
        carry = jax.jit(jax.vmap(init))(keys)
        many = jax.jit(jax.vmap(scan, in_axes=(0, None)), static_argnums=1)
    holder = {"carry": jax.block_until_ready(carry)}  # (built: "peak when built" counts the initial state)

    def step(n: int) -> None:
        holder["carry"] = many(holder["carry"], n)
        jax.block_until_ready(holder["carry"][0].fitnesses)

    def coverage() -> float:
        import numpy as np

        fit = np.asarray(holder["carry"][0].fitnesses)
        return float(np.mean(fit > -np.inf))

    return step, coverage, setup


def pyribs_point(p: dict):
    import numpy as np
    from ribs.archives import CVTArchive, GridArchive
    from ribs.emitters import IsoLineEmitter
    from ribs.schedulers import Scheduler

    dims, batch, seeds = p["dims"], p["batch"], p["seeds"]
    ranges = [(0.0, 1.0), (0.0, 1.0)]
    start = time.perf_counter()
    schedulers, archives = [], []
    for s in range(seeds):
        if p["kind"] == "grid":
            side = GRID_SIDE[p["cells"]]
            archive = GridArchive(solution_dim=dims, dims=[side, side], ranges=ranges, dtype=np.float32)
        else:
            archive = CVTArchive(solution_dim=dims, centroids=centroids_for(p["cells"]), ranges=ranges,
                                 dtype=np.float32)  # fmt: skip
        rng = np.random.default_rng(s)
        emitter = IsoLineEmitter(
            archive, iso_sigma=ISO, line_sigma=LINE, bounds=[(0.0, 1.0)] * dims, batch_size=batch, seed=s,
            initial_solutions=rng.uniform(0, 1, (batch, dims)).astype(np.float32),
        )  # fmt: skip
        schedulers.append(Scheduler(archive, [emitter]))
        archives.append(archive)
    setup = time.perf_counter() - start

    def step(n: int) -> None:
        for _ in range(n):
            for scheduler in schedulers:
                solutions = scheduler.ask()
                objective, measures = rastrigin_np(solutions)
                scheduler.tell(objective, measures)

    def coverage() -> float:
        return float(np.mean([a.stats.coverage for a in archives]))

    return step, coverage, setup


POINTS = {"qdkit": qdkit_point, "qdkit-donate": qdkit_point, "pyribs": pyribs_point, "qdax": qdax_point}


def run_point(p: dict, seconds: float, repeats: int) -> dict:
    """Build, warm up, calibrate and time one point (in this process)."""
    import jax  # noqa: F401  (imports count as the baseline)

    sys.path.insert(0, os.path.join(HERE, ".."))
    __import__({"qdkit": "emitters", "qdkit-donate": "emitters", "pyribs": "ribs.schedulers",
                "qdax": "qdax.core.map_elites"}[p["library"]])  # fmt: skip
    base_mb = rss_mb()
    step, coverage, setup = POINTS[p["library"]](p)
    built_mb = rss_mb()  # the peak so far: building the archive and the initial state
    start = time.perf_counter()
    step(1)  # compiles (QDax's scan compiles once per distinct length)
    first = time.perf_counter() - start
    lengths = {}
    for n in (1, 4):
        step(n)  # warm at this length
        t0 = time.perf_counter()
        step(n)
        lengths[n] = time.perf_counter() - t0
    # a length whose iterations take about `seconds` (from the cost of one more
    # iteration, so that what a call costs once does not set it)
    estimate = (lengths[4] - lengths[1]) / 3 if lengths[4] > lengths[1] else lengths[4] / 4
    n = int(min(1000, max(2, round(seconds / max(estimate, 1e-6)))))
    times: dict[int, list[float]] = {n: [], 2 * n: []}
    for m in times:
        step(m)  # warm at this length
    for _ in range(repeats):
        for m in times:
            t0 = time.perf_counter()
            step(m)
            times[m].append(time.perf_counter() - t0)
    short, long = statistics.median(times[n]), statistics.median(times[2 * n])
    # the steady cost of an iteration, from calls of n and 2n iterations; what a call
    # costs once (qdkit's run copies the state it is handed; every call hands results
    # back to the host) is reported apart
    median = (long - short) / n if long > short else long / (2 * n)
    per_call = max(0.0, short - n * median)
    evals = p["batch"] * p["seeds"]
    return {**p, "iterations": n, "seconds_per_iteration": median, "evals_per_s": evals / median,
            "ns_per_eval": 1e9 * median / evals, "per_call_s": per_call, "peak_mb": rss_mb(), "base_mb": base_mb,
            "built_mb": built_mb,
            "setup_s": setup, "first_s": first, "coverage": coverage()}  # fmt: skip


# --------------------------------------------------------------------- the driver


def spawn(p: dict, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--point", json.dumps(p),
           "--seconds", str(args.seconds), "--repeats", str(args.repeats)]  # fmt: skip
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**p, "error": f"timeout after {args.timeout} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "wall_s": time.perf_counter() - start}
    tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return {**p, "error": f"exit {out.returncode}: {tail[:160]}"}


def label(p: dict) -> str:
    return f"{p['kind']} {p['cells']:,} cells, batch {p['batch']:,}, D {p['dims']:,}, {p['seeds']} seed(s)"


def x_of(sweep: str, r: dict) -> int:
    return r[AXIS[sweep]]


def print_tables(results: list[dict]) -> None:
    for sweep in SWEEPS:
        rows = [r for r in results if r["sweep"] == sweep]
        if not rows:
            continue
        kinds = [k for k in ("grid", "cvt") if any(r["kind"] == k for r in rows)] if sweep == "cells" else [None]
        for kind in kinds:
            part = [r for r in rows if kind is None or r["kind"] == kind]
            title = f"{sweep}" + (f" ({kind})" if kind else "")
            print(f"\n### {title}: the rest at {label({**BASE, **SWEEP_BASE[sweep], 'kind': kind or 'grid'})}")
            print(f"| {AXIS[sweep]} | library | evals/s | ns/eval | per call ms | peak MB | peak when built MB | "
                  "imports MB | set-up s | first iteration s | coverage |")  # fmt: skip
            print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in sorted(part, key=lambda r: (x_of(sweep, r), ALL_LIBRARIES.index(r["library"]))):
                if "error" in r:
                    print(f"| {x_of(sweep, r):,} | {r['library']} | {r['error']} | | | | | | | | |")
                    continue
                print(f"| {x_of(sweep, r):,} | {r['library']} | {r['evals_per_s']:,.0f} | {r['ns_per_eval']:,.0f} | "
                      f"{1e3 * r['per_call_s']:,.0f} | "
                      f"{r['peak_mb']:,.0f} | {r.get('built_mb', float('nan')):,.0f} | {r['base_mb']:,.0f} | "
                      f"{r['setup_s']:.2f} | {r['first_s']:.2f} | "
                      f"{r['coverage']:.3f} |")  # fmt: skip
            # the cost that should stay flat along the sweep: per evaluation, and for the
            # genotype sweep per evaluation and parameter (scoring and variation are O(D))
            if sweep == "genotype":
                unit, cost = "ns per evaluation and parameter", lambda r: r["ns_per_eval"] / r["dims"]
            else:
                unit, cost = "ns/eval", lambda r: r["ns_per_eval"]
            for library in ALL_LIBRARIES:
                mine = sorted((r for r in part if r["library"] == library and "error" not in r),
                              key=lambda r: x_of(sweep, r))  # fmt: skip
                if len(mine) >= 2:
                    best = min(cost(r) for r in mine)
                    worse = [r for r in mine if cost(r) > 1.5 * best]
                    where = (f"{unit} above 1.5x its best ({best:,.1f}) from {AXIS[sweep]} = "
                             f"{x_of(sweep, worse[0]):,}" if worse else f"{unit} within 1.5x of its best throughout")  # fmt: skip
                    path = ", ".join(f"{cost(r):,.1f}" for r in mine)
                    print(f"{library}: {where} (along the sweep: {path})")


SWEEP_BASE = {"batch": {}, "cells": {}, "genotype": {"batch": 256, "cells": 1_000}, "seeds": {}}


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("batch", None), ("cells", "grid"), ("cells", "cvt"), ("genotype", None), ("seeds", None)]
    panels = [(s, k) for s, k in panels if any(r["sweep"] == s and "error" not in r for r in results)]
    if not panels:
        return
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 7), squeeze=False)
    for col, (sweep, kind) in enumerate(panels):
        for library, marker in zip(ALL_LIBRARIES, "oDs^"):
            mine = sorted((r for r in results if r["sweep"] == sweep and r["library"] == library and "error" not in r
                           and (kind is None or r["kind"] == kind)), key=lambda r: x_of(sweep, r))  # fmt: skip
            if not mine:
                continue
            xs = [x_of(sweep, r) for r in mine]
            axes[0, col].loglog(xs, [r["evals_per_s"] for r in mine], marker=marker, label=library)
            axes[1, col].loglog(xs, [r["peak_mb"] for r in mine], marker=marker, label=library)
        name = AXIS[sweep] + (f" ({kind})" if kind else "")
        axes[0, col].set_title(name)
        axes[1, col].set_xlabel(name)
    axes[0, 0].set_ylabel("evaluations / s")
    axes[1, 0].set_ylabel("peak resident memory, MB")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma-separated, of {', '.join(SWEEPS)}")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help="comma-separated, of qdkit, pyribs, qdax (and qdkit-donate)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=1.0, help="target length of one timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per point before it is given up")
    parser.add_argument("--quick", action="store_true", help="small points only, short timings (smoke run)")
    parser.add_argument("--out", default=os.path.join(HERE, "out", "scaling"), help="results json and plot go here")
    parser.add_argument("--report", help="reprint the tables and replot from a results json")
    parser.add_argument("--cells", help="comma-separated cell counts: only these points of the cells sweep")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        # Like for like: every library's process runs with the XLA flag that importing
        # qdkit sets (qdkit.xla; QDKIT_XLA_DEFAULTS=0 keeps XLA's defaults for all).
        sys.path.insert(0, os.path.join(HERE, ".."))
        from qdkit import xla

        xla.apply_defaults()
        print(json.dumps(run_point(json.loads(args.point), args.seconds, args.repeats)), flush=True)
        return
    if args.report:
        with open(args.report) as fh:
            results = json.load(fh)["results"]
        print_tables(results)
        plot(results, os.path.splitext(args.report)[0] + ".png")
        return
    sweeps = [s for s in args.sweeps.split(",") if s]
    libraries = [name for name in args.libraries.split(",") if name]
    for name in sweeps:
        if name not in SWEEPS:
            parser.error(f"unknown sweep {name!r}; valid: {', '.join(SWEEPS)}")
    for name in libraries:
        if name not in ALL_LIBRARIES:
            parser.error(f"unknown library {name!r}; valid: {', '.join(ALL_LIBRARIES)}")
    if args.quick:
        args.seconds, args.repeats = 0.2, 1
    import jax

    print(f"# scaling.py  jax {jax.__version__}  devices {jax.devices()}  python {platform.python_version()}  "
          f"{machine.cpu()}  {' '.join(sys.argv[1:])}")  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "scaling.json")
    results: list[dict] = []
    for sweep in sweeps:
        for change in (QUICK if args.quick else SWEEPS)[sweep]:
            if sweep == "cells" and args.cells and str(change["cells"]) not in args.cells.split(","):
                continue
            for library in libraries:
                p = {**BASE, **change, "library": library, "sweep": sweep}
                r = spawn(p, args)
                results.append(r)
                shown = r.get("error") or (f"{r['evals_per_s']:12,.0f} evals/s {r['ns_per_eval']:9,.0f} ns/eval "
                                           f"peak {r['peak_mb']:8,.0f} MB  ({r['wall_s']:.0f} s)")  # fmt: skip
                print(f"  {sweep:8s} {library:12s} {label(p):58s} {shown}", flush=True)
                with open(path, "w") as fh:
                    json.dump({"argv": sys.argv[1:], "jax": jax.__version__, "results": results}, fh, indent=1)
    print_tables(results)
    plot(results, os.path.join(args.out, "scaling.png"))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
