"""FLOPs counted from traced shapes (flowrl/engine/costs.py): products by hand, loop bodies times their
trip counts (which XLA's cost analysis counts once), gradients, and the peak benchmark's chain."""

import jax
import jax.numpy as jnp

from flowrl.engine.costs import matmul_chain, matmul_flops


def test_products_and_loops_by_hand():
    x, w = jnp.ones((3, 4)), jnp.ones((4, 5))
    assert matmul_flops(lambda x, w: x @ w, x, w) == 2 * 3 * 5 * 4
    square = jnp.ones((4, 4))
    assert matmul_flops(lambda x: jax.lax.fori_loop(0, 7, lambda i, h: h @ square, x), x) == 7 * 2 * 3 * 4 * 4
    scanned = lambda x: jax.lax.scan(lambda h, _: (h @ square, None), x, None, length=5)[0]
    assert matmul_flops(jax.jit(scanned), x) == 5 * 2 * 3 * 4 * 4  # through the pjit too
    batched = jnp.ones((2, 3, 4))
    assert matmul_flops(lambda a, b: jnp.einsum('bij,bjk->bik', a, b), batched, jnp.ones((2, 4, 6))) == 2 * 2 * 3 * 6 * 4
    # cond: the dearer branch
    assert matmul_flops(lambda p, x: jax.lax.cond(p, lambda: x @ w, lambda: jnp.zeros((3, 5))), True, x) == 120


def test_a_gradient_counts_its_backward_products():
    """d/dw sum(x @ w) needs x^T @ g (and d/dx would need g @ w^T): forward 120, backward one more product."""
    x, w = jnp.ones((3, 4)), jnp.ones((4, 5))
    assert matmul_flops(jax.grad(lambda w: jnp.sum(x @ w)), w) == 2 * 120
    assert matmul_flops(jax.grad(lambda x, w: jnp.sum(x @ w), argnums=(0, 1)), x, w) == 3 * 120


def test_the_peak_chain_reports_its_own_flops():
    chain, flops = matmul_chain(3, batch=8, width=16)
    assert flops == 3 * 2 * 8 * 16 * 16 == matmul_flops(chain, jnp.ones((8, 16)))
