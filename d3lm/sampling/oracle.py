"""An exact denoiser for testing samplers: a first-order Markov chain over nucleotide tokens.

Given partly masked ids, ``features`` returns the true posterior marginal (log-probabilities)
of every position by forward-backward, and ``logits`` is the identity. A sampler that commits
one token per step with this denoiser draws exactly from the chain; any other deviation is the
sampler's own error (arXiv 2602.19619), which ``bench/sampler_oracle.py`` measures.
``ClassChainsDenoiser`` is the same for a conditional model: one chain per class, their
mixture under the null condition token, so label conditioning and guidance are testable too.
"""

from __future__ import annotations

import torch
from torch import Tensor


class MarkovChainDenoiser:
    """Positions ``start:`` follow the chain (``initial`` (4,), ``transition`` (4, 4), rows
    sum to 1) over tokens ``nucleotide_ids``; earlier positions (``<cls>``) echo their token."""

    time_conditioned = False

    def __init__(
        self,
        initial: Tensor,
        transition: Tensor,
        nucleotide_ids: list[int],
        mask_id: int,
        vocab_size: int,
        start: int = 1,
    ) -> None:
        self.initial, self.transition = initial.double(), transition.double()
        self.nuc = torch.as_tensor(nucleotide_ids)
        self.mask_id, self.vocab_size, self.start = mask_id, vocab_size, start

    def _evidence(self, ids: Tensor) -> Tensor:
        """(B, n, 4) likelihood of each chain state at each position: 1 where masked."""
        chain = ids[:, self.start :]
        masked = (chain == self.mask_id)[..., None]
        return (masked | (chain[..., None] == self.nuc.to(ids.device))).double()

    def _forward_backward(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ev = self._evidence(ids)
        n = ev.shape[1]
        fwd, bwd = [self.initial * ev[:, 0]], [torch.ones_like(ev[:, 0])]
        for i in range(1, n):
            a = (fwd[-1] @ self.transition) * ev[:, i]
            fwd.append(a / a.sum(-1, keepdim=True))
        for i in range(n - 2, -1, -1):
            b = (bwd[0] * ev[:, i + 1]) @ self.transition.T
            bwd.insert(0, b / b.sum(-1, keepdim=True))
        return torch.stack(fwd, 1), torch.stack(bwd, 1), ev

    def log_evidence(self, ids: Tensor) -> Tensor:
        """(B,) log-probability of the chain's unmasked tokens (masked ones summed out)."""
        ev = self._evidence(ids)
        a = self.initial * ev[:, 0]
        log = torch.zeros(len(ids), dtype=torch.float64, device=ids.device)
        for i in range(1, ev.shape[1]):
            z = a.sum(-1, keepdim=True)
            log += z.squeeze(-1).log()
            a = ((a / z) @ self.transition) * ev[:, i]
        return log + a.sum(-1).log()

    def marginals(self, ids: Tensor) -> Tensor:
        """(B, n, 4) posterior probability of each nucleotide at each chain position."""
        fwd, bwd, _ = self._forward_backward(ids)
        m = fwd * bwd
        return m / m.sum(-1, keepdim=True)

    def pair_marginals(self, ids: Tensor) -> Tensor:
        """(B, n - 1, 4, 4) posterior of (x_i, x_{i+1}) for adjacent chain positions."""
        fwd, bwd, ev = self._forward_backward(ids)
        xi = fwd[:, :-1, :, None] * self.transition * (ev * bwd)[:, 1:, None, :]
        return xi / xi.sum((-2, -1), keepdim=True)

    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        out = torch.full(
            (*ids.shape, self.vocab_size), float("-inf"), dtype=torch.float64, device=ids.device
        )
        head = ids[:, : self.start]
        out[:, : self.start].scatter_(-1, head[..., None], 0.0)
        out[:, self.start :, self.nuc.to(ids.device)] = self.marginals(ids).log()
        return out if at is None else out[at]

    def logits(self, features: Tensor) -> Tensor:
        return features


class ClassChainsDenoiser:
    """An exact *conditional* denoiser: class ``k`` (condition id ``first_id + k`` at position 0,
    :mod:`d3lm.conditioning`) is chain ``chains[k]``; the null id ``first_id + len(chains)`` is
    their mixture with weights ``prior``, whose posterior weighs each chain by how well it
    explains the known tokens. Its logits are V wide (the condition ids are never predicted)."""

    time_conditioned = False

    def __init__(self, chains: list[MarkovChainDenoiser], prior: Tensor, first_id: int) -> None:
        self.chains, self.prior = chains, prior.double()
        self.mask_id, self.vocab_size = chains[0].mask_id, chains[0].vocab_size
        self.first_id, self.null_id = first_id, first_id + len(chains)

    def class_weights(self, ids: Tensor) -> Tensor:
        """(B, K) posterior class probabilities: one-hot for a class token; for the null token
        the prior times each chain's likelihood of the known tokens, normalised."""
        log = torch.stack([chain.log_evidence(ids) for chain in self.chains], -1)
        mixture = torch.softmax(log + self.prior.log().to(ids.device), -1)
        token = ids[:, 0] - self.first_id
        onehot = torch.nn.functional.one_hot(token.clamp(0, len(self.chains) - 1), len(self.chains))
        return torch.where((token == len(self.chains))[:, None], mixture, onehot.double())

    def marginals(self, ids: Tensor) -> Tensor:
        """(B, n, 4) posterior of each chain position, mixed over the class posterior."""
        each = torch.stack([chain.marginals(ids) for chain in self.chains], -1)
        return (each * self.class_weights(ids)[:, None, None]).sum(-1)

    def pair_marginals(self, ids: Tensor) -> Tensor:
        """(B, n - 1, 4, 4) posterior of adjacent pairs, mixed over the class posterior."""
        each = torch.stack([chain.pair_marginals(ids) for chain in self.chains], -1)
        return (each * self.class_weights(ids)[:, None, None, None]).sum(-1)

    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        """Log posterior marginals at chain positions; uniform at the condition slot (known,
        never drawn)."""
        chain = self.chains[0]
        out = torch.full(
            (*ids.shape, self.vocab_size), float("-inf"), dtype=torch.float64, device=ids.device
        )
        out[:, : chain.start] = 0.0
        out[:, : chain.start, self.mask_id] = float("-inf")
        out[:, chain.start :, chain.nuc.to(ids.device)] = self.marginals(ids).log()
        return out if at is None else out[at]

    def logits(self, features: Tensor) -> Tensor:
        return features


#: A toy vocabulary (``<pad> <mask> <cls> A C G T``) for exact sampler tests and benchmarks.
TOY_MASK, TOY_CLS, TOY_VOCAB, TOY_NUCLEOTIDES = 1, 2, 7, [3, 4, 5, 6]
#: A chain with strong neighbour dependence (runs, CpG-like avoidance), so that a sampler that
#: draws positions independently is detectable.
TOY_INITIAL = torch.tensor([0.1, 0.4, 0.4, 0.1])
TOY_TRANSITION = torch.tensor(
    [
        [0.70, 0.10, 0.10, 0.10],
        [0.10, 0.10, 0.70, 0.10],
        [0.20, 0.50, 0.10, 0.20],
        [0.10, 0.10, 0.10, 0.70],
    ]
)


def toy_chain() -> MarkovChainDenoiser:
    """The exact denoiser of the toy chain over the toy vocabulary."""
    return MarkovChainDenoiser(TOY_INITIAL, TOY_TRANSITION, TOY_NUCLEOTIDES, TOY_MASK, TOY_VOCAB)


def toy_layout(n_nucleotides: int) -> Tensor:
    """``<cls>`` then ``n_nucleotides`` positions that allow any of A, C, G, T."""
    layout = torch.zeros(1 + n_nucleotides, TOY_VOCAB, dtype=torch.bool)
    layout[0, TOY_CLS] = True
    layout[1:, TOY_NUCLEOTIDES] = True
    return layout


#: A second toy class: GC-rich with C/G alternation, unlike the runs of ``TOY_TRANSITION``.
TOY_GC_INITIAL = torch.tensor([0.1, 0.3, 0.5, 0.1])
TOY_GC_TRANSITION = torch.tensor(
    [
        [0.10, 0.40, 0.40, 0.10],
        [0.05, 0.15, 0.70, 0.10],
        [0.10, 0.60, 0.20, 0.10],
        [0.30, 0.30, 0.30, 0.10],
    ]
)
#: Condition ids of the toy classes follow the toy vocabulary: 7, 8 (classes), 9 (null).
TOY_CLASSES_PRIOR = torch.tensor([0.3, 0.7])


def toy_classes() -> ClassChainsDenoiser:
    """The exact conditional denoiser of two toy classes (the toy chain, a GC-rich chain)."""
    gc = MarkovChainDenoiser(
        TOY_GC_INITIAL, TOY_GC_TRANSITION, TOY_NUCLEOTIDES, TOY_MASK, TOY_VOCAB
    )
    return ClassChainsDenoiser([toy_chain(), gc], TOY_CLASSES_PRIOR, TOY_VOCAB)
