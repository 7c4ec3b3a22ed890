"""The "sequence classes" of Scan and Snap (Tian et al., 2023, Fig. 1b), as a generator.

Each next token ``n`` defines a sequence class: its query token is ``m = psi(n)`` (several ``n``
share one ``m``), and its ``T - 1`` contextual tokens are drawn i.i.d. from a conditional
distribution ``P(l | m, n) = P(l | n)`` over the vocabulary. A *common* token has ``P(l|n) > 0``
for many ``n`` (here: every ``n``); a *distinct* token has ``P(l|n) > 0`` for a single ``n``.

The layout and the probabilities follow the official synthetic generator (``Dataset2`` in
facebookresearch/luckmatters ``ssl/real-dataset/decoder_only.py``): token ids are
``[common | distinct of n=0 | distinct of n=1 | ... | query tokens | next tokens]``, a common
token has unnormalised weight ``common_weight``, the distinct tokens of a class have weights
``linspace(p_min, p_max, n_distinct)``, and each row is normalised to sum to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceClassesConfig:
    """Layout of the synthetic sequence classes.

    Attributes:
        n_queries: number of query tokens ``m``.
        n_next_per_query: next tokens per query, ``|psi^{-1}(m)|``.
        n_common: common tokens (``P(l|n) > 0`` for every ``n``).
        n_distinct: distinct tokens per next token ``n``.
        p_min: unnormalised weight of the least frequent distinct token of a class.
        p_max: unnormalised weight of the most frequent distinct token of a class.
        common_weight: unnormalised weight of each common token.
    """

    n_queries: int = 2
    n_next_per_query: int = 2
    n_common: int = 5
    n_distinct: int = 10
    p_min: float = 0.1
    p_max: float = 1.0
    common_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_queries", "n_next_per_query", "n_distinct"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_common < 0:
            raise ValueError(f"n_common must be >= 0, got {self.n_common}")
        if not 0 < self.p_min <= self.p_max:
            raise ValueError(f"need 0 < p_min <= p_max, got {self.p_min}, {self.p_max}")
        if self.common_weight <= 0:
            raise ValueError(f"common_weight must be > 0, got {self.common_weight}")

    @property
    def n_next(self) -> int:
        """Number of next tokens ``n`` (= sequence classes)."""
        return self.n_queries * self.n_next_per_query

    @property
    def M(self) -> int:  # noqa: N802 - the paper's symbol
        """Vocabulary size: common, distinct, query and next tokens."""
        return self.n_common + self.n_next * self.n_distinct + self.n_queries + self.n_next


class SequenceClasses:
    """Sampler of ``(x, y)``: ``x`` (B, T) = ``T - 1`` context tokens then the query ``x_T``.

    Attributes:
        cfg: the layout.
        probs: (N, M) ``P(l | n)``, one row per sequence class ``n``.
        query: (N,) query token ``psi(n)`` of each class.
        next_token: (N,) the token id of each next token ``n`` (the prediction target).
        common: (n_common,) ids of the common tokens.
        distinct: (N, n_distinct) ids of the distinct tokens of each class, in increasing
            ``P(l | n)``.
    """

    def __init__(self, cfg: SequenceClassesConfig):
        self.cfg = cfg
        N, D, C = cfg.n_next, cfg.n_distinct, cfg.n_common
        distinct0 = C
        query0 = distinct0 + N * D
        next0 = query0 + cfg.n_queries
        self.common = torch.arange(C)
        self.distinct = distinct0 + torch.arange(N * D).view(N, D)
        self.query = query0 + torch.arange(N) // cfg.n_next_per_query
        self.next_token = next0 + torch.arange(N)
        weights = torch.zeros(N, cfg.M, dtype=torch.float64)
        weights[:, :C] = cfg.common_weight
        ramp = torch.linspace(cfg.p_min, cfg.p_max, D, dtype=torch.float64)
        for n in range(N):
            weights[n, self.distinct[n]] = ramp
        self.probs = (weights / weights.sum(1, keepdim=True)).float()

    @property
    def M(self) -> int:  # noqa: N802 - the paper's symbol
        return self.cfg.M

    @property
    def n_next(self) -> int:
        return self.cfg.n_next

    def sample(
        self,
        batch_size: int,
        T: int,
        generator: torch.Generator,
        classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw sequences of length ``T`` (context ``T - 1`` plus the query).

        Args:
            batch_size: number of sequences (ignored when ``classes`` is given).
            T: sequence length, ``>= 2``.
            generator: the random source.
            classes: optional (B,) class indices; uniform over the classes otherwise.

        Returns:
            ``x`` (B, T) tokens, ``y`` (B,) next-token ids, ``n`` (B,) class indices.
        """
        if T < 2:
            raise ValueError(f"T must be >= 2 (context plus query), got {T}")
        if classes is None:
            classes = torch.randint(0, self.n_next, (batch_size,), generator=generator)
        context = torch.multinomial(
            self.probs[classes], T - 1, replacement=True, generator=generator
        )  # (B, T-1)
        x = torch.cat([context, self.query[classes, None]], dim=1)  # (B, T)
        return x, self.next_token[classes], classes

    def balanced(self, per_class: int, T: int, generator: torch.Generator):
        """``per_class`` sequences of every class, in class order (an evaluation set)."""
        classes = torch.arange(self.n_next).repeat_interleave(per_class)
        return self.sample(len(classes), T, generator, classes)


TINY = SequenceClassesConfig(n_queries=1, n_next_per_query=2, n_common=3, n_distinct=4)
BASE = SequenceClassesConfig()
LAYOUTS = {"tiny": TINY, "base": BASE}
