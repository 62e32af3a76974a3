"""Building blocks shared by the generators and the discriminator.

SPADE normalisation (Park et al., CVPR 2019), the ResNet blocks of the
generators (norm -> ReLU -> conv, twice, with reflection padding; Brock et
al. and Park et al. order) in a plain and a SPADE flavour, the strided
downsampler of the encoders, and the spectral-norm policy.

Order inside a ResNet block (``block_order`` of the generator config):

- ``"geosynth"`` (default): norm -> ReLU -> reflection pad -> 3 x 3 conv. The
  norm sees the feature map itself, and a SPADE layer's label map is the
  features' own grid.
- ``"authors"``: reflection pad -> norm -> ReLU -> 3 x 3 conv, as the code
  published with the paper (``ResnetBasicBlock``). In train mode BatchNorm's
  batch statistics then include the reflected border (each edge row and column
  counted twice); and a SPADE layer normalises the padded (h + 2) x (w + 2)
  map, so its label map is resized to (h + 2) x (w + 2) from the full
  resolution: the gamma and beta of output cell ``r`` come from label row
  ``floor((r + 1) * H / (h + 2))`` (nearest), up to one feature cell off the
  cell they modulate, in eval mode too.

Where spectral norm goes (``spectral_norm`` of the network configs):

- ``"all"`` (default): every convolution of G and D,
  including SPADE's small MLP, the 1 x 1 shortcuts and D's first and last conv;
- ``"reference"``: the code published with the paper: its placement (G's
  main-path convolutions: stem, downsamplers, ResNet convs, output conv; D's
  middle convolutions; not SPADE's MLP, the shortcuts, nor D's first and last
  conv) and its computation, that of ``torch.nn.utils.spectral_norm``: no
  power iteration at construction, then per training forward ``v`` before
  ``u``, and ``W / sigma``;
- ``"none"``: no spectral norm.

Spectral norm adds buffers, not parameters, so the parameter counts are the
same under all three.

Acquisition conditions (``cond`` > 0, the width of the generator's shared
condition embedding): every normalisation layer gets a FiLM scale and shift
(Perez et al. 2018), a linear map of the embedding of the condition vector
(:class:`ConditionEmbedding`, an MLP computed once per forward). In a SPADE
layer they are added to SPADE's own modulation, ``BN(x) * (1 + gamma(labels)
+ gamma_c) + beta(labels) + beta_c``; after a plain BatchNorm they act alone.
The FiLM maps start at zero, so a conditioned network starts as the plain
one. With ``cond`` 0 (the default) no module is added and the networks are
exactly the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from geosynth.ml.networks.configs import COND_HIDDEN, SPADE_HIDDEN


def spectral_on(mode: str, main_path: bool) -> str | None:
    """The spectral norm of a convolution: main-path convs unless ``none``, others only under
    ``all``; the ``mode`` (``"all"`` or ``"reference"``: how it computes), or None (none)."""
    return mode if mode == "all" or (mode == "reference" and main_path) else None


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
    spectral: str | None = None,
) -> nn.Module:
    """A ``Conv2d``, spectrally normalised when ``spectral`` (a parametrization, no extra
    parameters; ``"reference"``: computed as ``torch.nn.utils.spectral_norm``)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
    )
    if spectral:
        norm = SpectralNorm(conv.weight, reference=spectral == "reference")
        parametrize.register_parametrization(conv, "weight", norm)
    return conv


class SpectralNorm(nn.Module):
    """Spectral normalisation (Miyato et al. 2018) as a parametrization: ``W / sigma(W)``.

    ``torch.nn.utils.parametrizations.spectral_norm`` for a conv weight, with
    the same state (buffers ``_u`` and ``_v``, initialised from the same random
    draws, 15 power iterations (``u`` then ``v``), then one per training
    forward), so checkpoints load either way; but it scales by ``1 / sigma``
    where torch divides by ``sigma``: the same value, and a backward pass of two
    multiplications instead of four elementwise passes over the weight (the
    G + D step about 6 % faster on CPU at capacity 16, where G has 25 M
    spectrally normalised weights).

    ``reference``: computed as the older ``torch.nn.utils.spectral_norm`` (the
    code published with the paper): no iteration at construction, each power
    iteration updates ``v`` before ``u``, and the weight is divided by ``sigma``.
    Its ``weight_orig``, ``weight_u`` and ``weight_v`` are this module's
    ``original``, ``_u`` and ``_v``.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
        reference: bool = False,
    ):
        super().__init__()
        matrix = weight.detach().flatten(1)  # (out, in * kh * kw)
        self.n_power_iterations, self.eps, self.reference = n_power_iterations, eps, reference
        u = F.normalize(matrix.new_empty(matrix.shape[0]).normal_(0, 1), dim=0, eps=eps)
        v = F.normalize(matrix.new_empty(matrix.shape[1]).normal_(0, 1), dim=0, eps=eps)
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)
        if not reference:
            self._power_method(matrix, 15)

    @torch.no_grad()
    def _power_method(self, matrix: torch.Tensor, iterations: int) -> None:
        # in place: the buffers stay the module's own under DataParallel-style replication
        for _ in range(iterations):
            if self.reference:  # v, then u
                F.normalize(torch.mv(matrix.t(), self._u), dim=0, eps=self.eps, out=self._v)
                F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps, out=self._u)
            else:  # u, then v
                F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps, out=self._u)
                F.normalize(torch.mv(matrix.H, self._u), dim=0, eps=self.eps, out=self._v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        matrix = weight.flatten(1)
        if self.training:
            self._power_method(matrix, self.n_power_iterations)
        # clones: a later forward's in-place update must not change this one's backward
        u, v = self._u.clone(), self._v.clone()
        if self.reference:
            return weight / torch.dot(u, torch.mv(matrix, v))
        sigma = torch.vdot(u, torch.mv(matrix, v))
        return weight * sigma.reciprocal()


class LabelPyramid:
    """A one-hot label map at every resolution the network asks for, each computed once.

    SPADE layers at the same resolution share the downsampled map instead of
    interpolating the full-resolution map again in every layer. ``cond``: the
    embedded acquisition conditions ``(B, COND_HIDDEN)`` the FiLM layers read
    (a pyramid without labels carries only them, for networks without SPADE).
    """

    def __init__(self, labels: torch.Tensor | None, cond: torch.Tensor | None = None):
        self.labels = labels  # (B, L, H, W)
        self.cond = cond  # (B, COND_HIDDEN) or None
        self._levels: dict[tuple[int, int], torch.Tensor] = (
            {} if labels is None else {tuple(labels.shape[-2:]): labels}
        )

    def at(self, size: Sequence[int]) -> torch.Tensor:
        """The label map at ``size`` (H, W), nearest-neighbour downsampled."""
        if self.labels is None:
            raise ValueError("this pyramid carries conditions only, no label map")
        key = (int(size[0]), int(size[1]))
        if key not in self._levels:
            self._levels[key] = F.interpolate(self.labels, size=key, mode="nearest")
        return self._levels[key]  # (B, L, h, w)


def _cond_of(labels: LabelPyramid | None) -> torch.Tensor | None:
    return None if labels is None else labels.cond


class ConditionEmbedding(nn.Module):
    """The generator's shared MLP: condition vector ``(B, D)`` -> ``(B, COND_HIDDEN)``."""

    def __init__(self, condition_dim: int, hidden: int = COND_HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(condition_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )

    def forward(self, conditions: torch.Tensor) -> torch.Tensor:
        return self.net(conditions)


class FiLM(nn.Module):
    """Per-channel scale and shift ``(gamma_c, beta_c)`` from the condition embedding.

    Zero-initialised: the layer is the identity until training moves it.
    """

    def __init__(self, channels: int, hidden: int = COND_HIDDEN):
        super().__init__()
        self.linear = nn.Linear(hidden, 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gamma, beta = self.linear(cond).chunk(2, dim=1)  # (B, C) each
        return gamma[:, :, None, None], beta[:, :, None, None]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.params(cond)
        return x * (1 + gamma) + beta


def _film(channels: int, cond: int) -> FiLM | None:
    return FiLM(channels, cond) if cond else None


def _norm(norm: nn.Module, film: FiLM | None, x: torch.Tensor, labels) -> torch.Tensor:
    """A plain BatchNorm, then FiLM when the network is conditioned."""
    x = norm(x)
    if film is not None:
        cond = _cond_of(labels)
        if cond is None:
            raise ValueError("a conditioned layer needs the condition embedding")
        x = film(x, cond)
    return x


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``BatchNorm(x) * (1 + gamma(labels)) + beta(labels)``.

    ``affine`` keeps BatchNorm's own scale and shift as the code published with
    the paper does (``nn.BatchNorm2d(c)``); SPADE's paper uses a parameter-free
    BatchNorm (``affine=False``), which has ``2 * channels`` fewer parameters.
    ``groups`` > 0 normalises by GroupNorm instead (the diffusion generator).

    ``gamma`` and ``beta`` are two convolutions (two weights, each with its own
    spectral norm), but with ``fused`` (the default) they run as ONE
    convolution over the shared activations, their weights concatenated along
    the output channels: the same result, with the hidden activations read
    once and one input gradient instead of two in the backward pass (CPU: the
    G + D step about 8 % faster at capacity 16). ``fused = False`` runs them
    separately, as SPADE's and the paper's code do (``benchmarks/train_step.py``).
    """

    fused: bool = True

    def __init__(
        self,
        channels: int,
        label_channels: int,
        *,
        hidden: int = SPADE_HIDDEN,
        affine: bool = True,
        spectral: str | None = None,
        cond: int = 0,
        groups: int = 0,
    ):
        super().__init__()
        # groups > 0: GroupNorm (the diffusion generator's: its statistics must not depend
        # on the batch's noise levels), else BatchNorm as the paper's
        self.norm = (
            nn.GroupNorm(groups, channels, affine=affine)
            if groups
            else nn.BatchNorm2d(channels, affine=affine)
        )
        self.shared = nn.Sequential(
            conv2d(label_channels, hidden, 3, padding=1, spectral=spectral), nn.ReLU()
        )
        self.gamma = conv2d(hidden, channels, 3, padding=1, spectral=spectral)
        self.beta = conv2d(hidden, channels, 3, padding=1, spectral=spectral)
        if cond:
            self.film = FiLM(channels, cond)

    def forward(self, x: torch.Tensor, labels: LabelPyramid) -> torch.Tensor:
        # Part 1: normalise the activations
        normalized = self.norm(x)  # (B, C, H, W)
        # Part 2: scale and shift predicted from the label map at this resolution
        actv = self.shared(labels.at(x.shape[-2:]))  # (B, hidden, H, W)
        if self.fused:
            weight = torch.cat([self.gamma.weight, self.beta.weight])  # (2C, hidden, 3, 3)
            bias = torch.cat([self.gamma.bias, self.beta.bias])
            gamma, beta = F.conv2d(actv, weight, bias, padding=self.gamma.padding).chunk(2, dim=1)
        else:
            gamma, beta = self.gamma(actv), self.beta(actv)
        if hasattr(self, "film"):  # Part 3: plus the acquisition conditions' (B, C, 1, 1)
            if labels.cond is None:
                raise ValueError("a conditioned SPADE layer needs the condition embedding")
            gamma_c, beta_c = self.film.params(labels.cond)
            gamma, beta = gamma + gamma_c, beta + beta_c
        return normalized * (1 + gamma) + beta


class _ResBlockBase(nn.Module):
    """Two (norm, ReLU, 3 x 3 conv) units with reflection padding, plus a shortcut.

    The shortcut is the identity, or a 1 x 1 conv without bias when the width
    changes. ``pad_first``: pad before the norm (the code published with the
    paper: ``block_order="authors"``), else right before each convolution
    (``"geosynth"``); see the module docstring. The parameters are the same.
    """

    def __init__(
        self, in_channels: int, out_channels: int, spectral_mode: str, pad_first: bool = False
    ):
        super().__init__()
        main = spectral_on(spectral_mode, main_path=True)
        self.pad_first = pad_first
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = conv2d(in_channels, out_channels, 3, spectral=main)
        self.conv2 = conv2d(out_channels, out_channels, 3, spectral=main)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = conv2d(
                in_channels,
                out_channels,
                1,
                bias=False,
                spectral=spectral_on(spectral_mode, main_path=False),
            )

    def _normalize(self, i: int, x: torch.Tensor, labels: LabelPyramid | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, labels: LabelPyramid | None = None) -> torch.Tensor:
        out = x  # (B, C_in, H, W)
        for i, conv in ((1, self.conv1), (2, self.conv2)):
            if self.pad_first:  # (B, C, H + 2, W + 2) normalised, then the conv
                out = conv(F.relu(self._normalize(i, self.pad(out), labels)))
            else:
                out = conv(self.pad(F.relu(self._normalize(i, out, labels))))
        return out + (x if self.shortcut is None else self.shortcut(x))  # (B, C_out, H, W)


class ResBlock(_ResBlockBase):
    """Plain ResNet block with BatchNorm (pix2pixHD generator body and decoder)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spectral_mode: str = "all",
        cond: int = 0,
        pad_first: bool = False,
    ):
        super().__init__(in_channels, out_channels, spectral_mode, pad_first)
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.film1, self.film2 = _film(in_channels, cond), _film(out_channels, cond)

    def _normalize(self, i: int, x: torch.Tensor, labels: LabelPyramid | None) -> torch.Tensor:
        norm, film = (self.norm1, self.film1) if i == 1 else (self.norm2, self.film2)
        return _norm(norm, film, x, labels)


class SPADEResBlock(_ResBlockBase):
    """ResNet block whose two norms are SPADE layers conditioned on the label map."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        label_channels: int,
        *,
        hidden: int = SPADE_HIDDEN,
        affine: bool = True,
        spectral_mode: str = "all",
        cond: int = 0,
        pad_first: bool = False,
    ):
        super().__init__(in_channels, out_channels, spectral_mode, pad_first)
        aux = spectral_on(spectral_mode, main_path=False)
        kw = dict(hidden=hidden, affine=affine, spectral=aux, cond=cond)
        self.norm1 = SPADE(in_channels, label_channels, **kw)
        self.norm2 = SPADE(out_channels, label_channels, **kw)

    def _normalize(self, i: int, x: torch.Tensor, labels: LabelPyramid | None) -> torch.Tensor:
        return (self.norm1 if i == 1 else self.norm2)(x, labels)


class Downsample(nn.Module):
    """Stride-2 3 x 3 conv, then BatchNorm (or SPADE when ``label_channels``) and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        label_channels: int = 0,
        hidden: int = SPADE_HIDDEN,
        affine: bool = True,
        spectral_mode: str = "all",
        cond: int = 0,
    ):
        super().__init__()
        self.film = None
        self.conv = conv2d(
            in_channels,
            out_channels,
            3,
            stride=2,
            padding=1,
            spectral=spectral_on(spectral_mode, main_path=True),
        )
        if label_channels:
            aux = spectral_on(spectral_mode, main_path=False)
            self.norm = SPADE(
                out_channels, label_channels, hidden=hidden, affine=affine, spectral=aux, cond=cond
            )
        else:
            self.norm = nn.BatchNorm2d(out_channels)
            self.film = _film(out_channels, cond)

    def forward(self, x: torch.Tensor, labels: LabelPyramid | None = None) -> torch.Tensor:
        x = self.conv(x)  # (B, C_out, H/2, W/2)
        if isinstance(self.norm, SPADE):
            x = self.norm(x, labels)
        else:
            x = _norm(self.norm, self.film, x, labels)
        return F.relu(x)


def stem(
    in_channels: int, out_channels: int, kernel_size: int, spectral_mode: str
) -> nn.Sequential:
    """Reflection-padded conv and ReLU without normalisation: the first layer of a generator."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel_size // 2),
        conv2d(
            in_channels,
            out_channels,
            kernel_size,
            spectral=spectral_on(spectral_mode, main_path=True),
        ),
        nn.ReLU(),
    )


def to_image(in_channels: int, out_channels: int, spectral_mode: str) -> nn.Sequential:
    """Reflection-padded 3 x 3 conv and tanh: the output layer of a generator."""
    return nn.Sequential(
        nn.ReflectionPad2d(1),
        conv2d(in_channels, out_channels, 3, spectral=spectral_on(spectral_mode, main_path=True)),
        nn.Tanh(),
    )
