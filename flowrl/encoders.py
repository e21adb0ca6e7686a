"""Image encoders for pixel observations (config key `encoder`; None for state observations).

The IMPALA residual encoder (Espeholt et al. 2018) in the variants the FQL authors use for
OGBench's visual tasks: each stack is a 3x3 convolution, a 3x3 max-pool of stride 2 and
`num_blocks` residual blocks (ReLU, conv, ReLU, conv, + input); then ReLU, flatten and one
GELU layer of 512 features. Kernels are Xavier-uniform and biases zero, as everywhere in
flowrl. Images enter as uint8 [..., H, W, C] (C = 3 x frames stacked) and are scaled to [0, 1]
inside the network, so they stay uint8 in memory and on the device.

'impala_small' (one block per stack) is the encoder of every published visual command.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowrl.errors import UserError
from flowrl.networks import MLP, xavier_uniform

IMAGE_RANK = 3  # an image observation is [H, W, C]


class ResidualStack(nn.Module):
    """conv 3x3 -> max-pool 3x3 / 2 -> `num_blocks` x (relu, conv, relu, conv, + input)."""

    features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(nn.Conv, self.features, (3, 3), strides=1, padding='SAME',
                                 kernel_init=xavier_uniform())
        x = conv()(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
        for _ in range(self.num_blocks):
            y = conv()(nn.relu(x))
            x = x + conv()(nn.relu(y))
        return x


class ImpalaEncoder(nn.Module):
    """uint8 images [..., H, W, C] -> features [..., mlp_dims[-1]]."""

    stack_sizes: Sequence[int] = (16, 32, 32)
    num_blocks: int = 2
    mlp_dims: Sequence[int] = (512,)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, images):
        x = images.astype(jnp.float32) / 255.0
        for features in self.stack_sizes:
            x = ResidualStack(features, self.num_blocks)(x)
        x = nn.relu(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = x.reshape(x.shape[:-IMAGE_RANK] + (-1,))
        return MLP(self.mlp_dims, output_dim=None, layer_norm=self.layer_norm)(x)


ENCODERS = {
    'impala': ImpalaEncoder,
    'impala_small': functools.partial(ImpalaEncoder, num_blocks=1),
    'impala_large': functools.partial(ImpalaEncoder, stack_sizes=(64, 128, 128), mlp_dims=(1024,)),
    'impala_debug': functools.partial(ImpalaEncoder, stack_sizes=(4, 4), num_blocks=1),  # tests
}


def make_encoder(name: str) -> nn.Module:
    if name not in ENCODERS:
        raise UserError(f'Unknown encoder {name!r}; use one of {", ".join(ENCODERS)} (or leave it unset for '
                        'state observations).')
    return ENCODERS[name]()


class WithEncoder(nn.Module):
    """A network whose first input (observations) passes through its own `encoder` first.
    Params: {'encoder': ..., 'net': ...}."""

    encoder: nn.Module
    net: nn.Module

    def __call__(self, observations, *rest):
        return self.net(self.encoder(observations), *rest)


def with_encoders(networks):
    """Decorates an agent's `networks(config)`: with `config.encoder` set, every network gets its
    own encoder of that kind (as in the authors' code: nothing is shared between networks);
    unset, the networks are returned unchanged, with the same params as without the decorator.
    Every flowrl network takes observations as its first input."""

    @functools.wraps(networks)
    def build(config):
        nets = networks(config)
        name = config.get('encoder')
        if name is None:
            return nets
        return {key: WithEncoder(make_encoder(name), net) for key, net in nets.items()}

    return build


def encode(net, params, observations):
    """The features `net` computes from `observations` before anything else: its encoder's
    output, or the observations themselves for a network without one. With `apply_head`, a
    network evaluated several times at one observation (Euler steps, candidate actions) encodes
    it once."""
    if isinstance(net, WithEncoder):
        return net.encoder.apply({'params': params['encoder']}, observations)
    return observations


def apply_head(net, params, features, *rest):
    """`net` applied to `encode(net, params, observations)` and its other inputs."""
    if isinstance(net, WithEncoder):
        return net.net.apply({'params': params['net']}, features, *rest)
    return net.apply({'params': params}, features, *rest)


def repeated_features(net, params, observations, num: int, axis: int = 0):
    """`encode(net, params, observations)` repeated `num` times along a new `axis`: several
    actions scored or sampled at one observation share one encoding."""
    features = encode(net, params, observations)
    return jnp.repeat(jnp.expand_dims(features, axis), num, axis=axis)


def without_encoder(net):
    """The network that `net` applies to its features."""
    return net.net if isinstance(net, WithEncoder) else net


def batch_shape(config, observations) -> tuple:
    """The leading (batch) axes of `observations`: all but the last (a state vector) or, with an
    image encoder, all but the last three ([H, W, C])."""
    rank = IMAGE_RANK if config.get('encoder') is not None else 1
    return observations.shape[:observations.ndim - rank]
