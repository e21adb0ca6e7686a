"""Network building blocks shared by every agent (Flax linen, functional params).

Defaults follow docs/ALGORITHMS.md so agents stay comparable: 4 x 512 MLPs, GELU, Xavier-uniform
kernels, zero biases, a linear last layer; LayerNorm after each hidden activation in critics.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def xavier_uniform(scale: float = 1.0):
    """Xavier-uniform (`variance_scaling(scale, 'fan_avg', 'uniform')`) kernel initialiser."""
    return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


class MLP(nn.Module):
    """Dense -> GELU (-> LayerNorm) per hidden layer, then a linear output layer; with
    `output_dim=None` no output layer: the last hidden features (a trunk shared by several heads)."""

    hidden_dims: Sequence[int]
    output_dim: int | None
    layer_norm: bool = False
    final_init_scale: float = 1.0  # ReBRAC's actor uses 0.01 so initial actions are near 0.

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=xavier_uniform())(x)
            x = nn.gelu(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        if self.output_dim is None:
            return x
        return nn.Dense(self.output_dim, kernel_init=xavier_uniform(self.final_init_scale))(x)


class Ensemble(nn.Module):
    """`num` independent MLPs with scalar output on concat(inputs); returns shape (num, ...batch).

    Used for twin critics Q(s, a) and (with num=1) value functions V(s). The members share
    nothing: parameters carry a leading axis of size `num` (nn.vmap).
    """

    hidden_dims: Sequence[int]
    num: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, *inputs):
        x = jnp.concatenate(inputs, axis=-1)
        members = nn.vmap(
            MLP,
            variable_axes={'params': 0},
            split_rngs={'params': True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return members(self.hidden_dims, 1, self.layer_norm)(x)[..., 0]


class VelocityField(nn.Module):
    """Flow velocity v(s, x, t) on concat[s, x, t] with the raw scalar time t in [0, 1]."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations, x, t):
        # t has shape (..., 1): one time per sample, fed raw (no embedding) as in FQL.
        inputs = jnp.concatenate([observations, x, t], axis=-1)
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm)(inputs)


class ConditionedPolicy(nn.Module):
    """A deterministic map concat[s, extra...] -> action (FQL's one-step policy mu(s, z))."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    final_init_scale: float = 1.0

    @nn.compact
    def __call__(self, *inputs):
        x = jnp.concatenate(inputs, axis=-1)
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm, self.final_init_scale)(x)


def apply_named(nets: dict, name: str, params: dict, *inputs):
    """Applies network `name` of an agent's `nets` with its entry of the `params` dict."""
    return nets[name].apply({'params': params[name]}, *inputs)
