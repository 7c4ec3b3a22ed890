"""Activation access by name on any ``torch.nn.Module``: capture, cache, patch and ablate.

A *hook point* is a name for one tensor in a forward pass:

- every submodule name of ``model.named_modules()`` is the module's output, and
  ``"<name>:input"`` its first positional input;
- models built from ``archlab.nn`` transformer layers (``EncoderLayer``/``DecoderLayer`` in an
  ``Encoder``/``Decoder``) also get TransformerLens's names for every block: ``blocks.{i}.``
  ``hook_resid_pre``, ``ln1.hook_normalized``, ``attn.hook_q``/``hook_k``/``hook_v`` and
  ``attn.hook_z`` (B, T, nh, hd), ``attn.hook_pattern`` (B, nh, T, S), ``attn.hook_result``
  (B, T, nh, D: each head's share of the attention output, without the output bias),
  ``hook_attn_out``, ``hook_resid_mid``, ``ln2.hook_normalized``, ``mlp.hook_pre``,
  ``mlp.hook_post``, ``hook_mlp_out``, ``hook_resid_post``; plus ``ln_final.hook_normalized``
  (the stack's final norm; every ``hook_normalized`` is the norm's output before its affine
  map, as TransformerLens's) and, for a model with a token embedding ``wte``/``embed``,
  ``hook_embed``. A second stack is prefixed by its module name (``encoder.blocks.0...``).

Every context manager here removes its hooks on exit, also when the body raises.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.nn.attention import MultiHeadAttention, attention_with_weights, make_attention_mask
from archlab.nn.mlp import FeedForward
from archlab.nn.transformer import Decoder, DecoderLayer, Encoder, EncoderLayer


class HookError(ArchlabError, KeyError):
    """An unknown hook point (the message lists the close matches), or an operation a hook
    point does not support (patching a read-only view, a pattern under a KV cache)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class HookPoint:
    """Where a named tensor lives.

    Attributes:
        module: the submodule's name in ``named_modules()`` ("" is the model itself).
        port: ``"output"``, ``"input"`` (first positional argument) or ``"pattern"`` (the
            attention weights of a ``MultiHeadAttention``, recomputed from its inputs).
        view: raw tensor -> the tensor the name stands for (e.g. split into heads).
        unview: the inverse of ``view`` for patching (None: the point is read-only).
    """

    module: str
    port: str = "output"
    view: Callable[[Tensor], Tensor] | None = None
    unview: Callable[[Tensor], Tensor] | None = None

    @property
    def writable(self) -> bool:
        return self.view is None or self.unview is not None


# ---------------------------------------------------------------------- naming
def _heads_view(attn: MultiHeadAttention, n: int) -> tuple[Callable, Callable]:
    hd = attn.d_head

    def view(t: Tensor) -> Tensor:  # (B, T, n hd) -> (B, T, n, hd)
        return t.unflatten(-1, (n, hd))

    def unview(t: Tensor) -> Tensor:
        return t.flatten(-2)

    return view, unview


def _projection_view(attn: MultiHeadAttention, proj: nn.Linear, n: int) -> Callable:
    def view(x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, n, hd), before RoPE
        return proj(x).unflatten(-1, (n, attn.d_head))

    return view


def _normalized_view(norm: nn.Module) -> tuple[Callable, Callable]:
    """TransformerLens's ``hook_normalized``: the norm's output before its affine map."""
    w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)

    def view(t: Tensor) -> Tensor:
        t = t if b is None else t - b
        return t if w is None else t / w

    def unview(t: Tensor) -> Tensor:
        t = t if w is None else t * w
        return t if b is None else t + b

    return view, unview


def _result_view(attn: MultiHeadAttention) -> Callable[[Tensor], Tensor]:
    def view(z: Tensor) -> Tensor:  # (B, T, nh hd) -> (B, T, nh, D)
        w = attn.out_proj.weight.unflatten(1, (attn.n_heads, attn.d_head))  # (D, nh, hd)
        return torch.einsum("btnh,dnh->btnd", z.unflatten(-1, (attn.n_heads, attn.d_head)), w)

    return view


def _block_points(prefix: str, path: str, layer: nn.Module) -> dict[str, HookPoint]:
    """TransformerLens's names for one ``archlab.nn`` layer at module path ``path``."""
    attn: MultiHeadAttention = layer.self_attn
    p: dict[str, HookPoint] = {
        f"{prefix}hook_resid_pre": HookPoint(path, "input"),
        f"{prefix}hook_attn_out": HookPoint(f"{path}.self_attn"),
        f"{prefix}hook_mlp_out": HookPoint(f"{path}.ffn"),
        f"{prefix}hook_resid_post": HookPoint(path),
        f"{prefix}attn.hook_pattern": HookPoint(f"{path}.self_attn", "pattern"),
        f"{prefix}attn.hook_result": HookPoint(
            f"{path}.self_attn.out_proj", "input", _result_view(attn)
        ),
    }
    for name, proj, n in (
        ("q", attn.q_proj, attn.n_heads),
        ("k", attn.k_proj, attn.n_kv_heads),
        ("v", attn.v_proj, attn.n_kv_heads),
    ):  # read-only views of the attention's input (inference fuses the three projections)
        p[f"{prefix}attn.hook_{name}"] = HookPoint(f"{path}.self_attn", "input",
                                                   _projection_view(attn, proj, n))  # fmt: skip
    p[f"{prefix}attn.hook_z"] = HookPoint(
        f"{path}.self_attn.out_proj", "input", *_heads_view(attn, attn.n_heads)
    )
    if getattr(layer, "norm_first", False):
        for ln, norm in (("ln1", "self_attn_norm"), ("ln2", "ffn_norm")):
            p[f"{prefix}{ln}.hook_normalized"] = HookPoint(
                f"{path}.{norm}", "output", *_normalized_view(getattr(layer, norm))
            )
        if getattr(layer, "cross_attn", None) is None:  # resid_mid: the input of the MLP's norm
            p[f"{prefix}hook_resid_mid"] = HookPoint(f"{path}.ffn_norm", "input")
    if isinstance(layer.ffn, FeedForward):
        p[f"{prefix}mlp.hook_pre"] = HookPoint(f"{path}.ffn.fc1")
        p[f"{prefix}mlp.hook_post"] = HookPoint(f"{path}.ffn.fc2", "input")
    return p


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of ``model`` by name (see the module docstring)."""
    points: dict[str, HookPoint] = {}
    for name, _ in model.named_modules():
        if name:
            points[name] = HookPoint(name)
            points[f"{name}:input"] = HookPoint(name, "input")
    stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, (Encoder, Decoder))]
    for k, (path, stack) in enumerate(stacks):
        root = "" if k == 0 else f"{path}."
        for i, layer in enumerate(stack.layers):
            if isinstance(layer, (EncoderLayer, DecoderLayer)):
                points.update(_block_points(f"{root}blocks.{i}.", f"{path}.layers.{i}", layer))
        if stack.norm is not None:
            points[f"{root}ln_final.hook_normalized"] = HookPoint(
                f"{path}.norm", "output", *_normalized_view(stack.norm)
            )
    for embed in ("wte", "embed", "embed_tokens"):
        if isinstance(getattr(model, embed, None), nn.Embedding):
            points["hook_embed"] = HookPoint(embed)
            break
    return points


def resolve(model: nn.Module, names: Iterable[str]) -> dict[str, HookPoint]:
    """The hook points called ``names``; an unknown one is a ``HookError`` naming close
    matches."""
    points = hook_points(model)
    out = {}
    for name in names:
        if name not in points:
            close = difflib.get_close_matches(name, list(points), n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise HookError(f"no hook point {name!r} in {type(model).__name__} "
                            f"({len(points)} points){hint}")  # fmt: skip
        out[name] = points[name]
    return out


# ---------------------------------------------------------------------- the attention pattern
def _pattern_and_values(attn: MultiHeadAttention, args: tuple, kwargs: dict):
    """Recompute the weights (B, nh, T, S) and values of a self-attention call."""
    x = args[0]
    if len(args) > 1 and args[1] is not None or kwargs.get("kv") is not None:
        raise HookError("attn.hook_pattern covers self-attention only (this call has kv)")
    if kwargs.get("cache") is not None:
        raise HookError("attn.hook_pattern is not available under a KV cache; run the full "
                        "sequence without a cache")  # fmt: skip
    B, T, _ = x.shape
    q = attn._heads(attn.q_proj(x), attn.n_heads)
    k = attn._heads(attn.k_proj(x), attn.n_kv_heads)
    v = attn._heads(attn.v_proj(x), attn.n_kv_heads)
    if attn.rotary is not None:
        positions = kwargs.get("positions")
        if positions is None:
            positions = torch.arange(T, device=x.device)
        q, k = attn.rotary(q, k, positions)
    mask, causal = make_attention_mask(T, T, kwargs.get("padding_mask"), kwargs.get("attn_mask"),
                                       kwargs.get("is_causal", False), device=x.device)  # fmt: skip
    _, weights = attention_with_weights(q, k, v, mask, 0.0, is_causal=causal, scale=attn.scale)
    return weights, v


def _output_from_pattern(attn: MultiHeadAttention, weights: Tensor, v: Tensor) -> Tensor:
    n_rep = attn.n_heads // attn.n_kv_heads
    if n_rep > 1:
        v = v.repeat_interleave(n_rep, dim=1)
    out = weights @ v  # (B, nh, T, hd)
    B, _, T, _ = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, attn.n_heads * attn.d_head))


# ---------------------------------------------------------------------- hooks
Edit = Callable[[Tensor], Tensor | None]


def _install(model: nn.Module, point: HookPoint, edit: Edit) -> torch.utils.hooks.RemovableHandle:
    """Hook ``edit(view) -> new view | None`` (None: leave the tensor as it is) at ``point``."""
    module = model.get_submodule(point.module)
    view = point.view or (lambda t: t)

    def apply(raw: Tensor) -> Tensor | None:
        new = edit(view(raw))
        if new is None:
            return None
        if not point.writable:
            raise HookError(f"hook point on {point.module} ({point.port}) is read-only: it is "
                            "a derived view; patch attn.hook_z instead")  # fmt: skip
        return new if point.unview is None else point.unview(new)

    if point.port == "output":

        def hook(mod, args, output):
            if not isinstance(output, Tensor):
                raise HookError(f"{point.module} returns {type(output).__name__}, not a tensor; "
                                "hook one of its submodules")  # fmt: skip
            return apply(output)

        return module.register_forward_hook(hook)
    if point.port == "input":

        def pre(mod, args):
            if not args or not isinstance(args[0], Tensor):
                raise HookError(f"{point.module} was called without a positional tensor input")
            new = apply(args[0])
            return None if new is None else (new, *args[1:])

        return module.register_forward_pre_hook(pre)
    if not isinstance(module, MultiHeadAttention):
        raise HookError(f"{point.module} is not a MultiHeadAttention; it has no pattern")

    def pattern_hook(mod, args, kwargs, output):
        weights, v = _pattern_and_values(mod, args, kwargs)
        new = edit(weights)
        return None if new is None else _output_from_pattern(mod, new, v)

    return module.register_forward_hook(pattern_hook, with_kwargs=True)


@contextmanager
def hooks(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[None]:
    """Install ``edits`` (name -> ``f(tensor) -> replacement or None``) for the body; every
    hook is removed on exit, also on an exception."""
    points = resolve(model, edits)
    handles = []
    try:
        for name, edit in edits.items():
            handles.append(_install(model, points[name], edit))
        yield
    finally:
        for handle in handles:
            handle.remove()


class ActivationCache(dict):
    """Captured activations by hook-point name (a dict of tensors)."""

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items())
        return f"ActivationCache({shapes})"


@contextmanager
def capture(
    model: nn.Module, names: Iterable[str] | None = None, detach: bool = True
) -> Iterator[ActivationCache]:
    """Record the tensors at ``names`` (default: every TransformerLens-style point, or every
    module output for other models) during the body's forward passes.

    A point reached several times (a module called twice) keeps the last call's tensor.
    With ``detach=False`` the tensors stay in the autograd graph (for attribution).
    """
    if names is None:
        points = hook_points(model)
        names = [n for n in points if "hook_" in n] or [n for n in points if ":" not in n]
    cache = ActivationCache()

    def recorder(name: str) -> Edit:
        def record(t: Tensor) -> None:
            cache[name] = t.detach().clone() if detach else t
            return None

        return record

    with hooks(model, {name: recorder(name) for name in names}):
        yield cache


def run_with_cache(model: nn.Module, *args, names: Iterable[str] | None = None, **kwargs):
    """``(model(*args, **kwargs), cache)`` with the activations at ``names`` (as
    TransformerLens's ``run_with_cache``), without gradients."""
    with torch.no_grad(), capture(model, names) as cache:
        out = model(*args, **kwargs)
    return out, cache


def _replace(value: Tensor | Callable[[Tensor], Tensor]) -> Edit:
    if callable(value):
        return value

    def edit(t: Tensor) -> Tensor:
        if value.shape != t.shape:
            raise HookError(f"a patch of shape {tuple(value.shape)} for a tensor of shape "
                            f"{tuple(t.shape)}")  # fmt: skip
        return value.to(t.dtype)

    return edit


@contextmanager
def patch(
    model: nn.Module, patches: Mapping[str, Tensor | Callable[[Tensor], Tensor]]
) -> Iterator[None]:
    """Replace the tensors at the named points during the body: by a tensor of the same shape
    (activation patching from another run's cache) or by ``f(tensor)``."""
    with hooks(model, {name: _replace(v) for name, v in patches.items()}):
        yield


@contextmanager
def ablate(
    model: nn.Module,
    targets: Mapping[str, int | slice | list[int] | None],
    means: Mapping[str, Tensor] | None = None,
    dim: int = 2,
) -> Iterator[None]:
    """Zero-ablate (or mean-ablate, with ``means[name]`` broadcastable to the slice) the
    entries ``index`` along ``dim`` of each named tensor (None: the whole tensor). ``dim=2``
    is the head axis of ``attn.hook_z`` / ``hook_q`` / ``hook_v`` (B, T, nh, hd)."""

    def ablation(name: str, index) -> Edit:
        def edit(t: Tensor) -> Tensor:
            out = t.clone()
            sel = (slice(None),) * dim + (slice(None) if index is None else index,)
            if index is None:
                sel = (slice(None),)
            fill = 0.0 if means is None else means[name].to(t.dtype)
            out[sel] = fill if means is None else torch.broadcast_to(fill, out[sel].shape)
            return out

        return edit

    if means is not None:
        missing = [n for n in targets if n not in means]
        if missing:
            raise HookError(f"mean ablation needs means for {', '.join(missing)}")
    with hooks(model, {name: ablation(name, idx) for name, idx in targets.items()}):
        yield
