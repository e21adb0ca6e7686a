"""Flow math against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.kit.flow import euler_integrate, flow_matching_errors, flow_matching_loss, interpolate, sample_path_points


def test_euler_on_constant_field_moves_by_the_constant():
    x0 = jnp.array([[0.1, -0.2], [0.0, 0.3]])
    c = jnp.array([0.25, -0.5])
    x1 = euler_integrate(lambda x, t: jnp.broadcast_to(c, x.shape), x0, steps=7, clip=False)
    np.testing.assert_allclose(x1, x0 + c, rtol=1e-6)


def test_euler_on_linear_field_matches_discrete_closed_form():
    # dx/dt = a x: K Euler steps multiply by (1 + a/K)^K (-> e^a as K grows).
    a, steps = 0.7, 10
    x0 = jnp.array([[1.0], [-0.5]])
    x1 = euler_integrate(lambda x, t: a * x, x0, steps=steps, clip=False)
    np.testing.assert_allclose(x1, x0 * (1 + a / steps) ** steps, rtol=1e-5)


def test_euler_uses_the_left_grid_times():
    # dx/dt = t: Euler sums k/K * 1/K for k = 0..K-1 = (K - 1) / (2K), not the exact 1/2.
    steps = 4
    x1 = euler_integrate(lambda x, t: jnp.broadcast_to(t, x.shape), jnp.zeros((1, 1)), steps=steps, clip=False)
    np.testing.assert_allclose(x1, [[(steps - 1) / (2 * steps)]], rtol=1e-6)


def test_euler_clips_to_the_action_box():
    x1 = euler_integrate(lambda x, t: jnp.full_like(x, 5.0), jnp.zeros((2, 3)), steps=3)
    np.testing.assert_array_equal(x1, jnp.ones((2, 3)))


def test_interpolation_endpoints_and_midpoint():
    x0, x1 = jnp.array([[-1.0, 2.0]]), jnp.array([[3.0, 0.0]])
    np.testing.assert_allclose(interpolate(x0, x1, 0.0), x0)
    np.testing.assert_allclose(interpolate(x0, x1, 1.0), x1)
    np.testing.assert_allclose(interpolate(x0, x1, 0.5), [[1.0, 1.0]])


def test_flow_matching_loss_of_the_exact_conditional_velocity_is_zero():
    actions = jnp.array([[0.3, -0.4], [0.9, 0.1], [0.0, 0.0]])
    rng = jax.random.PRNGKey(0)
    x0, t, x_t, target = sample_path_points(rng, actions)
    np.testing.assert_allclose(target, actions - x0)
    np.testing.assert_allclose(x_t, (1 - t) * x0 + t * actions, rtol=1e-6)
    # x1 - x0 written as a function of (x_t, t): (x1 - x_t) / (1 - t).
    exact = lambda x, tt: (actions - x) / (1 - tt)
    assert float(flow_matching_loss(exact, actions, rng)) < 1e-8


def test_flow_matching_errors_average_over_action_dims():
    actions = jnp.array([[0.5, -0.5, 0.25]])
    rng = jax.random.PRNGKey(1)
    x0, _, _, _ = sample_path_points(rng, actions)
    errors = flow_matching_errors(lambda x, t: jnp.zeros_like(x), actions, rng)
    np.testing.assert_allclose(errors, jnp.mean((actions - x0) ** 2, axis=-1), rtol=1e-6)
    assert errors.shape == (1,)
