"""DCG-MAP-Elites on the paper's own brax tasks: MAP-Elites, PGA-ME, DCG-ME and DCRL-ME
on ant_omni, anttrap_omni and walker2d_uni, with the distilled policy measured as the
paper measures it.

Two scales:

- ``--scale paper``: the GECCO paper's configuration (its Table 3 and its official
  code): the tasks' ``preset=paper`` (250-step ant episodes, 1,000-step walker, MLP
  128x128, the paper's QD offsets), CVT of 1,024 cells from 50,000 samples, batch 256,
  4,000 iterations (about 1M evaluations), 20 seeds; TD3 critic 256x256, 3,000 critic
  steps per iteration, batch 100, 150 PG steps per offspring, learning rates 3e-4 /
  3e-4 / 5e-3, buffer 1M. DCG-ME: GA 128 / PG 128, each transition replayed for the
  descriptor its policy was aimed at (``archive_replay=0``, as the official
  ``dcg_me_emitter`` does), 64 actor episodes per iteration with descriptor noise 0.0004
  of the range, length-scale :data:`DCG_LENGTH_SCALE`. DCRL-ME: GA 128 / PG 64 /
  injected actors 64, no actor episodes, l = 0.1. For an accelerator.
- ``--scale cpu`` (default): the same algorithms and ratios scaled down to fit this
  2-core machine in under an hour for all three tasks: 100-step episodes (the
  walker's too), batch 64 (GA 32 / PG 32; DCRL GA 32 / PG 16 / injected 16), 60
  iterations (3,904 evaluations per seed with the initial 64), 3 seeds run as one
  vmapped computation, 300 critic steps, 20 PG steps, 16 actor episodes per iteration
  for DCG-ME, buffer 100k. The CVT keeps 1,024 cells.

Per task and method it prints the final QD-score (the task's ``preset=paper`` QD offset,
so on the paper's raw-sum scale; mean ± sd, then each seed's with the lowest and the
highest), coverage and minutes; for DCG-ME and DCRL-ME also the distilled policy's
QD-score and descriptor error mean against the archive's (the paper's Table 2
measures, :func:`emitters.paper_measures`). It writes
``OUT/results.json`` and ``OUT/qd_score.png`` (QD-score against evaluations, mean and
min-max band over the seeds).

    python benchmarks/dcg_paper.py                                   # the CPU budget, 3 tasks
    python benchmarks/dcg_paper.py --tasks ant_omni --scale paper --seeds 1    # on a GPU
    python benchmarks/dcg_paper.py --tasks ant_omni --iterations 2 --seeds 1 --episode-length 10  # smoke
    python benchmarks/dcg_paper.py --report benchmarks/out/dcg_paper/results.json   # the tables again

The actor episodes (the papers' negative samples) are not counted as evaluations, as the
paper's text says; its code's plots count them for DCG-ME (``batch + actor_batch`` per
iteration), so the x axis here is the offspring only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
import qdkit  # noqa: E402
from qdkit import map_elites  # noqa: E402

TASKS = ("ant_omni", "anttrap_omni", "walker2d_uni")
METHODS = ("me", "pga", "dcg", "dcrl")
NAMES = {"me": "MAP-Elites", "pga": "PGA-ME", "dcg": "DCG-ME", "dcrl": "DCRL-ME"}

#: Per scale: the run's size and the TD3 settings (the ratios of the paper's batch split kept).
SCALES = {
    "paper": {"iterations": 4000, "batch": 256, "seeds": 20, "episode_length": None, "critic_steps": 3000,
              "pg_steps": 150, "buffer": 1_000_000, "cvt_samples": 50_000},
    "cpu": {"iterations": 60, "batch": 64, "seeds": 3, "episode_length": 100, "critic_steps": 300,
            "pg_steps": 20, "buffer": 100_000, "cvt_samples": 50_000},
}  # fmt: skip
CELLS = 1024
#: DCG-ME's length-scale in qdkit's units (descriptors mapped to [-1, 1]). The official
#: code sets ``0.008 * (max_bd - min_bd)`` and divides the descriptors by ``max_bd``:
#: 0.48 on the ants' [-30, 30] mapped to [-1, 1]; 0.008 on the walker's [0, 1] left as
#: it is, 0.016 once mapped to [-1, 1].
DCG_LENGTH_SCALE = {"ant_omni": 0.48, "anttrap_omni": 0.48, "walker2d_uni": 0.016}

#: The paper's Table 2 (medians of 20 runs): archive and policy QD-scores and DEMs.
PAPER_TABLE2 = {
    "ant_omni": {"qd_archive": 8.7e5, "qd_policy": 8.3e5, "ratio": 0.95, "dem_archive": 4.04, "dem_policy": 6.25},
    "anttrap_omni": {"qd_archive": 7.2e5, "qd_policy": 7.0e5, "ratio": 0.97, "dem_archive": 3.44, "dem_policy": 5.8},
    "walker2d_uni": {"qd_archive": 9.8e5, "qd_policy": 5.2e5, "ratio": 0.53, "dem_archive": 0.12, "dem_policy": 0.27},
}  # fmt: skip


def td3(scale: dict) -> emitters.TD3Config:
    """The paper's TD3 and PG settings, with the scale's step counts and buffer."""
    return emitters.TD3Config(
        critic_hidden=(256, 256), critic_steps=scale["critic_steps"], batch_size=100, pg_steps=scale["pg_steps"],
        pg_batch_size=100, buffer_size=scale["buffer"], discount=0.99, tau=0.005, policy_delay=2, policy_noise=0.2,
        noise_clip=0.5, critic_lr=3e-4, actor_lr=3e-4, pg_lr=5e-3,
    )  # fmt: skip


def make_emitter(method: str, task, batch: int, config: emitters.TD3Config):
    """The four methods with the paper's batch split (GA half; DCRL: GA half, PG and
    injected actors a quarter each), Iso+LineDD 0.005 / 0.05."""
    iso = {"iso_sigma": 0.005, "line_sigma": 0.05}
    if method == "me":
        return emitters.iso_line(batch, 0.005, 0.05)
    if method == "pga":
        return emitters.pga(task, batch, pg_fraction=0.5, config=config, **iso)
    if method == "dcg":
        return emitters.dcg(task, batch, pg_fraction=0.5, length_scale=DCG_LENGTH_SCALE[task.name], archive_replay=0.0,
                            actor_rollouts=batch // 4, actor_rollout_noise=0.0008, config=config, **iso)  # fmt: skip
    if method == "dcrl":
        return emitters.dcg(task, batch, pg_fraction=0.25, num_injected=batch // 4, length_scale=0.1,
                            archive_replay=0.0, actor_rollouts=0, config=config, **iso)  # fmt: skip
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def run_one(task_name: str, method: str, scale: dict, seeds: int, iterations: int, episode_length, seed0: int):
    options = {"preset": "paper"}
    if episode_length is not None:
        options["episode_length"] = episode_length
    task = qdkit.tasks.get(task_name, **options)
    batch = scale["batch"]
    archive = qdkit.CVTArchive.create(cells=CELLS, lower=task.lower, upper=task.upper,
                                      example_genotype=task.example_genotype, samples=scale["cvt_samples"],
                                      key=jax.random.key(seed0))  # fmt: skip
    emitter = make_emitter(method, task, batch, td3(scale))
    keys = jnp.stack([jax.random.key(seed0 + s) for s in range(seeds)])
    start = time.perf_counter()
    state = map_elites.init(keys, task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, iterations, chunk_size=max(1, min(iterations, 10)))
    jax.block_until_ready(state.archive.fitness)
    seconds = time.perf_counter() - start
    qd = np.asarray(metrics["qd_score"], np.float64).reshape(iterations, seeds)
    coverage = np.asarray(metrics["coverage"], np.float64).reshape(iterations, seeds)
    out = {"task": task_name, "method": method, "seeds": seeds, "iterations": iterations, "batch": batch,
           "episode_length": task.episode_length, "qd_offset": task.qd_offset, "seconds": seconds,
           "evaluations": [batch * (1 + i) for i in range(1, iterations + 1)],  # the initial population counts
           "qd_score": qd.T.tolist(), "coverage": coverage.T.tolist()}  # fmt: skip
    if method in ("dcg", "dcrl"):
        measured = []
        for s in range(seeds):
            one = map_elites.seed_state(state, s)
            policy = emitters.distilled_policy(one.emitter_state, task, one.archive)
            key = jax.random.key(10_000 + seed0 + s)
            _, arrays = emitters.evaluate_distilled(policy, task, one.archive, key)
            measured.append(emitters.paper_measures(arrays, task, one.archive, jax.random.fold_in(key, 1)))
        out["distillation"] = measured
        out["distill_seconds"] = time.perf_counter() - start - seconds
    return out


def summarise(results: list[dict]) -> list[str]:
    lines = [
        "| task | method | final QD-score (mean ± sd over seeds) | coverage | minutes |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        final = np.asarray(r["qd_score"])[:, -1]
        cov = np.asarray(r["coverage"])[:, -1]
        lines.append(f"| {r['task']} | {NAMES[r['method']]} | {final.mean():,.0f} ± {final.std():,.0f} | "
                     f"{cov.mean():.1%} | {r['seconds'] / 60:.1f} |")  # fmt: skip
    lines += ["", "| task | method | final QD-score of each seed (seed order) | lowest to highest seed |",
              "|---|---|---|---:|"]  # fmt: skip
    for r in results:
        final = np.asarray(r["qd_score"])[:, -1]
        each = ", ".join(f"{v:,.0f}" for v in final)
        lines.append(f"| {r['task']} | {NAMES[r['method']]} | {each} | {final.min():,.0f} to {final.max():,.0f} |")
    lines += ["", "| task | method | DCG/PGA QD-score |", "|---|---|---:|"]
    by = {(r["task"], r["method"]): np.asarray(r["qd_score"])[:, -1].mean() for r in results}
    for task in dict.fromkeys(r["task"] for r in results):
        for method in ("dcg", "dcrl"):
            if (task, method) in by and (task, "pga") in by and by[(task, "pga")] > 0:
                lines.append(f"| {task} | {NAMES[method]} | {by[(task, method)] / by[(task, 'pga')]:.2f}× |")
    lines += ["", "| task | method | policy QD / archive QD | DEM policy | DEM archive (re-scored) | paper: ratio, DEM "
              "policy, DEM archive |", "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for r in results:
        if "distillation" not in r:
            continue
        m = r["distillation"]
        ratio = np.asarray([x["policy_over_archive"] or 0.0 for x in m])
        dp, da = np.asarray([x["dem_policy"] for x in m]), np.asarray([x["dem_archive"] for x in m])
        p = PAPER_TABLE2.get(r["task"])
        paper = f"{p['ratio']:.0%}, {p['dem_policy']}, {p['dem_archive']}" if p else "—"
        lines.append(f"| {r['task']} | {NAMES[r['method']]} | {ratio.mean():.1%} ± {ratio.std():.1%} | "
                     f"{dp.mean():.2f} ± {dp.std():.2f} | {da.mean():.2f} ± {da.std():.2f} | {paper} |")  # fmt: skip
    return lines


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in results if r["task"] == task):
            qd, x = np.asarray(r["qd_score"]), np.asarray(r["evaluations"])
            ax.plot(x, qd.mean(axis=0), label=NAMES[r["method"]])
            ax.fill_between(x, qd.min(axis=0), qd.max(axis=0), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("QD-score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument("--seeds", type=int, default=None, help="default: the scale's")
    parser.add_argument("--iterations", type=int, default=None, help="default: the scale's")
    parser.add_argument("--episode-length", type=int, default=None, help="default: the scale's (paper: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--out", default="benchmarks/out/dcg_paper")
    parser.add_argument("--report", metavar="RESULTS_JSON", default=None,
                        help="print the tables (and write the plot beside it) of a results.json written by an "
                             "earlier run, complete or not, and run nothing")  # fmt: skip
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        print(f"# dcg_paper.py --report {args.report}: scale {saved['scale']}, device {saved['device']}, "
              f"{len(saved['results'])} task x method rows")  # fmt: skip
        for line in summarise(saved["results"]):
            print(line)
        plot(saved["results"], os.path.join(os.path.dirname(os.path.abspath(args.report)), "qd_score.png"))
        return
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    for name, valid, given in (("task", TASKS, tasks), ("method", METHODS, methods)):
        unknown = [g for g in given if g not in valid]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}; valid: {', '.join(valid)}")
    scale = SCALES[args.scale]
    seeds = args.seeds or scale["seeds"]
    iterations = args.iterations or scale["iterations"]
    episode_length = args.episode_length or scale["episode_length"]
    if min(seeds, iterations) < 1 or (episode_length is not None and episode_length < 1):
        parser.error("--seeds, --iterations and --episode-length must be positive")
    os.makedirs(args.out, exist_ok=True)
    device = jax.devices()[0]
    print(f"# dcg_paper.py — {machine.cpu()}, jax "
          f"{jax.__version__} on {device.platform} ({device.device_kind}); scale {args.scale}: {iterations} iterations "
          f"x batch {scale['batch']}, {seeds} seeds, episode length {episode_length or 'from the preset'}, "
          f"{scale['critic_steps']} critic steps, {scale['pg_steps']} PG steps", flush=True)  # fmt: skip
    results = []
    for task in tasks:
        for method in methods:
            r = run_one(task, method, scale, seeds, iterations, episode_length, args.seed)
            final = np.asarray(r["qd_score"])[:, -1]
            print(f"{task} {NAMES[method]}: QD-score {final.mean():,.0f} ± {final.std():,.0f}, "
                  f"{r['seconds'] / 60:.1f} min", flush=True)  # fmt: skip
            results.append(r)
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump({"scale": args.scale, "device": str(device.device_kind), "results": results}, f)
    for line in summarise(results):
        print(line)
    plot(results, os.path.join(args.out, "qd_score.png"))
    print(f"wrote {args.out}/results.json, {args.out}/qd_score.png")


if __name__ == "__main__":
    main()
