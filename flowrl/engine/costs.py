"""Arithmetic cost of a program counted from its shapes, and the machine's matrix-product peak.

`matmul_flops(fn, *args)` traces `fn` and adds 2 * (output size) * (contracted size) for every
matrix product (`dot_general`) and convolution in its jaxpr, with every loop body counted as
many times as the loop runs (a `scan`'s length; a flow's Euler `fori_loop` is a scan). XLA's own
cost analysis counts a loop body once, so it under-reports a flow agent's update (FQL: ~8.5
against ~12 GFLOP). Elementwise work is left out: at the networks' sizes it is a few percent.

`matmul_peak(...)` times a jitted chain of batch-256 512 x 512 products, the shape of a paper-size
network layer: the rate the machine's XLA reaches on the products the agents are made of.
"""

import math
import time

import jax
import jax.extend.core
import jax.numpy as jnp

LOOP_PRIMITIVES_COUNTED_ONCE = ('while',)  # trip count unknown at trace time: its body is counted once


def _sub_jaxprs(params: dict):
    """The jaxprs held in an equation's params (pjit, custom_jvp/vjp, remat, shard_map, cond ...)."""
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _dot_flops(eqn) -> int:
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _conv_flops(eqn) -> int:
    """2 * output size * (kernel window x input features per group)."""
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params['dimension_numbers'].rhs_spec  # (out features, in features, spatial...)
    window = math.prod(rhs[d] for d in spec[2:]) * rhs[spec[1]]
    return 2 * math.prod(eqn.outvars[0].aval.shape) * window


def jaxpr_flops(jaxpr) -> int:
    """Matrix-product and convolution FLOPs of `jaxpr`, loop bodies times their trip counts."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == 'dot_general':
            total += _dot_flops(eqn)
        elif name == 'conv_general_dilated':
            total += _conv_flops(eqn)
        elif name == 'scan':
            total += eqn.params['length'] * jaxpr_flops(eqn.params['jaxpr'].jaxpr)
        elif name == 'cond':  # one branch runs: the dearest bounds it
            total += max(jaxpr_flops(branch.jaxpr) for branch in eqn.params['branches'])
        else:
            total += sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn.params))
    return total


def matmul_flops(fn, *args) -> int:
    """Matrix-product FLOPs of one call of `fn(*args)`, counted from the traced shapes."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def matmul_chain(length: int, batch: int = 256, width: int = 512):
    """jit(x -> x @ W_1 @ ... @ W_length) on [batch, width] float32 with scaled random weights,
    and its FLOPs per call."""
    weights = jax.random.normal(jax.random.PRNGKey(0), (length, width, width), jnp.float32) / math.sqrt(width)

    @jax.jit
    def chain(x):
        return jax.lax.scan(lambda h, w: (h @ w, None), x, weights)[0]

    return chain, 2 * length * batch * width * width


def matmul_peak(seconds: float = 2.0, length: int = 64, batch: int = 256, width: int = 512) -> float:
    """FLOP/s of the batch-`batch` `width` x `width` product chain, best of the calls made in
    about `seconds` (after a compile-and-warm-up call)."""
    chain, flops = matmul_chain(length, batch, width)
    x = jnp.ones((batch, width), jnp.float32)
    jax.block_until_ready(chain(x))
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == math.inf:
        start = time.perf_counter()
        jax.block_until_ready(chain(x))
        best = min(best, time.perf_counter() - start)
    return flops / best
