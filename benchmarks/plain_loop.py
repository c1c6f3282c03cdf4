"""MAP-Elites with Iso+LineDD on a grid, written out by hand in plain JAX: the floor
that qdkit's loop is measured against (``seeds_floor.py``, ``core_throughput.py``).

It does the work of qdkit's loop for that configuration and nothing else: parents drawn
uniformly among the occupied cells (from each archive's list of them), the isotropic and
line normals of :mod:`qdkit.rng` (the streams qdkit's emitters draw), the children made
in one kernel (:func:`qdkit.xla.own_kernels`) and clipped, one call of the scoring
function, and the insertion of :meth:`qdkit.Archive.add` (the best row of each cell
enters when it beats the elite, the first row on ties; rows with a NaN or infinite
fitness or descriptor are dropped), storing genotypes, fitness and descriptors. No
metrics, no host work, no checks, no options.

S independent seeds are laid end to end in one archive of S x C cells (seed s owns
cells ``s*C`` to ``s*C + C - 1``, each with its own occupied-cell list and count): an
iteration draws every seed's parents and noise in one draw each, scores all S x B
children in one call and inserts them with one segment maximum and one segment minimum,
with no ``vmap``. With S = 1 it is one seed, by the same code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit import rng, xla

NO_ROW = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class Setup:
    """A grid, an Iso+LineDD emitter and a scoring function
    ``score(genotypes (B, D)) -> (fitness (B,), descriptors (B, 2))``."""

    score: Callable
    batch: int
    dims: int
    side: int  # the grid is side x side over [descriptor_low, descriptor_high]^2
    genotype_low: float
    genotype_high: float
    descriptor_low: float
    descriptor_high: float
    iso_sigma: float
    line_sigma: float

    @property
    def cells(self) -> int:
        return self.side * self.side


def _offsets(setup: Setup, seeds: int) -> jax.Array:
    return jnp.arange(seeds, dtype=jnp.int32) * setup.cells


def insert(setup: Setup, archive, genotypes: jax.Array, seeds: int):
    """Score ``seeds`` x B rows (seed-major) and insert them into the seeds' archives."""
    fitness, genes, descriptors, order, count = archive
    total = seeds * setup.cells
    fit, desc = setup.score(genotypes)
    valid = jnp.isfinite(fit) & jnp.all(jnp.isfinite(desc), axis=1)
    span = setup.descriptor_high - setup.descriptor_low  # (as qdkit's grid: divided, then multiplied)
    scaled = (jnp.where(valid[:, None], desc, setup.descriptor_low) - setup.descriptor_low) / span * setup.side
    ij = jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, setup.side - 1)
    index = ij[:, 0] * setup.side + ij[:, 1] + jnp.repeat(_offsets(setup, seeds), setup.batch)
    cell = jnp.where(valid, index, total)  # out of range: dropped
    fit = jnp.where(valid, fit, -jnp.inf)
    old = fitness[index]
    rows = jnp.arange(seeds * setup.batch, dtype=jnp.int32)
    best = (cell < total) & (fit == jax.ops.segment_max(fit, cell, num_segments=total)[index])
    first = jax.ops.segment_min(jnp.where(best, rows, NO_ROW), cell, num_segments=total)[index]
    added = best & (first == rows) & (fit > old)
    target = jnp.where(added, index, total)
    is_new = (added & ~jnp.isfinite(old)).reshape(seeds, setup.batch)
    new_rows = is_new.astype(jnp.int32)
    slot = count[:, None] + jnp.cumsum(new_rows, axis=1) - 1 + _offsets(setup, seeds)[:, None]
    return (
        fitness.at[target].set(fit, mode="drop"),
        genes.at[target].set(genotypes, mode="drop"),
        descriptors.at[target].set(desc, mode="drop"),
        order.at[jnp.where(is_new, slot, total).reshape(-1)].set(index, mode="drop"),
        count + jnp.sum(new_rows, axis=1),
    )


def step(setup: Setup, archive, key: jax.Array, seeds: int):
    """One iteration of every seed."""
    genes, order, count = archive[1], archive[3], archive[4]
    b, n = setup.batch, seeds * setup.batch
    u = rng.uniform(key, (seeds, 2 * b))
    last = jnp.maximum(count[:, None] - 1, 0)
    position = jnp.clip(jnp.floor(u * count[:, None].astype(jnp.float32)).astype(jnp.int32), 0, last)
    parents = order[position + _offsets(setup, seeds)[:, None]]
    x_index, y_index = parents[:, :b].reshape(-1), parents[:, b:].reshape(-1)
    line = setup.line_sigma * rng.normal(key, (n,), stream=1)
    noise = rng.normal(key, (n, setup.dims), stream=2)

    def vary(genes, noise, line, x_index, y_index):
        x, y = genes[x_index], genes[y_index]
        return jnp.clip(x + setup.iso_sigma * noise + line[:, None] * (y - x), setup.genotype_low, setup.genotype_high)

    children = xla.own_kernels(vary, (genes, noise, line, x_index, y_index), count[0])
    return insert(setup, archive, children, seeds)


def init(setup: Setup, key: jax.Array, seeds: int):
    """``seeds`` archives, each filled from B genotypes uniform in the bounds."""
    total = seeds * setup.cells
    empty = (
        jnp.full((total,), -jnp.inf, jnp.float32),
        jnp.zeros((total, setup.dims), jnp.float32),
        jnp.zeros((total, 2), jnp.float32),
        jnp.zeros((total,), jnp.int32),
        jnp.zeros((seeds,), jnp.int32),
    )
    u = rng.uniform(key, (seeds * setup.batch, setup.dims), stream=7)
    return insert(setup, empty, setup.genotype_low + (setup.genotype_high - setup.genotype_low) * u, seeds)


def iterate(setup: Setup, archive, key: jax.Array, seeds: int, iterations: int):
    """``iterations`` iterations in one ``lax.scan`` (iteration i's key: ``fold_in(key, i)``)."""

    def body(archive, i):
        return step(setup, archive, jax.random.fold_in(key, i), seeds), None

    return lax.scan(body, archive, jnp.arange(iterations))[0]


def summary(setup: Setup, archive, seeds: int, qd_offset: float):
    """Each seed's QD-score (``max(fitness - qd_offset, 0)`` summed over the elites, as
    qdkit's) and coverage."""
    fitness = archive[0].reshape(seeds, setup.cells)
    filled = jnp.isfinite(fitness)
    terms = jnp.where(filled, jnp.maximum(fitness - np.float32(qd_offset), 0.0), 0.0)
    return jnp.sum(terms, axis=1), jnp.mean(filled, axis=1)
