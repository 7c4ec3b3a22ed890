"""``sae_lens`` interoperability for ``SparseDictionary``.

- ``save_sae_lens(dic, dir)`` writes the directory ``sae_lens.SAE.load_from_disk`` reads:
  ``cfg.json`` and ``sae_weights.safetensors`` (written here, so saving needs no ``sae_lens``),
  each file written to a temporary name and renamed into place.
- ``load_sae_lens(dir)`` reads such a directory (one ``sae_lens`` wrote, or ours) into a
  ``SparseDictionary``; a missing or mismatched file is one ``DictionaryError`` line.
- ``to_sae_lens(dic)`` / ``from_sae_lens(sae)`` convert live objects (needs ``sae_lens``).

Architectures: ``relu`` SAE = ``standard``, ``topk`` = ``topk``, ``jumprelu`` = ``jumprelu``;
``relu`` transcoder = ``transcoder``, ``jumprelu`` transcoder = ``jumprelu_transcoder``. A
``decoder_norm="unit"`` dictionary is saved with its normalised decoder (the same function).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from archlab.errors import MissingDependencyError
from archlab.interp.dictionary import DictionaryConfig, DictionaryError, SparseDictionary

SAE_LENS_FORMAT = "6.0.0"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
_SAE = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
_TRANSCODER = {"relu": "transcoder", "jumprelu": "jumprelu_transcoder"}
_FROM = {v: (k, False) for k, v in _SAE.items()} | {v: (k, True) for k, v in _TRANSCODER.items()}


def architecture_name(cfg: DictionaryConfig) -> str:
    table = _TRANSCODER if cfg.transcoder else _SAE
    if cfg.architecture not in table:
        kind = "transcoder" if cfg.transcoder else "SAE"
        raise DictionaryError(f"sae_lens has no {cfg.architecture} {kind}; expected one of "
                              f"{', '.join(table)}")  # fmt: skip
    return table[cfg.architecture]


def sae_lens_config(dic: SparseDictionary, hook_name: str | None = None) -> dict:
    """The ``cfg.json`` of ``dic`` in ``sae_lens``' format."""
    cfg = dic.cfg
    out = {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": not cfg.transcoder,
        "normalize_activations": "none",
        "reshape_activations": "none",
        # the version names the cfg.json format (sae_lens 6), not an installed package
        "metadata": {"sae_lens_version": SAE_LENS_FORMAT}
        | ({"hook_name": hook_name} if hook_name else {}),
        "architecture": architecture_name(cfg),
    }
    if cfg.transcoder:
        out["d_out"] = cfg.d_out
    if cfg.architecture == "topk":
        out |= {"k": cfg.k, "rescale_acts_by_decoder_norm": False}
    return out


def sae_lens_state_dict(dic: SparseDictionary) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = {
            "W_enc": dic.W_enc.detach().float().contiguous(),
            "b_enc": dic.b_enc.detach().float().contiguous(),
            "W_dec": dic.decoder().detach().float().contiguous(),
            "b_dec": dic.b_dec.detach().float().contiguous(),
        }
        if dic.cfg.architecture == "jumprelu":
            out["threshold"] = dic.threshold.detach().float().contiguous()
    return out


def save_sae_lens(dic: SparseDictionary, directory: str | Path, hook_name: str | None = None):
    """Write ``dic`` as a ``sae_lens`` directory (weights first, then the config)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    cfg = sae_lens_config(dic, hook_name)
    tmp = f".tmp-{os.getpid()}"
    save_file(sae_lens_state_dict(dic), path / (WEIGHTS_FILE + tmp))
    (path / (CFG_FILE + tmp)).write_text(json.dumps(cfg, indent=1))
    os.replace(path / (WEIGHTS_FILE + tmp), path / WEIGHTS_FILE)
    os.replace(path / (CFG_FILE + tmp), path / CFG_FILE)
    return path


def _from_parts(cfg: dict, tensors: dict[str, torch.Tensor], where: str) -> SparseDictionary:
    arch = cfg.get("architecture", "standard")
    if arch not in _FROM:
        raise DictionaryError(f"{where}: architecture {arch!r} is not supported; expected one "
                              f"of {', '.join(_FROM)}")  # fmt: skip
    name, transcoder = _FROM[arch]
    for key in ("d_in", "d_sae"):
        if key not in cfg:
            raise DictionaryError(f"{where}: {CFG_FILE} has no {key!r}")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise DictionaryError(f"{where}: normalize_activations="
                              f"{cfg['normalize_activations']!r} is not supported; fold it "
                              "into the weights first")  # fmt: skip
    if not transcoder and not cfg.get("apply_b_dec_to_input", True):
        raise DictionaryError(f"{where}: an SAE with apply_b_dec_to_input=false is not "
                              "supported")  # fmt: skip
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise DictionaryError(f"{where}: rescale_acts_by_decoder_norm is not supported")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    d_out = int(cfg.get("d_out", d_in)) if transcoder else None
    width = d_in if d_out is None else d_out
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, width),
                "b_dec": (width,)}  # fmt: skip
    if name == "jumprelu":
        if "log_threshold" in tensors and "threshold" not in tensors:
            tensors = tensors | {"threshold": tensors["log_threshold"].exp()}
        expected["threshold"] = (d_sae,)
    for key, shape in expected.items():
        if key not in tensors:
            raise DictionaryError(f"{where}: {WEIGHTS_FILE} has no tensor {key!r}")
        if tuple(tensors[key].shape) != shape:
            raise DictionaryError(f"{where}: {key} has shape {tuple(tensors[key].shape)}, but "
                                  f"{CFG_FILE} implies {shape}")  # fmt: skip
    dcfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, architecture=name, d_out=d_out,
                            k=int(cfg.get("k", 16)), decoder_norm="free")  # fmt: skip
    dic = SparseDictionary(dcfg)
    with torch.no_grad():
        for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(dic, key).copy_(tensors[key].float())
        if name == "jumprelu":
            thr = tensors["threshold"].float()
            if bool((thr <= 0).any()):
                raise DictionaryError(f"{where}: jumprelu thresholds must be > 0")
            dic.log_threshold.copy_(thr.log())
    return dic


def load_sae_lens(directory: str | Path) -> SparseDictionary:
    """A ``SparseDictionary`` from a ``sae_lens`` directory."""
    path = Path(directory)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise DictionaryError(f"{path}: missing {name} (a sae_lens directory holds "
                                  f"{CFG_FILE} and {WEIGHTS_FILE})")  # fmt: skip
    try:
        cfg = json.loads((path / CFG_FILE).read_text())
    except json.JSONDecodeError as e:
        msg = f"{path / CFG_FILE}: not valid JSON ({e.msg}, line {e.lineno})"
        raise DictionaryError(msg) from None
    try:
        tensors = load_file(path / WEIGHTS_FILE)
    except (SafetensorError, OSError) as e:
        raise DictionaryError(f"{path / WEIGHTS_FILE}: unreadable safetensors file ({e})") from None
    return _from_parts(cfg, tensors, str(path))


def _sae_lens():
    try:
        import sae_lens
    except ImportError as e:  # pragma: no cover - the interp extra installs it
        raise MissingDependencyError(
            "sae_lens is not installed: pip install 'archlab[interp]'"
        ) from e
    return sae_lens


def to_sae_lens(dic: SparseDictionary, hook_name: str | None = None):
    """The equivalent ``sae_lens`` SAE / transcoder object (weights copied)."""
    _sae_lens()
    from sae_lens.registry import get_sae_class

    cfg = sae_lens_config(dic, hook_name)
    cls, cfg_cls = get_sae_class(cfg["architecture"])
    sae = cls(cfg_cls.from_dict(cfg))
    state = sae_lens_state_dict(dic)
    sae.load_state_dict(state)
    return sae


def from_sae_lens(sae) -> SparseDictionary:
    """A ``SparseDictionary`` with the weights of a ``sae_lens`` SAE / transcoder."""
    cfg = sae.cfg.to_dict()
    tensors = {k: v.detach().cpu() for k, v in sae.state_dict().items()}
    return _from_parts(cfg, tensors, type(sae).__name__)


__all__ = [
    "architecture_name",
    "from_sae_lens",
    "load_sae_lens",
    "save_sae_lens",
    "sae_lens_config",
    "sae_lens_state_dict",
    "to_sae_lens",
]
