"""Lossless Compression with Probabilistic Circuits: the hidden Chow-Liu tree (HCLT).

Anji Liu, Stephan Mandt, Guy Van den Broeck, 2022 (ICLR), arXiv 2111.11632. Official code:
Tractables/PressedJuice.jl (Julia) and pyjuice (``pyjuice.structures.HCLT``). Paper card,
deviations and measured results: README.md beside this file.

An HCLT over ``D`` categorical variables ``X_i`` (values ``0 .. V-1``) puts a latent ``Z_i`` of
``K`` states on every node of the Chow-Liu tree of the variables (the spanning tree with the
largest total pairwise mutual information). With ``pa(i)`` the parent of ``i`` and ``r`` the root,

    p(x) = sum_z P(z_r) prod_{i != r} P(z_i | z_pa(i)) prod_i P(x_i | z_i),

which is a smooth, structured-decomposable probabilistic circuit: sum units hold
``P(Z_c | Z_p)`` (and ``P(Z_r)``), input units the categorical leaves ``P(X_i | Z_i)``. One upward
pass (``HCLT.log_marginal``) evaluates any marginal exactly: the leaves of unobserved variables
are set to 1. The conditionals the coder needs, ``p(x_k | x_<k)``, come from the upward pass and
one downward pass along the path from the root to ``k`` (``HCLT.conditional``). Parameters are
learned by EM (``em_fit``): expected counts are the gradients of ``sum log p(x)`` with respect to
the log-parameters, mini-batch EM with an annealed step size, then full-batch EM.

Glossary: ``B`` images, ``D`` variables (pixels), ``K`` latent states, ``V`` categories.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.registry import PaperSpec


class CompressionInputError(ArchlabError, ValueError):
    """An image batch of the wrong shape or with values outside the model's alphabet."""


@dataclass(frozen=True)
class HCLTConfig:
    """Hyperparameters of a hidden Chow-Liu tree over an ``H x W`` image.

    Attributes:
        shape: ``(H, W)``, the image shape; the circuit has ``D = H * W`` variables.
        n_cats: ``V``, the alphabet size of every variable (2 binary, 256 for 8-bit).
        n_latents: ``K``, the states of each hidden variable ``Z_i`` (1: independent pixels).
        pseudocount: Laplace smoothing added to the EM counts of every sum / input unit
            (pyjuice's default 0.1), spread evenly over the unit's children.
        n_bins: the variables are binned to at most this many levels to estimate the pairwise
            mutual information of the Chow-Liu tree (pyjuice's ``num_bins``).
    """

    shape: tuple[int, int] = (8, 8)
    n_cats: int = 2
    n_latents: int = 16
    pseudocount: float = 0.1
    n_bins: int = 16

    def __post_init__(self) -> None:
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape must be (H, W) with H, W >= 1, got {self.shape}")
        if self.n_cats < 2 or self.n_latents < 1 or self.n_bins < 2:
            raise ValueError(f"n_cats >= 2, n_latents >= 1 and n_bins >= 2 needed, got "
                             f"{self.n_cats}, {self.n_latents}, {self.n_bins}")  # fmt: skip
        if self.pseudocount < 0:
            raise ValueError(f"pseudocount must be >= 0, got {self.pseudocount}")

    @property
    def n_vars(self) -> int:
        return self.shape[0] * self.shape[1]


# ---------------------------------------------------------------------------------- structure
def mutual_information(x: Tensor, n_cats: int, n_bins: int = 16) -> Tensor:
    """Empirical pairwise mutual information (nats) of ``D`` categorical variables.

    Values are binned to ``min(n_cats, n_bins)`` levels first (``floor(v * bins / n_cats)``).

    Args:
        x: (N, D) integer samples in ``0 .. n_cats-1``.

    Returns:
        (D, D) symmetric matrix, zero diagonal.
    """
    n, d = x.shape
    bins = min(n_cats, n_bins)
    b = (x.long() * bins) // n_cats  # (N, D) in 0..bins-1
    onehot = torch.zeros(n, d, bins, dtype=torch.float64)
    onehot.scatter_(2, b[..., None], 1.0)
    flat = onehot.reshape(n, d * bins)  # (N, D*bins)
    joint = (flat.T @ flat / n).reshape(d, bins, d, bins).permute(0, 2, 1, 3)  # (D, D, b, b)
    marg = onehot.mean(0)  # (D, bins)
    outer = marg[:, None, :, None] * marg[None, :, None, :]  # (D, D, b, b)
    ratio = torch.where(joint > 0, joint / outer.clamp_min(1e-300), torch.ones_like(joint))
    mi = (joint * ratio.log()).sum((-1, -2))  # (D, D)
    mi.fill_diagonal_(0.0)
    return mi.clamp_min(0.0)


def max_spanning_tree(weights: Tensor) -> list[tuple[int, int]]:
    """Edges of a maximum-weight spanning tree of a dense symmetric weight matrix (scipy MST on
    ``c - w`` with ``c`` above every weight, so every pair stays an edge)."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    w = weights.double().numpy()
    d = w.shape[0]
    if d == 1:
        return []
    cost = (w.max() + 1.0) - w
    np.fill_diagonal(cost, 0.0)
    tree = minimum_spanning_tree(cost).tocoo()
    return sorted((min(int(a), int(b)), max(int(a), int(b))) for a, b in zip(tree.row, tree.col))


def root_tree(n_vars: int, edges: list[tuple[int, int]]) -> Tensor:
    """Orient a spanning tree at its centre (the node whose farthest node is nearest), which
    keeps the number of levels of the upward pass small. Returns ``parent`` (D,), -1 at root."""
    adj: list[list[int]] = [[] for _ in range(n_vars)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)

    def bfs(src: int) -> tuple[list[int], list[int]]:
        dist, par, queue = [-1] * n_vars, [-1] * n_vars, [src]
        dist[src] = 0
        for u in queue:
            for v in adj[u]:
                if dist[v] < 0:
                    dist[v], par[v] = dist[u] + 1, u
                    queue.append(v)
        if min(dist) < 0:
            raise ValueError("the edges do not span the variables")
        return dist, par

    root = min(range(n_vars), key=lambda s: (max(bfs(s)[0]), s))
    return torch.tensor(bfs(root)[1], dtype=torch.long)


def chow_liu_tree(x: Tensor, n_cats: int, n_bins: int = 16) -> Tensor:
    """The Chow-Liu tree of samples ``x`` (N, D): ``parent`` (D,) with -1 at the root."""
    return root_tree(x.shape[1], max_spanning_tree(mutual_information(x, n_cats, n_bins)))


def _log_matvec(u: Tensor, log_m: Tensor) -> Tensor:
    """``log sum_j exp(u[..., j] + log_m[n, i, j])`` for every ``i``: (B, n, K), (n, K', K) ->
    (B, n, K'), stably (max-shift, then a batched matrix product)."""
    m = u.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    out = torch.einsum("bnj,nij->bni", (u - m).exp(), log_m.exp())
    return out.log() + m


# ---------------------------------------------------------------------------------- the circuit
class HCLT(nn.Module):
    """A hidden Chow-Liu tree probabilistic circuit over ``H x W`` categorical pixels.

    Parameters are stored as logits; the circuit's parameters are their softmax:
    ``root_logits`` (K,) for ``P(Z_r)``, ``edge_logits`` (D, K, K) for ``P(Z_i | Z_pa(i))``
    indexed ``[i, z_parent, z_i]`` (row ``r`` unused), ``leaf_logits`` (D, K, V) for
    ``P(X_i | Z_i)``. The tree is the buffer ``parent`` (D,) (-1 at the root); a new model
    has a chain in raster order until ``set_tree`` is given the Chow-Liu tree.

    ``forward(x)``: (B, H, W) or (B, D) integer images -> (B,) ``log p(x)`` in nats.
    """

    def __init__(self, cfg: HCLTConfig):
        super().__init__()
        self.cfg = cfg
        d, k, v = cfg.n_vars, cfg.n_latents, cfg.n_cats
        self.root_logits = nn.Parameter(torch.empty(k, dtype=torch.float64))
        self.edge_logits = nn.Parameter(torch.empty(d, k, k, dtype=torch.float64))
        self.leaf_logits = nn.Parameter(torch.empty(d, k, v, dtype=torch.float64))
        self.reset_parameters()
        chain = torch.arange(-1, d - 1)
        self.register_buffer("parent", chain)
        self._levels: list[tuple[Tensor, Tensor]] = []
        self._paths: list[list[int]] = []
        self.set_tree(chain)

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator | None = None) -> None:
        """pyjuice's initialisation: each probability proportional to ``exp(-2 u)``,
        ``u ~ U(0, 1)`` (``g``: the generator; None uses torch's default)."""
        for p in (self.root_logits, self.edge_logits, self.leaf_logits):
            p.copy_(-2.0 * torch.rand(p.shape, generator=g, dtype=torch.float64))

    # -------------------------------------------------------------- structure
    def set_tree(self, parent: Tensor) -> None:
        """Use the tree ``parent`` (D,), -1 at the (single) root."""
        parent = torch.as_tensor(parent, dtype=torch.long).clone()
        d = self.cfg.n_vars
        if parent.shape != (d,) or int((parent < 0).sum()) != 1:
            raise ValueError(f"parent must be (D={d},) with exactly one root (-1)")
        depth = [-1] * d
        for i in range(d):  # depth by walking up (with a cycle guard)
            chain, j = [], i
            while depth[j] < 0 and parent[j] >= 0 and len(chain) <= d:
                chain.append(j)
                j = int(parent[j])
            if len(chain) > d:
                raise ValueError("parent does not describe a tree (cycle)")
            base = depth[j] if depth[j] >= 0 else 0
            depth[j] = base
            for n, node in enumerate(reversed(chain), 1):
                depth[node] = base + n
        self.parent.copy_(parent)
        self.root = int((parent < 0).nonzero()[0, 0])
        levels = []  # deepest first: (nodes, positions of their parents in the level above)
        for level in range(max(depth), -1, -1):
            nodes = [i for i in range(d) if depth[i] == level]
            above = {j: n for n, j in enumerate(i for i in range(d) if depth[i] == level - 1)}
            up = [above[int(parent[i])] for i in nodes] if level > 0 else []
            levels.append(
                (torch.tensor(nodes, dtype=torch.long), torch.tensor(up, dtype=torch.long))
            )
        self._levels = levels
        self._inverse = torch.argsort(torch.cat([nodes for nodes, _ in levels]))
        self._children = [torch.tensor([c for c in range(d) if int(parent[c]) == i],
                                       dtype=torch.long) for i in range(d)]  # fmt: skip
        self._paths = []
        for i in range(d):  # root -> i
            path, j = [i], i
            while parent[j] >= 0:
                j = int(parent[j])
                path.append(j)
            self._paths.append(path[::-1])

    @property
    def depth(self) -> int:
        """Levels below the root (the number of sequential steps of an upward pass)."""
        return len(self._levels) - 1

    def edges(self) -> list[tuple[int, int]]:
        """The tree's undirected edges, ``(min, max)`` sorted."""
        return sorted((min(i, int(p)), max(i, int(p))) for i, p in enumerate(self.parent) if p >= 0)

    # -------------------------------------------------------------- parameters
    def log_params(self) -> tuple[Tensor, Tensor, Tensor]:
        """``log P(Z_r)`` (K,), ``log P(Z_i | Z_pa(i))`` (D, K, K), ``log P(X_i | Z_i)``
        (D, K, V)."""
        return (self.root_logits.log_softmax(-1), self.edge_logits.log_softmax(-1),
                self.leaf_logits.log_softmax(-1))  # fmt: skip

    @torch.no_grad()
    def set_params(self, root: Tensor, edge: Tensor, leaf: Tensor) -> None:
        """Set the circuit's probabilities (each normalised over its last axis)."""
        self.root_logits.copy_(root.clamp_min(1e-300).log())
        self.edge_logits.copy_(edge.clamp_min(1e-300).log())
        self.leaf_logits.copy_(leaf.clamp_min(1e-300).log())

    def check_images(self, x: Tensor | np.ndarray) -> Tensor:
        """(B, H, W) or (B, D) integer images in ``0 .. V-1`` -> (B, D) int64, or a one-line
        ``CompressionInputError`` naming what was expected."""
        h, w = self.cfg.shape
        v = self.cfg.n_cats
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        want = f"integer images of shape (B, {h}, {w}) or (B, {h * w}) with values in 0..{v - 1}"
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise CompressionInputError(f"expected {want}, got dtype {x.dtype}")
        if tuple(x.shape[1:]) not in ((h, w), (h * w,)) or x.dim() not in (2, 3):
            raise CompressionInputError(f"expected {want}, got shape {tuple(x.shape)}")
        x = x.reshape(x.shape[0], h * w).long()
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= v):
            raise CompressionInputError(f"expected {want}, got values in "
                                        f"{int(x.min())}..{int(x.max())}")  # fmt: skip
        return x

    # -------------------------------------------------------------- inference
    def leaf_log(self, x: Tensor, observed: Tensor | None, log_leaf: Tensor) -> Tensor:
        """``log L_i(z)``: ``log P(x_i | z)`` where observed, 0 (the leaf set to 1) elsewhere.

        Args:
            x: (B, D) int64; entries that are not observed are ignored.
            observed: (B, D) or (D,) bool, or None (all observed).
            log_leaf: (D, K, V).

        Returns:
            (B, D, K).
        """
        d = x.shape[1]
        table = log_leaf.transpose(1, 2)  # (D, V, K)
        vals = table[torch.arange(d)[None, :], x]  # (B, D, K)
        if observed is None:
            return vals
        return torch.where(observed.expand(x.shape)[..., None], vals, torch.zeros_like(vals))

    def upward(self, leaf: Tensor, log_edge: Tensor) -> tuple[Tensor, Tensor]:
        """The upward pass, level by level from the deepest: (B, D, K) leaf logs -> ``acc``
        (B, D, K), each node's leaf plus its children's messages
        (``log p(evidence in subtree(i) | z_i)``), and ``msg`` (B, D, K), each node's message to
        its parent in the parent's states (zeros at the root)."""
        accs, msgs = [], []
        c, below_up = None, None
        for nodes, up in self._levels:
            a = leaf[:, nodes]  # (B, n, K)
            if c is not None and below_up is not None:
                a = a.index_add(1, below_up, c)  # add the children's messages
            c = _log_matvec(a, log_edge[nodes]) if len(up) else torch.zeros_like(a)
            accs.append(a)
            msgs.append(c)
            below_up = up
        acc = torch.cat(accs, 1)[:, self._inverse]  # (B, D, K) in node order
        msg = torch.cat(msgs, 1)[:, self._inverse]
        return acc, msg

    def log_marginal(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """``log p(x_S)`` (B,) of the observed entries ``S`` (nats): unobserved leaves are 1."""
        log_root, log_edge, log_leaf = self.log_params()
        x = self.check_images(x)
        acc, _ = self.upward(self.leaf_log(x, observed, log_leaf), log_edge)
        return torch.logsumexp(acc[:, self.root] + log_root, -1)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W) -> (B,)
        return self.log_marginal(x)

    def _down_to(self, k: int, log_root: Tensor, log_edge: Tensor, log_leaf: Tensor,
                 acc: Tensor, msg: Tensor) -> Tensor:  # fmt: skip
        """``p(x_k = v | evidence)`` (B, V) from the upward values ``acc``, ``msg`` (B, D, K)
        (computed with ``x_k``'s leaf set to 1) and the downward message along root -> ``k``."""
        down = log_root.expand(acc.shape[0], -1)  # (B, K): log p(e outside subtree, z)
        path = self._paths[k]
        for p, c in zip(path[:-1], path[1:]):
            out = down + acc[:, p] - msg[:, c]  # (B, K_p): all evidence at p but c's subtree
            down = _log_matvec(out[:, None], log_edge[c].T[None])[:, 0]  # (B, K_c)
        post = down + acc[:, k]  # (B, K) log p(e, z_k)
        post = (post - post.logsumexp(-1, keepdim=True)).exp()
        return post @ log_leaf[k].exp()  # (B, V)

    def conditional(self, x: Tensor, k: int, observed: Tensor) -> Tensor:
        """``p(x_k = v | x_observed)`` for every ``v``: (B, D) images -> (B, V) probabilities.

        The naive evaluation: a full upward pass with ``x_k`` and the other unobserved leaves
        set to 1, then the downward message along the root-to-``k`` path gives
        ``p(x_observed, Z_k)``; mixing the leaf ``P(X_k | Z_k)`` with its normalisation gives the
        conditional. The coder uses the cached evaluation (``start_coding`` / ``observe`` /
        ``next_conditional``), which equals this one.
        """
        with torch.no_grad():
            log_root, log_edge, log_leaf = self.log_params()
            obs = observed.clone()
            obs[..., k] = False
            acc, msg = self.upward(self.leaf_log(x, obs, log_leaf), log_edge)
            return self._down_to(k, log_root, log_edge, log_leaf, acc, msg)

    # -------------------------------------------------------------- cached coding
    @torch.no_grad()
    def start_coding(self, b: int) -> dict:
        """The cached state of ``b`` images with no pixel observed yet (the paper's reuse of
        unchanged node values): parameters, leaf values, ``acc`` and ``msg`` (B, D, K)."""
        log_root, log_edge, log_leaf = self.log_params()
        leaf = torch.zeros(b, self.cfg.n_vars, self.cfg.n_latents, dtype=log_edge.dtype)
        acc, msg = self.upward(leaf, log_edge)
        return {"params": (log_root, log_edge, log_leaf), "leaf": leaf, "acc": acc, "msg": msg}

    @torch.no_grad()
    def next_conditional(self, state: dict, k: int) -> Tensor:
        """``p(x_k | the pixels observed so far)`` (B, V) from the cached state: only the
        root-to-``k`` path is evaluated."""
        return self._down_to(k, *state["params"], state["acc"], state["msg"])

    @torch.no_grad()
    def observe(self, state: dict, k: int, values: Tensor) -> None:
        """Observe ``x_k = values`` (B,) in the cached state: only ``k`` and its ancestors are
        re-evaluated (each node's ``acc`` is its leaf plus its children's messages)."""
        _, log_edge, log_leaf = state["params"]
        leaf, acc, msg = state["leaf"], state["acc"], state["msg"]
        leaf[:, k] = log_leaf[k][:, values.long()].T  # (B, K)
        j = k
        while True:
            acc[:, j] = leaf[:, j] + msg[:, self._children[j]].sum(1)
            if j == self.root:
                break
            msg[:, j] = _log_matvec(acc[:, j : j + 1], log_edge[j : j + 1])[:, 0]
            j = int(self.parent[j])

    def node_evaluations(self, cached: bool) -> int:
        """Nodes evaluated to code one image in raster order: the naive coder runs a full
        upward pass (``D`` nodes) per pixel plus the downward path; the cached coder re-evaluates
        the observed pixel's ancestors and the downward path."""
        d = self.cfg.n_vars
        down = sum(len(p) - 1 for p in self._paths)
        if not cached:
            return d * d + down
        return sum(len(p) for p in self._paths) + down

    def posteriors(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """``P(Z_i | x_observed)`` for every node by autograd (B, D, K): the gradient of
        ``log p`` with respect to the leaf logs (a cross-check of the downward pass)."""
        log_root, log_edge, log_leaf = (t.detach() for t in self.log_params())
        with torch.enable_grad():
            leaf = self.leaf_log(x, observed, log_leaf).requires_grad_(True)
            acc, _ = self.upward(leaf, log_edge)
            lp = torch.logsumexp(acc[:, self.root] + log_root, -1)
            (grad,) = torch.autograd.grad(lp.sum(), leaf)
        return grad


# ---------------------------------------------------------------------------------- learning
def expected_counts(model: HCLT, x: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
    """EM's expected counts (the circuit flows) on a batch, by autograd: the gradient of
    ``sum_b log p(x_b)`` with respect to each log-parameter is the expected number of times
    that parameter is used. Returns root (K,), edge (D, K, K), leaf (D, K, V) counts and the
    summed log-likelihood (nats)."""
    log_root, log_edge, log_leaf = (t.detach().requires_grad_(True) for t in model.log_params())
    with torch.enable_grad():
        acc, _ = model.upward(model.leaf_log(x, None, log_leaf), log_edge)
        lp = torch.logsumexp(acc[:, model.root] + log_root, -1).sum()
        grads = torch.autograd.grad(lp, (log_root, log_edge, log_leaf))
    return grads[0], grads[1], grads[2], float(lp.detach())


def m_step(counts: Tensor, pseudocount: float) -> Tensor:
    """Normalise counts over the last axis with ``pseudocount`` spread over the children
    (pyjuice: ``(flow + pc / n_children) / (sum flow + pc)``)."""
    n = counts.shape[-1]
    num = counts + pseudocount / n
    return num / num.sum(-1, keepdim=True).clamp_min(1e-300)


@dataclass(frozen=True)
class EMSchedule:
    """How EM runs: mini-batch epochs with a step size annealed linearly from ``step_start``
    to ``step_end`` (pyjuice's multi-linear schedule), then full-batch iterations.

    Attributes:
        mini_batch_epochs: passes of mini-batch EM over the training set.
        batch_size: images per mini-batch (also the chunk of the full-batch pass).
        step_start: the first mini-batch step size.
        step_end: the last mini-batch step size.
        full_batch_iters: full-batch EM iterations after the mini-batch phase.
    """

    mini_batch_epochs: int = 2
    batch_size: int = 512
    step_start: float = 0.9
    step_end: float = 0.1
    full_batch_iters: int = 10


def em_fit(
    model: HCLT,
    x: Tensor,
    schedule: EMSchedule,
    g: torch.Generator,
    score: Callable[[HCLT], float] | None = None,
) -> dict[str, list]:
    """Learn the parameters by EM on training images ``x`` (N, D) (the tree is kept).

    Mini-batch EM: ``theta <- (1 - a) theta + a M(counts of the batch)``; full-batch EM:
    ``theta <- M(counts of all of x)``. With ``score`` (a validation bits-per-dimension, lower
    is better), it is evaluated after each full-batch iteration and the model keeps the best
    iteration's parameters (early stopping on validation).

    Returns:
        history: ``train_ll`` (mean train log-likelihood, nats/image, of the parameters before
        each full-batch update and after the last), ``val`` (score per full-batch iteration),
        ``curve`` (``[[update, mean train NLL]]`` over every update), ``best_iter``.
    """
    pc = model.cfg.pseudocount
    n = x.shape[0]
    hist: dict[str, list] = {"train_ll": [], "val": [], "curve": [], "best_iter": [0]}
    n_batches = max(1, math.ceil(n / schedule.batch_size))
    total = schedule.mini_batch_epochs * n_batches
    step = 0
    for _ in range(schedule.mini_batch_epochs):
        perm = torch.randperm(n, generator=g)
        for b in range(n_batches):
            idx = perm[b * schedule.batch_size : (b + 1) * schedule.batch_size]
            if len(idx) == 0:
                continue
            a = schedule.step_start + (schedule.step_end - schedule.step_start) * (
                step / max(1, total - 1)
            )
            cr, ce, cl, ll = expected_counts(model, x[idx])
            root, edge, leaf = (t.detach().exp() for t in model.log_params())
            model.set_params((1 - a) * root + a * m_step(cr, pc), (1 - a) * edge + a *
                             m_step(ce, pc), (1 - a) * leaf + a * m_step(cl, pc))  # fmt: skip
            step += 1
            hist["curve"].append([step, -ll / len(idx)])
    best = (math.inf, None)
    for it in range(schedule.full_batch_iters + 1):
        sums = None
        ll = 0.0
        for b in range(n_batches):
            chunk = x[b * schedule.batch_size : (b + 1) * schedule.batch_size]
            if len(chunk) == 0:
                continue
            cr, ce, cl, part = expected_counts(model, chunk)
            sums = (cr, ce, cl) if sums is None else (sums[0] + cr, sums[1] + ce, sums[2] + cl)
            ll += part
        hist["train_ll"].append(ll / n)
        if it > 0 or schedule.full_batch_iters == 0:
            hist["curve"].append([step, -ll / n])
        if score is not None and (it > 0 or schedule.full_batch_iters == 0):
            val = float(score(model))
            hist["val"].append(val)
            if val < best[0]:
                state = [t.detach().clone() for t in model.log_params()]
                best = (val, state)
                hist["best_iter"] = [it]
        if it == schedule.full_batch_iters:
            break
        model.set_params(*(m_step(c, pc) for c in sums))
        step += 1
    if best[1] is not None:
        model.set_params(*(t.exp() for t in best[1]))
    return hist


def fit_hclt(cfg: HCLTConfig, x: Tensor, schedule: EMSchedule, g: torch.Generator,
             score: Callable[[HCLT], float] | None = None) -> tuple[HCLT, dict]:  # fmt: skip
    """Build an HCLT for ``cfg``, learn its Chow-Liu tree on ``x`` (N, D) and fit it by EM.

    With ``n_latents = 1`` every latent has one state, so the circuit is the independent-pixel
    model ``prod_i P(x_i)`` whatever the tree (a star is used) and EM gives its smoothed
    frequencies in one iteration."""
    model = HCLT(cfg)
    model.reset_parameters(g)
    x = model.check_images(x)
    if cfg.n_latents > 1 and cfg.n_vars > 1:
        model.set_tree(chow_liu_tree(x, cfg.n_cats, cfg.n_bins))
    elif cfg.n_vars > 1:  # K = 1 is the independent-pixel model; a star keeps one level
        model.set_tree(torch.tensor([-1] + [0] * (cfg.n_vars - 1)))
    return model, em_fit(model, x, schedule, g, score)


VARIANTS = {
    "tiny": HCLTConfig(shape=(4, 4), n_cats=2, n_latents=4),
    "base": HCLTConfig(),
    "digits_binary": HCLTConfig(shape=(8, 8), n_cats=2, n_latents=16),
    "mnist_8bit": HCLTConfig(shape=(14, 14), n_cats=256, n_latents=16),
}


def _example(model: HCLT, batch_size: int) -> tuple[Tensor]:
    h, w = model.cfg.shape
    return (torch.randint(0, model.cfg.n_cats, (batch_size, h, w)),)


SPEC = PaperSpec(
    slug="pc_compression",
    family="fields",
    title="Lossless Compression with Probabilistic Circuits",
    arxiv="2111.11632",
    claim=(
        "A hidden Chow-Liu tree probabilistic circuit, learned by EM and coded with exact "
        "conditionals and an entropy coder, compresses images losslessly in fewer bits per "
        "dimension than an independent-pixel model and than zlib, bz2 and lzma."
    ),
    config=HCLTConfig,
    build=HCLT,
    variants=VARIANTS,
    example_input=_example,
    capabilities=frozenset({"density", "lossless-compression"}),
    fidelity="simplified",
    experiment="archlab.papers.fields.pc_compression.experiment",
)
