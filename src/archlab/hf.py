"""Hugging Face-format directories: reading and writing ``config.json`` + ``model.safetensors``.

Shared by the models that have a transformers counterpart (``bart``, ``bert``, ``gpt2``); each
keeps its own name mapping in its ``hf.py`` and uses these helpers for the files, the checks and
the errors. What transformers 5.x ``save_pretrained`` writes, and what is accepted here:

- ``config.json`` with ``model_type`` (checked against the model) and the architecture's fields;
- ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``) without the tied
  copies of the embeddings (``lm_head.weight``, ``encoder.embed_tokens.weight``, ...); older
  files that do contain them are accepted when the copies are identical;
- ``generation_config.json``, tokenizer files: ignored.

Weights are read from safetensors only: a directory with only ``pytorch_model.bin`` is refused
rather than unpickled. Every problem raises ``PretrainedFormatError`` (an ``ArchlabError`` and a
``ValueError``) with one line naming the file and what was expected.

Also here: ``check_token_ids`` and ``check_attention_mask``, the input checks of these models
(integer ids of shape (B, T) within the vocabulary and the position table; never a silent
truncation).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from archlab.errors import ArchlabError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
"""transformers' ``ACT2FN`` names -> ``archlab.nn.mlp.ACTIVATIONS`` names (the ones that match)."""


class PretrainedFormatError(ArchlabError, ValueError):
    """A Hugging Face-format directory or config that archlab cannot load as asked."""


class InputError(ArchlabError, ValueError):
    """A model input of the wrong type, dtype, shape or range."""


# --------------------------------------------------------------------------- reading


def _directory(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise PretrainedFormatError(
            f"{str(path)!r} is not a directory: pass a local Hugging Face-format directory "
            f"with {CONFIG_NAME} and {WEIGHTS_NAME} (as written by save_pretrained)"
        )
    return path


def read_config(directory: str | os.PathLike, model_type: str) -> dict[str, Any]:
    """The parsed ``config.json`` of ``directory``, checked to be a ``model_type`` config.

    Raises:
        PretrainedFormatError: no directory, no or unreadable ``config.json``, or another
            ``model_type``.
    """
    path = _directory(directory) / CONFIG_NAME
    if not path.is_file():
        raise PretrainedFormatError(f"{str(path)!r} not found: a {model_type} directory needs it")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainedFormatError(f"{str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise PretrainedFormatError(f"{str(path)!r} must hold a JSON object")
    found = config.get("model_type")
    if found != model_type:
        raise PretrainedFormatError(
            f"{str(path)!r} has model_type={found!r}; expected {model_type!r} "
            f"(load it with the matching archlab model)"
        )
    return config


def read_state_dict(directory: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` (or of the shards named by its index file).

    Raises:
        PretrainedFormatError: no safetensors weights, an unreadable file, or a missing shard.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = _directory(directory)
    single, index = root / WEIGHTS_NAME, root / WEIGHTS_INDEX_NAME
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [root / name for name in sorted(set(weight_map.values()))]
        except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise PretrainedFormatError(f"{str(index)!r} is not a safetensors index: {e}") from None
        for f in files:
            if not f.is_file():
                raise PretrainedFormatError(
                    f"{str(f)!r}, listed in {WEIGHTS_INDEX_NAME}, is missing"
                )
    else:
        pickled = [p.name for p in root.glob("*.bin")] + [p.name for p in root.glob("*.pt")]
        hint = (
            f"; found {', '.join(sorted(pickled))}, which archlab does not unpickle: re-save it "
            "with transformers' save_pretrained (safetensors is the default)"
            if pickled
            else ""
        )
        raise PretrainedFormatError(f"{str(single)!r} not found{hint}")
    tensors: dict[str, Tensor] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise PretrainedFormatError(
                f"{str(f)!r} is not a readable safetensors file: {e}"
            ) from None
    return tensors


def config_value(config: Mapping[str, Any], key: str, default: Any, types: type | tuple) -> Any:
    """``config[key]`` (``default`` when absent) checked to be of ``types``.

    Raises:
        PretrainedFormatError: if the value has another type (a bool is not an int).
    """
    value = config.get(key, default)
    if value is None and default is None:
        return None
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _tuple(types))
    if not ok:
        names = " or ".join(t.__name__ for t in _tuple(types))
        raise PretrainedFormatError(f"{CONFIG_NAME}: {key} must be {names}; got {value!r}")
    return value


def _tuple(types: type | tuple) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def require_settings(config: Mapping[str, Any], expected: Mapping[str, Any], model: str) -> None:
    """Refuse settings the archlab model does not implement (absent keys are fine).

    Args:
        config: the parsed ``config.json``.
        expected: key -> the only value archlab supports (a tuple: any of these values).
        model: the model's name, for the message.

    Raises:
        PretrainedFormatError: naming the first unsupported setting.
    """
    for key, allowed in expected.items():
        if key not in config:
            continue
        choices = allowed if isinstance(allowed, tuple) else (allowed,)
        if config[key] not in choices:
            shown = " or ".join(repr(c) for c in choices)
            raise PretrainedFormatError(
                f"{CONFIG_NAME}: {key}={config[key]!r} is not supported by archlab's {model} "
                f"(expected {shown})"
            )


def hf_activation(name: Any, key: str = "activation_function") -> str:
    """The archlab activation for transformers' activation ``name``.

    Raises:
        PretrainedFormatError: for an activation archlab does not provide.
    """
    if name not in HF_ACTIVATIONS:
        raise PretrainedFormatError(
            f"{CONFIG_NAME}: {key}={name!r} is not supported (expected one of "
            f"{', '.join(HF_ACTIVATIONS)})"
        )
    return HF_ACTIVATIONS[name]


def single_token_id(config: Mapping[str, Any], key: str, default: int | None) -> int | None:
    """A token id field that transformers allows to be a list: one id, or None."""
    value = config.get(key, default)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise PretrainedFormatError(
        f"{CONFIG_NAME}: {key} must be a token id >= 0 or null (archlab keeps one id); got "
        f"{value!r}"
    )


def check_tensors(
    tensors: Mapping[str, Tensor],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    *,
    optional: Iterable[str] = (),
    ignored_prefixes: Iterable[str] = (),
    ignored_suffixes: Iterable[str] = (),
    source: str = WEIGHTS_NAME,
) -> None:
    """Check a checkpoint's tensors against the names and shapes the config implies.

    Args:
        tensors: the checkpoint (transformers names).
        expected: transformers name -> shape for the model built from ``config.json``.
        optional: expected names that may be absent (they keep their initial value).
        ignored_prefixes: unexpected names starting with one of these are ignored (heads the
            model does not have, as transformers ignores them).
        ignored_suffixes: unexpected names ending with one of these are ignored (old buffers).
        source: the file named in messages.

    Raises:
        PretrainedFormatError: naming the missing tensors, the unexpected ones, or the first
            shape mismatch.
    """
    optional = set(optional)
    prefixes, suffixes = tuple(ignored_prefixes), tuple(ignored_suffixes)
    missing = [k for k in expected if k not in tensors and k not in optional]
    if missing:
        raise PretrainedFormatError(
            f"{source}: missing {len(missing)} tensor(s) the config implies: {_few(missing)}"
        )
    unexpected = [
        k
        for k in tensors
        if k not in expected and not k.startswith(prefixes) and not k.endswith(suffixes)
    ]
    if unexpected:
        raise PretrainedFormatError(
            f"{source}: {len(unexpected)} unexpected tensor(s) (another architecture or "
            f"config?): {_few(unexpected)}"
        )
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != tuple(shape):
            raise PretrainedFormatError(
                f"{source}: {key} has shape {tuple(tensors[key].shape)}; {CONFIG_NAME} implies "
                f"{tuple(shape)}"
            )
    for key, t in tensors.items():
        if key in expected and not t.dtype.is_floating_point:
            raise PretrainedFormatError(f"{source}: {key} must be floating point; got {t.dtype}")


def check_tied(tensors: Mapping[str, Tensor], source: str, copies: Iterable[str]) -> None:
    """Tied copies may be stored (older files) but must equal ``source`` (archlab ties them).

    Raises:
        PretrainedFormatError: if a stored copy differs (untied weights are not supported).
    """
    for key in copies:
        if key in tensors and source in tensors:
            if tensors[key].shape != tensors[source].shape or not torch.equal(
                tensors[key], tensors[source]
            ):
                raise PretrainedFormatError(
                    f"{WEIGHTS_NAME}: {key} differs from {source}; archlab ties them "
                    "(tie_word_embeddings=false is not supported)"
                )


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def add_prefix_if_bare(
    tensors: dict[str, Tensor], prefix: str, bare_starts: tuple[str, ...]
) -> dict[str, Tensor]:
    """Prefix the names of a base-model checkpoint (``BartModel``, ``GPT2Model``, ...).

    A checkpoint saved from the bare model has names like ``encoder.layers.0...``; the head
    model's are ``model.encoder.layers.0...``. When no name starts with ``prefix`` and some start
    with one of ``bare_starts``, every name gets ``prefix``.
    """
    if any(k.startswith(prefix) for k in tensors) or not any(
        k.startswith(bare_starts) for k in tensors
    ):
        return tensors
    return {prefix + k: v for k, v in tensors.items()}


def rename_legacy_norms(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """TF-era names ``LayerNorm.gamma`` / ``LayerNorm.beta`` -> ``weight`` / ``bias``."""
    out = {}
    for k, v in tensors.items():
        if k.endswith(".gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith(".beta"):
            k = k[: -len("beta")] + "bias"
        out[k] = v
    return out


# --------------------------------------------------------------------------- writing


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_pretrained(
    directory: str | os.PathLike, config: Mapping[str, Any], tensors: Mapping[str, Tensor]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically) as transformers would.

    Args:
        directory: created if needed.
        config: the transformers config as JSON-able data (with ``model_type`` and
            ``architectures``).
        tensors: transformers name -> tensor, without tied copies.

    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise PretrainedFormatError(f"{str(root)!r} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic_write(root / WEIGHTS_NAME, lambda p: save_file(data, p, metadata={"format": "pt"}))
    text = json.dumps(dict(sorted(config.items())), indent=2) + "\n"
    _atomic_write(root / CONFIG_NAME, lambda p: Path(p).write_text(text))
    return root


# --------------------------------------------------------------------------- model inputs


def check_token_ids(
    x: Any,
    name: str = "input_ids",
    vocab_size: int | None = None,
    max_positions: int | None = None,
    past: int = 0,
    check_values: bool = True,
) -> None:
    """Check token ids: an integer tensor (B, T) with ids in ``[0, vocab_size)``.

    Args:
        x: the ids.
        name: the argument's name, for the message.
        vocab_size: exclusive upper bound of the ids (None: not checked).
        max_positions: the model's position table; ``past + T`` must not exceed it.
        past: positions already consumed (a cache's length).
        check_values: also check the range of the ids (a reduction over x).

    Raises:
        InputError: naming what was expected.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor of token ids (B, T); got {type(x)}")
    if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
        raise InputError(
            f"{name} must be an integer tensor (torch.long) of token ids; got {x.dtype}"
        )
    if x.dim() != 2 or x.shape[1] == 0:
        raise InputError(f"{name} must have shape (B, T) with T >= 1; got {tuple(x.shape)}")
    if max_positions is not None and past + x.shape[1] > max_positions:
        raise InputError(
            f"{name} reaches position {past + x.shape[1]} (past {past} + T {x.shape[1]}) but the "
            f"model has {max_positions} positions (its max_position_embeddings / n_positions); "
            "shorten the input"
        )
    if check_values and x.numel() and vocab_size is not None:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab_size:
            raise InputError(f"{name} must hold ids in [0, {vocab_size}); got [{lo}, {hi}]")


def check_attention_mask(mask: Any, ids: Tensor, name: str = "attention_mask") -> None:
    """Check a padding mask: (B, T) like ``ids``, 0/1 or bool.

    Raises:
        InputError: naming what was expected.
    """
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise InputError(f"{name} must be a torch.Tensor (B, T) of 0/1; got {type(mask)}")
    if tuple(mask.shape) != tuple(ids.shape):
        raise InputError(
            f"{name} must have the shape of the ids {tuple(ids.shape)}; got {tuple(mask.shape)}"
        )
    if mask.dtype.is_complex or not ((mask == 0) | (mask == 1)).all():
        raise InputError(f"{name} must hold only 0 (padding) and 1 (real token)")
