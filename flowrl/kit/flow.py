"""Flow-matching math shared by the flow agents.

Convention (docs/ALGORITHMS.md): t = 0 is Gaussian noise x0, t = 1 is the action x1; linear path
x_t = (1 - t) x0 + t x1 with conditional velocity x1 - x0; Euler on the grid t_k = k / K.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from flowrl.kit.encoders import apply_head, encode, without_encoder

# velocity(x, t) -> dx/dt, with x of shape (..., action_dim) and t of shape (..., 1).
Field = Callable[[jax.Array, jax.Array], jax.Array]


def interpolate(x0, x1, t):
    """Point on the linear path at time t (t broadcasts against the last axis)."""
    return (1.0 - t) * x0 + t * x1


def sample_path_points(rng, actions):
    """Draws x0 ~ N(0, I) and t ~ U(0, 1) per sample; returns (x0, t, x_t, target velocity)."""
    noise_rng, time_rng = jax.random.split(rng)
    x0 = jax.random.normal(noise_rng, actions.shape, actions.dtype)
    t = jax.random.uniform(time_rng, actions.shape[:-1] + (1,), actions.dtype)
    return x0, t, interpolate(x0, actions, t), actions - x0


def flow_matching_errors(velocity: Field, actions, rng):
    """Per-sample conditional flow-matching error, averaged over action dims: shape (...,).

    Averaging (not summing) over action dims fixes the scale of alpha/beta/lambda so the
    published hyperparameters transfer (docs/ALGORITHMS.md).
    """
    _, t, x_t, target = sample_path_points(rng, actions)
    return jnp.mean((velocity(x_t, t) - target) ** 2, axis=-1)


def flow_matching_loss(velocity: Field, actions, rng):
    """Mean conditional flow-matching loss over batch x action dims."""
    return jnp.mean(flow_matching_errors(velocity, actions, rng))


def euler_integrate(velocity: Field, x0, steps: int, clip: bool = True):
    """Integrates dx/dt = velocity(x, t) from t = 0 to 1 in `steps` uniform Euler steps.

    x <- x + velocity(x, k / K) / K for k = 0..K-1; the result is clipped to [-1, 1] (the
    action box) unless clip=False.
    """
    dt = 1.0 / steps

    def step(k, x):
        t = jnp.full(x.shape[:-1] + (1,), k * dt, x.dtype)
        return x + velocity(x, t) * dt

    x = jax.lax.fori_loop(0, steps, step, x0)
    return jnp.clip(x, -1.0, 1.0) if clip else x


def euler_samples(net, params, observations, noises, steps: int):
    """Clipped Euler samples of the velocity network `net` (v(s, x, t), with its `params`) at
    `observations`, starting from `noises`: the flow sampler of flow BC, FQL, QFQL, FlowQ, QIPO
    and IFQL. An image encoder runs once, not once per Euler step."""
    return euler_from_features(net, params, encode(net, params, observations), noises, steps)


def euler_from_features(net, params, features, noises, steps: int):
    """`euler_samples` from the observations' features (`flowrl.kit.encoders.encode`), so that a
    caller that repeats an observation (several samples per state) can encode it once."""
    return euler_integrate(lambda x, t: apply_head(net, params, features, x, t), noises, steps)


def sample_flow(net, params, observations, rng, steps: int):
    """`euler_samples` from fresh noise x0 ~ N(0, I) of shape [batch..., net's action_dim]."""
    features = encode(net, params, observations)
    noises = jax.random.normal(rng, features.shape[:-1] + (action_dim(net),))
    return euler_from_features(net, params, features, noises, steps)


def action_dim(net) -> int:
    """The action size of a velocity network, with or without an image encoder."""
    return without_encoder(net).action_dim
