import numpy as np
import pytest
import torch

from ded.evaluation.probes import pca_shift, repr_similarity, response_stats
from ded.training.sft import to_dataset_rows


def test_pca_shift_in_reference_std_units():
    rng = np.random.default_rng(0)
    scales = np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    ref = rng.normal(size=(4000, 5)) * scales
    other = rng.normal(size=(4000, 5)) * scales + np.array([3 * 5.0, 0, 0, 0, 0])  # 3 std along PC1
    r = pca_shift(ref, other, components=2)
    assert r["shift"] == pytest.approx(3.0, rel=0.05)
    assert pca_shift(ref, ref[:2000], components=2)["shift"] < 0.1
    assert r["ref_xy"].shape == (4000, 2) and r["explained"][0] > 0.8


def test_repr_similarity_orders_known_shifts_and_ignores_scale():
    """Synthetic clouds in 64 dimensions: a corpus drawn like the reference scores near 1, and the
    score falls as the corpus moves away (2, 4, 8, 16 reference std along one direction) or
    collapses to one point; scaling every state (another architecture's units) changes nothing."""
    rng = np.random.default_rng(0)
    d, n = 64, 48
    own = rng.normal(size=(n, d))
    same = rng.normal(size=(n, d))
    moved = [rng.normal(size=(n, d)) + s * np.eye(d)[0] for s in [2.0, 4.0, 8.0, 16.0]]
    scores = [repr_similarity(own, same)] + [repr_similarity(own, m) for m in moved]
    assert scores[0] == pytest.approx(1.0, abs=0.02) and all(a > b for a, b in zip(scores, scores[1:])), scores
    assert 0.39 < scores[-1] < 0.7  # far apart: the two within-set terms alone (0.61 each in 64 dims) are the floor
    point = np.tile(own.mean(0), (n, 1))  # every example the same state: not the reference's distribution
    assert repr_similarity(own, point) < scores[0]
    assert repr_similarity(own * 1000.0, moved[1] * 1000.0) == pytest.approx(scores[2], abs=1e-9)
    assert 1.0 < repr_similarity(own, own) < 1.02  # unbiased: the cross term's self-pairs are not left out, so a set against itself passes 1
    assert np.isnan(repr_similarity(own[:1], same)) and np.isnan(repr_similarity(own, same[:1]))


def test_entropy_and_hidden_states_match_a_direct_computation(smollm_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm_path)
    model = AutoModelForCausalLM.from_pretrained(smollm_path).eval()
    corpus = [{"question": "What is $2 + 3$?", "response": "$2 + 3 = 5$. The answer is $\\boxed{5}$."},
              {"question": "What is $41 + 1$?", "response": "$\\boxed{42}$"}]
    rows = to_dataset_rows(tok, corpus, [])
    ent, feats = response_stats(model, tok, rows, batch_size=2)  # padded batch
    # Direct: one example at a time, no padding.
    total, count, direct_feats = 0.0, 0, []
    with torch.no_grad():
        for r in rows:
            p = tok(r["prompt"], add_special_tokens=False).input_ids
            c = tok(r["completion"], add_special_tokens=False).input_ids
            out = model(torch.tensor([p + c]), output_hidden_states=True)
            logp = torch.log_softmax(out.logits[0, len(p) - 1 : len(p) + len(c) - 1], -1)
            total += float(-(logp.exp() * logp).sum(-1).sum())
            count += len(c)
            direct_feats.append(out.hidden_states[-1][0, len(p):].mean(0).numpy())
    assert ent == pytest.approx(total / count, rel=1e-4)
    assert np.allclose(feats, np.stack(direct_feats), atol=1e-3)
    assert 0 < ent < np.log(tok.vocab_size)
