"""Analysis of a corpus under a model: token entropy, PCA shift and representation similarity.

* Token entropy of a corpus under a model: mean over response tokens of the entropy (nats) of
  the model's next-token distribution, teacher-forced on the corpus. The paper relates the
  better teacher to lower entropy of its corpus (QwQ 0.477 vs R1 0.705).
* PCA shift: the model's last-layer hidden states, averaged over the response tokens of each
  example, form a cloud. PCA is fit on a reference cloud; both clouds are projected; the shift
  is the distance between the centroids in units of the reference's standard deviation along
  the components (a Mahalanobis-like distance in the top-k PCA space).
* Representation similarity (``repr_similarity``): how alike two such clouds are as distributions,
  one number, higher = more similar: 1 - MMD^2 / 2, where MMD^2 is the unbiased estimate of the
  squared maximum mean discrepancy (Gretton et al. 2012) under a Gaussian (RBF) kernel whose
  bandwidth is the median pairwise distance within the reference set. With a kernel bounded by 1,
  MMD^2 lies in [0, 2], so the score reads 1 = the same distribution (the Gaussian kernel is
  characteristic: MMD = 0 only then) down to 0 = two tight, disjoint clouds; a ranking by it is the
  MMD's ranking (the unbiased estimate may pass 1 slightly when the two sets are alike). Why this
  measure (the others considered):
  - linear CKA compares two representations *of the same examples*; the student's own answers and
    a teacher's corpus are different examples, so there is nothing to pair;
  - the cosine of the two centroids needs a centre: centred on the reference's own mean the
    reference centroid is 0 and the cosine undefined, centred on the pooled mean two equal-size
    sets always point opposite ways (-1); raw hidden states are anisotropic (every cosine near 1);
  - mean nearest-neighbour cosine depends on those same raw directions and on the set sizes;
  - the cosine of the two kernel mean embeddings (MMD made scale-free) ranks a corpus collapsed
    onto the reference's centroid above a fresh sample of the reference's own distribution (in
    64 Gaussian dimensions 0.998 vs 0.984; this measure ranks them the right way round, the case
    in tests/evaluation/test_probes.py), so it does not measure how alike two distributions are;
  - the unbiased MMD^2 leaves out each set's self-pairs: the plug-in (V-statistic) estimate adds
    (1 - mean within-set kernel) / n per set, which favours tight corpora, here duplicated ones.
  The bandwidth comes from the reference alone (the student's own answers), not from the pooled
  sets, so every teacher's corpus is measured with the same ruler for a given student (the median
  heuristic on the pooled sets would widen the kernel for far-away corpora and so flatter them);
  the median also makes it invariant to the scale of the hidden states, which differs between
  architectures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ExampleStats:
    """Per probe example: mean token entropy over its response tokens (nats; NaN for an empty
    response), its response token count, and its mean last-layer state."""

    entropy: np.ndarray  # [n]
    tokens: np.ndarray  # [n]
    feats: np.ndarray  # [n, hidden]

    @property
    def mean_entropy(self) -> float:
        """Mean over every response token of the set (examples weighted by their length)."""
        n = int(self.tokens.sum())
        return float(np.nansum(self.entropy * self.tokens) / n) if n else 0.0


def response_stats(model, tok, rows: list[dict], batch_size: int = 8) -> tuple[float, np.ndarray]:
    """(mean token entropy over response tokens, [n, hidden] mean last-layer state per example).

    `rows` are {"prompt": text, "completion": text} as rendered for training; `example_stats`
    gives the same per example (entropy, token count, state).
    """
    s = example_stats(model, tok, rows, batch_size)
    return s.mean_entropy, s.feats


def _encode(tok, chunk: list[dict]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Right-padded ids and mask (positions stay those of the unpadded text), and each response span."""
    seqs, spans = [], []
    for r in chunk:
        p = tok(r["prompt"], add_special_tokens=False).input_ids
        c = tok(r["completion"], add_special_tokens=False).input_ids
        seqs.append(p + c)
        spans.append((len(p), len(p) + len(c)))
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    return ids, attn, spans


@torch.inference_mode()
def example_stats(model, tok, rows: list[dict], batch_size: int = 8) -> ExampleStats:
    """Teacher-forced entropy and mean last-layer state of each example's response tokens."""
    device = next(model.parameters()).device
    ents, counts, feats = [], [], []
    for start in range(0, len(rows), batch_size):
        ids, attn, spans = _encode(tok, rows[start : start + batch_size])
        out = model(input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True)
        hidden = out.hidden_states[-1].float()
        for i, (a, b) in enumerate(spans):
            # the distribution over response token j comes from position j-1; only those rows go to
            # float32 (a whole batch's [b, t, vocab] in float32 took GBs at 1k tokens x 49k vocab)
            logp = torch.log_softmax(out.logits[i, a - 1 : b - 1].float(), dim=-1)
            e = -(logp.exp() * logp).sum(-1)
            ents.append(float(e.mean()) if e.numel() else float("nan"))
            counts.append(e.numel())
            feats.append(hidden[i, a:b].mean(0).cpu().numpy())
    hidden_size = model.config.hidden_size
    return ExampleStats(np.array(ents, dtype=float), np.array(counts, dtype=int), np.stack(feats) if feats else np.zeros((0, hidden_size)))


def pca_shift(reference: np.ndarray, other: np.ndarray, components: int = 2) -> dict:
    """Fit PCA on `reference`, project both; centroid distance in reference std units."""
    if len(reference) < 2 or len(other) < 1:
        return {"shift": float("nan"), "ref_xy": np.zeros((0, 2)), "other_xy": np.zeros((0, 2))}
    mu = reference.mean(0)
    _, s, vt = np.linalg.svd(reference - mu, full_matrices=False)
    k = min(components, vt.shape[0])
    basis = vt[:k]
    ref_xy = (reference - mu) @ basis.T
    other_xy = (other - mu) @ basis.T
    std = ref_xy.std(0, ddof=1)
    std[std == 0] = 1.0
    shift = float(np.linalg.norm((other_xy.mean(0) - ref_xy.mean(0)) / std))
    return {"shift": shift, "ref_xy": ref_xy, "other_xy": other_xy, "explained": (s[:k] ** 2 / (s**2).sum()).tolist()}


def repr_similarity(reference: np.ndarray, other: np.ndarray) -> float:
    """1 - MMD^2 / 2 between `reference` and `other` ([n, d] each): unbiased MMD^2 under an RBF kernel
    whose bandwidth is the median pairwise distance within `reference` (see the module docstring).
    About 1.0 for two samples of one distribution; NaN with fewer than 2 points in either set."""
    ref, oth = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if len(ref) < 2 or len(oth) < 2:
        return float("nan")

    def sq_dists(a, b):  # |a_i - b_j|^2, clipped at 0 against rounding
        return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)

    def off_diagonal(m):
        return m[~np.eye(len(m), dtype=bool)]

    d_rr, d_oo, d_ro = sq_dists(ref, ref), sq_dists(oth, oth), sq_dists(ref, oth)
    width2 = float(np.median(off_diagonal(d_rr)))  # median squared distance = squared median distance
    if width2 <= 0:  # the reference is one point repeated: the pooled median instead
        pooled = np.concatenate([off_diagonal(d_rr), off_diagonal(d_oo), d_ro.ravel()])
        width2 = float(np.median(pooled[pooled > 0])) if (pooled > 0).any() else 1.0
    k = lambda d: np.exp(-d / (2 * width2))  # noqa: E731
    mmd2 = off_diagonal(k(d_rr)).mean() + off_diagonal(k(d_oo)).mean() - 2 * k(d_ro).mean()  # unbiased: no self-pairs
    return float(1.0 - mmd2 / 2)
