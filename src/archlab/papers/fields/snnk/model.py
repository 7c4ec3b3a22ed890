"""Scalable Neural Network Kernels (SNNK).

Arijit Sehanobish, Krzysztof Choromanski, Yunfan Zhao, Avinava Dubey, Valerii Likhosherstov,
ICLR 2024, arXiv 2310.13225. Official code: github.com/arijitthegame/neural-network-kernels.
Paper card and deviations: README.md beside this file.

A feed-forward neuron ``f(w^T x + b)`` is rewritten as a dot product of random features of the
input and of the parameters, ``f(w^T x + b) ~ Phi(x)^T Psi(w, b)`` (``FeatureMap``), so a layer's
output is ``Psi(W, b) Phi(x)`` (``SNNKLayer``): inputs and parameters meet only in the final dot
product. The maps:

- ``exp``: positive random features (Performer's FAVOR+ trick), exact in expectation:
  ``exp(w^T x) = E_omega[exp(omega^T x - |x|^2/2) exp(omega^T w - |w|^2/2)]``, ``omega ~ N(0, I)``.
- ``cos``, ``sin``, ``gauss`` (``exp(-z^2/2)``): universal random features (URFs). With the
  Fourier representation ``f(z) = E_u[c(u) e^{i u z}]`` (``u`` drawn from a density ``p``,
  ``c = tau / p``; discrete ``u = +-1`` for cos/sin, ``u ~ N(0, 1)`` for the Gaussian), the
  complex exponential of the dot product is split with the Gaussian moment identity
  ``e^{a b x^T w} = E_omega[e^{a omega^T x - a^2|x|^2/2} e^{b omega^T w - b^2|w|^2/2}]`` at
  ``a b = i u``; the real part is taken with ``[Re, Im]`` features (width ``2m``).
- ``relu``: the official ReLU-SNNK features ``relu(Omega x) / sqrt(m)``, whose dot product
  estimates the first-order arc-cosine kernel (used by the official SNNK adapters), not
  ``relu(w^T x)``.

Bundling (``SNNKStack.bundle``): a stack of SNNK layers only ever needs ``Omega_{l+1} h_l`` and
``|h_l|^2`` of each hidden state ``h_l = Psi_l phi_l``, i.e. ``(Omega_{l+1} Psi_l) phi_l`` and
``phi_l^T (Psi_l^T Psi_l) phi_l``: the bundled network lives in feature space, with no hidden
widths. The fully bundled network is one feature map and a linear read-out ``y = Psi Phi(x)``,
whose mean-squared-error optimum is the closed form ``closed_form_weights`` (least squares).

SNNK adapters (``SNNKAdapter``) follow the official ``CustomReluAdapter`` with
``down_sample=None``: ``x + v * (Psi Phi(x))`` with ``Psi`` (D, F) and the modulating vector ``v``
(zero-initialised) trainable; ``BottleneckAdapter`` is Houlsby et al.'s ``x + up(act(down(x)))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.registry import PaperSpec


class SNNKError(ArchlabError, ValueError):
    """A bad SNNK input: a feature width that does not match, ``m <= 0``, an unknown map."""


# ---------------------------------------------------------------------- activations and spectra
@dataclass(frozen=True)
class Activation:
    """An activation with a random-feature map.

    Attributes:
        name: the key in ``ACTIVATIONS``.
        kind: ``"positive"`` (exp), ``"urf"`` (Fourier spectrum) or ``"arccos"`` (ReLU-SNNK).
        exact: ``z -> f(z)``, the activation (for ``arccos``: the kernel is given separately).
        sample_u: ``(m, generator) -> u (m,)``, frequencies ``u = 2 pi xi`` drawn from ``p``.
        weight: ``u -> c(u) = tau(u) / p(u)`` (complex), so ``f(z) = E_u[c(u) e^{i u z}]``.
    """

    name: str
    kind: str
    exact: Callable[[Tensor], Tensor]
    sample_u: Callable[[int, torch.Generator], Tensor] | None = None
    weight: Callable[[Tensor], Tensor] | None = None


def _signs(m: int, g: torch.Generator) -> Tensor:
    """``u = +-1`` with probability 1/2 each (the code's ``xi = +-1 / (2 pi)``)."""
    return torch.randint(0, 2, (m,), generator=g).double() * 2 - 1


def _ones(u: Tensor) -> Tensor:
    return torch.ones_like(u, dtype=torch.cdouble)


ACTIVATIONS: dict[str, Activation] = {
    "exp": Activation("exp", "positive", torch.exp),
    # cos z = (e^{iz} + e^{-iz}) / 2: tau = p on u = +-1, c = 1
    "cos": Activation("cos", "urf", torch.cos, _signs, _ones),
    # sin z = (e^{iz} - e^{-iz}) / (2i): c(u) = -i u on u = +-1
    "sin": Activation("sin", "urf", torch.sin, _signs, lambda u: -1j * u.to(torch.cdouble)),
    # exp(-z^2/2) = E_{u ~ N(0,1)} e^{iuz}: tau = p, c = 1
    "gauss": Activation(
        "gauss",
        "urf",
        lambda z: torch.exp(-(z**2) / 2),
        lambda m, g: torch.randn(m, generator=g, dtype=torch.double),
        _ones,
    ),  # fmt: skip
    "relu": Activation("relu", "arccos", torch.relu),
}
"""Activations with a random-feature map. GELU, softplus, tanh and sigmoid have none here: they
are not integrable, so the URF's Fourier representation does not exist in the ordinary sense."""


def get_activation(name: str) -> Activation:
    """The ``Activation`` called ``name``; an unknown one is an ``SNNKError`` naming the valid."""
    if name not in ACTIVATIONS:
        raise SNNKError(
            f"activation {name!r} has no random-feature map; expected one of "
            f"{', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def check_m(m: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m <= 0:
        raise SNNKError(f"the number of random features m must be an integer >= 1, got {m!r}")


def feature_width(activation: str, m: int) -> int:
    """The real feature width ``F`` of a map: ``2 m`` for URFs ([Re, Im]), else ``m``."""
    check_m(m)
    return 2 * m if get_activation(activation).kind == "urf" else m


def gaussian_projection(
    m: int, d: int, generator: torch.Generator, orthogonal: bool = False
) -> Tensor:  # -> (m, d)
    """Rows ``omega_k ~ N(0, I_d)``; with ``orthogonal``, blocks of ``d`` exactly orthogonal rows
    with chi-distributed norms (orthogonal random features, as Performer's
    ``gaussian_orthogonal_random_matrix`` with ``scaling=0``): each row is still ``N(0, I)``."""
    check_m(m)
    if not orthogonal:
        return torch.randn(m, d, generator=generator)
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
        blocks.append(q.T)  # (d, d) orthonormal rows
    rows = torch.cat(blocks)[:m]  # (m, d)
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)  # (m, 1)
    return rows * norms


def arccos_kernel(x: Tensor, w: Tensor) -> Tensor:  # (B, D), (K, D) -> (B, K)
    """``E_omega[relu(omega^T x) relu(omega^T w)] = |x||w| (sin t + (pi - t) cos t) / (2 pi)``,
    ``t`` the angle between ``x`` and ``w`` (Cho and Saul's first-order arc-cosine kernel)."""
    nx, nw = x.norm(dim=-1, keepdim=True), w.norm(dim=-1)  # (B, 1), (K,)
    cos = ((x @ w.T) / (nx * nw).clamp_min(1e-12)).clamp(-1, 1)  # (B, K)
    t = torch.arccos(cos)
    return nx * nw * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)


# ---------------------------------------------------------------------- the feature map
class FeatureMap(nn.Module):
    """Random features ``Phi`` (inputs) and ``Psi`` (parameters) of one activation.

    ``phi(x) @ psi(W, b).T`` estimates ``f(x W^T + b)`` without bias (unbiased, error
    ``O(1/sqrt(m))``); ``relu`` estimates ``arccos_kernel(x, W)``.

    Args:
        d: input width D.
        m: random features (the real feature width is ``m``, or ``2 m`` for URFs).
        activation: a key of ``ACTIVATIONS``.
        generator: draws ``Omega`` (and the URF frequencies ``u``); the global one if None.
        orthogonal: orthogonal random features.
    """

    def __init__(
        self,
        d: int,
        m: int,
        activation: str = "exp",
        generator: torch.Generator | None = None,
        orthogonal: bool = False,
    ):
        super().__init__()
        check_m(m)
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise SNNKError(f"the input width d must be an integer >= 1, got {d!r}")
        self.act = get_activation(activation)
        self.d, self.m = d, m
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        self.register_buffer("omega", gaussian_projection(m, d, generator, orthogonal))
        if self.act.kind == "urf":
            u = self.act.sample_u(m, generator)  # (m,)
            # symmetric split a = b = sqrt(i u): a b = i u, |e^{-a^2 |x|^2 / 2}| = 1
            c = u.abs().sqrt() * torch.exp(1j * (math.pi / 4) * torch.sign(u))  # (m,)
            self.register_buffer("u", u.float())
            self.register_buffer("c", c.to(torch.cfloat))
            self.register_buffer("coef", self.act.weight(u).to(torch.cfloat))  # (m,)
        self.n_features = feature_width(activation, m)

    def extra_repr(self) -> str:
        return f"d={self.d}, m={self.m}, activation={self.act.name}"

    def _check(self, x: Tensor, what: str) -> None:
        if x.shape[-1] != self.d:
            raise SNNKError(
                f"{what} has feature width {x.shape[-1]}, expected d={self.d} (the width this "
                f"FeatureMap was built for); shape {tuple(x.shape)}"
            )

    def features(self, proj: Tensor, sqnorm: Tensor, coef: Tensor | None = None) -> Tensor:
        """Features from ``proj = Omega x`` (..., m) and ``sqnorm = |x|^2`` (..., 1); ``coef``
        (..., m) multiplies the URF features (the parameters' ``c(u) e^{i u b}``)."""
        m = self.m
        if self.act.kind == "positive":  # exp(omega^T x - |x|^2 / 2) / sqrt(m)
            return torch.exp(proj - sqnorm / 2) / math.sqrt(m)
        if self.act.kind == "arccos":
            return torch.relu(proj) / math.sqrt(m)
        z = torch.exp(self.c * proj - self.c**2 * sqnorm / 2) / math.sqrt(m)  # (..., m) complex
        if coef is not None:  # parameters: Re(phi psi) = Re phi Re psi - Im phi Im psi
            z = z * coef
            return torch.cat([z.real, -z.imag], dim=-1)  # (..., 2m)
        return torch.cat([z.real, z.imag], dim=-1)  # (..., 2m)

    def phi(self, x: Tensor) -> Tensor:  # (..., D) -> (..., F)
        """Input features ``Phi(x)``."""
        self._check(x, "the input x")
        return self.features(x @ self.omega.T, (x * x).sum(-1, keepdim=True))

    def psi(self, w: Tensor, b: Tensor | None = None) -> Tensor:  # (K, D), (K,) -> (K, F)
        """Parameter features ``Psi(w, b)`` of the rows of ``w`` (one neuron each)."""
        self._check(w, "the weight w")
        if b is not None and b.shape != w.shape[:-1]:
            raise SNNKError(f"the bias b has shape {tuple(b.shape)}, expected "
                            f"{tuple(w.shape[:-1])} (one per row of w)")  # fmt: skip
        proj, sq = w @ self.omega.T, (w * w).sum(-1, keepdim=True)  # (K, m), (K, 1)
        if self.act.kind == "positive":
            out = self.features(proj, sq)
            return out if b is None else out * torch.exp(b)[..., None]
        if self.act.kind == "arccos":
            if b is not None and bool((b != 0).any()):
                raise SNNKError("the relu (arc-cosine) map takes no bias; expected b=None")
            return self.features(proj, sq)
        coef = self.coef.expand(*w.shape[:-1], self.m)  # c(u)
        if b is not None:
            coef = coef * torch.exp(1j * b[..., None] * self.u)  # c(u) e^{i u b}  (K, m)
        return self.features(proj, sq, coef)

    def exact(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:  # -> (B, K)
        """What ``phi(x) @ psi(w, b).T`` estimates: ``f(x w^T + b)``, or the arc-cosine kernel."""
        self._check(x, "the input x")
        self._check(w, "the weight w")
        if self.act.kind == "arccos":
            return arccos_kernel(x, w)
        z = x @ w.T
        return self.act.exact(z if b is None else z + b)

    def estimate(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:  # -> (B, K)
        """``Phi(x)^T Psi(w, b)`` for every input and neuron."""
        return self.phi(x) @ self.psi(w, b).T


# ---------------------------------------------------------------------- layers
class SNNKLayer(nn.Module):
    """An SNNK layer: ``y = Psi Phi(x)`` (B, K), with the parameter features ``Psi`` (K, F)
    trainable (the official ``NNK`` module) and initialised from ``Psi(W0, b0)`` of an ordinary
    layer, so at initialisation it approximates ``f(x W0^T + b0)``.

    Args:
        d_in: input width D.
        d_out: neurons K.
        m: random features.
        activation: a key of ``ACTIVATIONS``.
        orthogonal: orthogonal random features.
        weight: ``W0`` (K, D) to start from (default: ``N(0, 1/D)`` entries).
        bias: ``b0`` (K,) (default: none).
        generator: draws ``Omega`` (and ``u``).
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        m: int,
        activation: str = "exp",
        orthogonal: bool = False,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.fmap = FeatureMap(d_in, m, activation, generator, orthogonal)
        if weight is None:
            weight = torch.randn(d_out, d_in, generator=generator) / math.sqrt(d_in)
        if weight.shape != (d_out, d_in):
            raise SNNKError(f"weight has shape {tuple(weight.shape)}, expected "
                            f"({d_out}, {d_in})")  # fmt: skip
        with torch.no_grad():
            self.psi = nn.Parameter(self.fmap.psi(weight.float(), bias).clone())  # (K, F)

    @property
    def d_in(self) -> int:
        return self.fmap.d

    @property
    def d_out(self) -> int:
        return self.psi.shape[0]

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., K)
        return self.fmap.phi(x) @ self.psi.T


@dataclass(frozen=True)
class SNNKConfig:
    """An SNNK network: SNNK layers, then a linear read-out.

    Attributes:
        d_input: input width D.
        widths: the SNNK layers' widths (neurons per layer).
        m: random features per layer.
        activation: the activation every SNNK layer approximates (``ACTIVATIONS``).
        n_outputs: read-out width K.
        orthogonal: orthogonal random features.
    """

    d_input: int = 10
    widths: tuple[int, ...] = (64, 64)
    m: int = 128
    activation: str = "exp"
    n_outputs: int = 1
    orthogonal: bool = True

    def __post_init__(self) -> None:
        check_m(self.m)
        get_activation(self.activation)
        if min(self.d_input, self.n_outputs, *self.widths) < 1 or not self.widths:
            raise SNNKError("d_input, n_outputs and every width must be >= 1 (at least 1 layer)")


class SNNKStack(nn.Module):
    """SNNK layers ``h_l = Psi_l Phi_l(h_{l-1})`` then ``y = readout(h_L)``.

    The hidden states are scaled by ``1/sqrt(width)`` before each next feature map (so that
    ``|h|^2`` stays of order 1 and the exponential features stay tame).
    """

    def __init__(self, cfg: SNNKConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        dims = (cfg.d_input, *cfg.widths)
        self.layers = nn.ModuleList(
            SNNKLayer(a, b, cfg.m, cfg.activation, cfg.orthogonal, generator=generator)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.readout = nn.Linear(dims[-1], cfg.n_outputs)

    def forward(self, x: Tensor) -> Tensor:  # (B, D) -> (B, K)
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else h / math.sqrt(h.shape[-1]))
        return self.readout(h)

    def bundle(self) -> BundledSNNK:
        """The bundled network: the same function, computed in feature space only."""
        return BundledSNNK(self)


class BundledSNNK(nn.Module):
    """A bundled ``SNNKStack``: per layer ``l >= 2`` the matrices ``A_l = Omega_l Psi_{l-1} / s``
    (m, F) and ``G_l = Psi_{l-1}^T Psi_{l-1} / s^2`` (F, F), ``s = sqrt(width)``, replace the hidden
    state; the read-out absorbs the last ``Psi``. Outputs equal the stack's (up to rounding)."""

    def __init__(self, stack: SNNKStack):
        super().__init__()
        layers = list(stack.layers)
        self.first = layers[0].fmap
        self.maps = nn.ModuleList(layer.fmap for layer in layers[1:])
        with torch.no_grad():
            A, G = [], []
            for prev, layer in zip(layers[:-1], layers[1:], strict=True):
                psi = prev.psi / math.sqrt(prev.d_out)  # (K, F)
                A.append(layer.fmap.omega @ psi)  # (m, F)
                G.append(psi.T @ psi)  # (F, F)
            self.A = nn.ParameterList(nn.Parameter(a.clone()) for a in A)
            self.G = nn.ParameterList(nn.Parameter(g.clone()) for g in G)
            last = layers[-1].psi  # (K_L, F)
            self.readout = nn.Linear(last.shape[1], stack.readout.out_features)
            self.readout.weight.copy_(stack.readout.weight @ last)
            self.readout.bias.copy_(stack.readout.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, D) -> (B, K)
        phi = self.first.phi(x)  # (B, F)
        for fmap, a, g in zip(self.maps, self.A, self.G, strict=True):
            proj = phi @ a.T  # (B, m) = Omega h
            sq = ((phi @ g) * phi).sum(-1, keepdim=True)  # (B, 1) = |h|^2
            phi = fmap.features(proj, sq)  # (B, F)
        return self.readout(phi)


def closed_form_weights(features: Tensor, y: Tensor, ridge: float = 0.0) -> Tensor:
    """The fully bundled network's MSE-optimal read-out: ``argmin_P |features P^T - y|^2 +
    ridge |P|^2``, i.e. ``P^T = (Phi^T Phi + ridge I)^{-1} Phi^T y`` (no backpropagation).

    Args:
        features: ``Phi(X)`` (N, F).
        y: targets (N, K).
        ridge: Tikhonov weight (0: ordinary least squares, minimum-norm solution).

    Returns:
        ``P`` (K, F).
    """
    if features.ndim != 2 or y.ndim != 2 or features.shape[0] != y.shape[0]:
        raise SNNKError(f"closed_form_weights needs features (N, F) and y (N, K) with the same N; "
                        f"got {tuple(features.shape)} and {tuple(y.shape)}")  # fmt: skip
    phi, t = features.double(), y.double()
    if ridge == 0:
        return torch.linalg.lstsq(phi, t, driver="gelsd").solution.T.to(features.dtype)
    gram = phi.T @ phi + ridge * torch.eye(phi.shape[1], dtype=phi.dtype)
    return torch.linalg.solve(gram, phi.T @ t).T.to(features.dtype)


# ---------------------------------------------------------------------- adapters
class SNNKAdapter(nn.Module):
    """The official SNNK adapter (``CustomReluAdapter``, ``down_sample=None``):
    ``x + v * (Phi(x) Psi^T)``, ``Psi = Psi(W0)`` (D, F) with ``W0 ~ N(0, 0.02^2)`` ("bert"
    initialisation) and ``v`` (D,) zero-initialised, both trainable; ``Omega`` is fixed.

    Trainable parameters: ``D F + D`` (``F = m``, or ``2 m`` for URF maps).
    """

    def __init__(
        self,
        d_model: int,
        m: int,
        activation: str = "relu",
        orthogonal: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.fmap = FeatureMap(d_model, m, activation, generator, orthogonal)
        w0 = 0.02 * torch.randn(d_model, d_model, generator=generator)
        with torch.no_grad():
            self.psi = nn.Parameter(self.fmap.psi(w0).clone())  # (D, F)
        self.v = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        return x + (self.fmap.phi(x) @ self.psi.T) * self.v


class BottleneckAdapter(nn.Module):
    """Houlsby et al. (2019) bottleneck adapter ``x + up(act(down(x)))``, ``up`` zero-initialised
    (as adapter-transformers' default and the official SNNK "mam" initialisation).

    Trainable parameters: ``2 D r + r + D``.
    """

    def __init__(self, d_model: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(d_model, bottleneck)
        self.up = nn.Linear(bottleneck, d_model)
        self.act = {"relu": F.relu, "gelu": F.gelu}[activation]
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        return x + self.up(self.act(self.down(x)))


def adapter_parameters(kind: str, d_model: int, size: int, n_features: int | None = None) -> int:
    """Trainable parameters of one adapter: ``snnk`` (``size`` = m; ``D F + D``) or
    ``bottleneck`` (``size`` = r; ``2 D r + r + D``)."""
    if kind == "snnk":
        return d_model * (n_features or size) + d_model
    if kind == "bottleneck":
        return 2 * d_model * size + size + d_model
    raise SNNKError(f"unknown adapter kind {kind!r}; expected 'snnk' or 'bottleneck'")


VARIANTS = {
    "tiny": SNNKConfig(d_input=8, widths=(16,), m=16),
    "base": SNNKConfig(),
    "cos": SNNKConfig(activation="cos"),
}

SPEC = PaperSpec(
    slug="snnk",
    family="fields",
    title="Scalable Neural Network Kernels",
    arxiv="2310.13225",
    claim=(
        "Random-feature kernels Phi(x)^T Psi(w, b) approximate feed-forward layers f(w^T x + b) "
        "with error falling as 1/sqrt(m); a fully bundled SNNK network fitted in closed form "
        "(no backprop) regresses about as well as a backprop MLP; and SNNK adapters on a frozen "
        "encoder match bottleneck adapters with at most a third of their trainable parameters."
    ),
    config=SNNKConfig,
    build=SNNKStack,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (torch.randn(batch_size, model.cfg.d_input) / 3,),
    fidelity="simplified",
    experiment="archlab.papers.fields.snnk.experiment",
)
