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
import jax
import jax.numpy as jnp
from jax import lax

from flowrl.errors import UserError
from flowrl.kit.networks import MLP, xavier_uniform

IMAGE_RANK = 3  # an image observation is [H, W, C]
IMAGE_LAYOUT = ('NHWC', 'HWIO', 'NHWC')  # Flax's convolution layout


def _plain_conv(x, kernel, pads):
    return lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=IMAGE_LAYOUT)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_with_canonical_grads(x, kernel, pads):
    """A stride-1 NHWC/HWIO convolution whose gradients are themselves plain NHWC/HWIO
    convolutions of explicitly transposed operands.

    Why: XLA:CPU rewrites the kernel gradient of a convolution into its fast (Eigen) layout only
    outside loops; inside a while loop (flowrl's compiled chunk of updates) it runs a naive
    kernel, 70x slower for IMPALA's first convolution at batch 256 (0.30 s vs 21 s, measured
    2026-12-04, jax 0.10.2; jax-ml/jax#12868). Written here in the canonical layout, the
    gradient is as fast inside the loop as outside. The values equal lax's own gradients."""
    return _plain_conv(x, kernel, pads)


def _conv_forward(x, kernel, pads):
    return _plain_conv(x, kernel, pads), (x, kernel)


def _conv_backward(pads, residuals, dy):
    x, kernel = residuals
    # dx: the output gradient convolved with the kernel flipped in space, in/out swapped.
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    dx_pads = tuple((size - 1 - lo, size - 1 - hi) for size, (lo, hi) in zip(kernel.shape[:2], pads))
    dx = _plain_conv(dy, flipped, dx_pads)
    # dkernel[i, j, c, d] = sum_{n,h,w} x_padded[n, h+i, w+j, c] dy[n, h, w, d]: a convolution of
    # x as [C, H, W, N] (channels as the batch) with dy as an [Ho, Wo, N, D] kernel.
    dkernel = _plain_conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), pads).transpose(1, 2, 0, 3)
    return dx, dkernel


conv_with_canonical_grads.defvjp(_conv_forward, _conv_backward)


def loop_friendly_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                       dimension_numbers=None, feature_group_count=1, **kwargs):
    """`lax.conv_general_dilated` for flax's nn.Conv that, on the CPU backend, takes
    `conv_with_canonical_grads` for the convolutions it covers (2-D, stride 1, undilated,
    ungrouped, NHWC/HWIO); other backends and cases use lax's own convolution unchanged."""
    extras_are_defaults = all(kwargs.get(name, default) == default for name, default in
                              (('batch_group_count', 1), ('precision', None), ('preferred_element_type', None)))
    covered = (jax.default_backend() == 'cpu' and lhs.ndim == 4 and feature_group_count == 1 and extras_are_defaults
               and all(s == 1 for s in window_strides)
               and all(d == 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
               and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
               == lax.conv_dimension_numbers(lhs.shape, rhs.shape, IMAGE_LAYOUT))
    if not covered:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, **kwargs)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    return conv_with_canonical_grads(lhs, rhs, tuple(tuple(int(p) for p in pair) for pair in padding))


class ResidualStack(nn.Module):
    """conv 3x3 -> max-pool 3x3 / 2 -> `num_blocks` x (relu, conv, relu, conv, + input)."""

    features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(nn.Conv, self.features, (3, 3), strides=1, padding='SAME',
                                 kernel_init=xavier_uniform(), conv_general_dilated=loop_friendly_conv)
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
