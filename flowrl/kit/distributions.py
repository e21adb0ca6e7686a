"""Diagonal Gaussian and tanh-squashed Gaussian policies: sampling and log densities.

Log densities are summed over action dimensions. The tanh correction is taken on the
pre-squash sample u, `log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u))`, which stays finite
where `log(1 - tanh(u)^2)` would take the log of 0 (|u| > ~9 in float32).
"""

import math

import jax
import jax.numpy as jnp

LOG_STD_RANGE = (-5.0, 2.0)  # bounds of a learned log std, as in OGBench's and the FQL code's actors


def gaussian_log_prob(actions, mean, log_std):
    """log N(actions; mean, diag(exp(log_std))^2), summed over action dims."""
    z = (actions - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def tanh_log_det_jacobian(pre_tanh):
    """sum_i log(1 - tanh(u_i)^2), computed without cancellation for large |u|."""
    return jnp.sum(2.0 * (math.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)


def sample_and_log_prob(mean, log_std, rng, tanh_squash: bool):
    """A reparameterised sample `mean + std * eps` (squashed by tanh when `tanh_squash`) and its
    log density under the (squashed) Gaussian; gradients reach `mean` and `log_std`."""
    pre_tanh = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape)
    log_prob = gaussian_log_prob(pre_tanh, mean, log_std)
    if not tanh_squash:
        return pre_tanh, log_prob
    return jnp.tanh(pre_tanh), log_prob - tanh_log_det_jacobian(pre_tanh)
