"""``qdkit distill``: archive distillation of a run (the pipeline is
:func:`emitters.distill.distill`; this command reads the run and writes the files)."""

from __future__ import annotations

import os

import click
import numpy as np

from qdkit import rundir
from qdkit.cli.options import Point, Widths, load_run, run_directory, seed_option

DISTILLED = "distilled.npz"


@click.command()
@run_directory
@click.option("--target", type=Point(), default=None,
              help="Run the distilled policy for this descriptor, e.g. 0.2,0.8.")  # fmt: skip
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help=f"A saved distilled policy [default: DIRECTORY/{DISTILLED}, else the run's checkpoint].")  # fmt: skip
@click.option("--render", "render_path", type=click.Path(dir_okay=False), default=None,
              help="With --target: write a PNG of the rollout (tasks that can draw themselves).")  # fmt: skip
@seed_option
@click.option("--refine", "refine_steps", type=click.IntRange(min=1), default=None,
              help="First fine-tune the policy for this many steps toward the archive's descriptors, by gradient "
                   "through the task's dynamics (tasks with a differentiable descriptor: maze).")  # fmt: skip
@click.option("--imitate", "imitate_steps", type=click.IntRange(min=1), default=None,
              help="First train the policy for this many steps by imitating a --teacher on the states it visits "
                   "(DAgger): a fresh actor (--hidden, default 256,256) unless --policy is given; any run.")  # fmt: skip
@click.option("--teacher", type=click.Choice(("task", "elites")), default=None,
              help="With --imitate: 'task' (the task's own controller: the maze's shortest paths on its map) or "
                   "'elites' (the archive's elites) [default: task where the task has one, else elites].")  # fmt: skip
@click.option("--hidden", type=Widths(), default=None,
              help="With --refine or --imitate: a fresh actor with these hidden widths, e.g. 64,64 (any run of the task).")  # fmt: skip
@click.option("--learning-rate", type=click.FloatRange(min=0.0, min_open=True), default=1e-3, show_default=True,
              help="With --refine or --imitate: Adam's step size.")  # fmt: skip
@click.option("--elite-noise", type=click.FloatRange(min=0.0), default=0.001, show_default=True,
              help="Also replay the archive's own elites with this much Gaussian action noise and report how "
                   "many still reach their cell: the reference for the distilled policy (tasks with "
                   "descriptor_of: maze). 0 skips it.")  # fmt: skip
def distill(directory, target, policy_path, render_path, seed, refine_steps, imitate_steps, teacher, hidden,
            learning_rate, elite_noise):  # fmt: skip
    """Archive distillation of a dcg run: the descriptor-conditioned policy, evaluated on
    every cell's target (distill.json, distill.png, distilled.npz), or run for one --target.
    With --imitate a policy is first trained by imitating a teacher (any run), and with
    --refine fine-tuned toward the archive's descriptors (after --imitate when both are
    given)."""
    import jax
    import jax.numpy as jnp

    import emitters
    from emitters import distill as distillation

    loaded = load_run(directory)
    task, archive = loaded.task, loaded.state.archive
    if hidden is not None and refine_steps is None and imitate_steps is None:
        raise click.BadParameter("needs --refine or --imitate", param_hint="--hidden")
    if teacher is not None and imitate_steps is None:
        raise click.BadParameter("needs --imitate", param_hint="--teacher")
    for steps, name in ((refine_steps, "refine"), (imitate_steps, "imitate")):
        if steps is not None and target is not None:
            raise click.BadParameter(f"train first (distill DIR --{name} N), then run the saved policy for a target",
                                     param_hint=f"--{name}")  # fmt: skip
    if policy_path or (target is not None and os.path.exists(os.path.join(directory, DISTILLED))):
        try:
            policy = emitters.DistilledPolicy.load(policy_path or os.path.join(directory, DISTILLED))
        except ValueError as e:
            raise click.ClickException(str(e)) from e
    elif hidden is not None or imitate_steps is not None:
        policy = None  # a fresh actor, for a run of any emitter
    else:
        if loaded.config.get("emitter") != "dcg":
            raise click.ClickException(f"{directory} is a {loaded.config.get('emitter')} run; distillation needs "
                                       "--emitter dcg (its descriptor-conditioned actor), or --refine N --hidden W "
                                       "to train a fresh one")  # fmt: skip
        policy = emitters.distilled_policy(loaded.state.emitter_state, task, archive)
    key = jax.random.key(seed)
    if target is not None:
        if len(target) != archive.descriptor_dim:
            raise click.BadParameter(
                f"needs {archive.descriptor_dim} coordinates; got {len(target)}", param_hint="--target"
            )
        from qdkit.map_elites import describe

        params = policy.specialise(jnp.asarray([target], jnp.float32))
        evaluation = jax.jit(lambda k, p: describe(archive, task, task.score(k, p))[0])(key, params)
        reached = np.asarray(evaluation.descriptors[0])
        click.echo(f"target {target}: reached {reached.round(4).tolist()} (distance "
                   f"{float(np.linalg.norm(reached - np.asarray(target))):.4f}), fitness {float(evaluation.fitness[0]):.4g}")  # fmt: skip
        if render_path:
            if getattr(task, "render", None) is None:
                raise click.ClickException(f"task {task.name!r} cannot draw its rollouts")
            click.echo(f"wrote {task.render(task, params, render_path)}")
        return
    try:
        result = distillation.distill(
            task, archive, key, policy=policy, imitate=imitate_steps, teacher=teacher, refine=refine_steps,
            hidden=hidden, learning_rate=learning_rate, elite_noise=elite_noise, log=click.echo,
        )  # fmt: skip
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [os.path.join(directory, name) for name in ("distill.json", "distill.png", DISTILLED)]
    rundir.write_json(paths[0], result.report)
    if archive.descriptor_dim == 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        names = [f"learned {i}" for i in range(2)] if archive.learned else task.descriptor_names
        distillation.plot_distilled(result.arrays, ax=ax, descriptor_names=names)
        reached = result.report["filled_cells"].get("reached_fraction", 0)
        ax.set_title(f"distilled policy: {reached:.0%} of filled cells reached")
        fig.savefig(paths[1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    else:
        paths.pop(1)
    result.policy.save(paths[-1])
    for line in distillation.summary(result.report):
        click.echo(line)
    click.echo("wrote " + ", ".join(paths))
