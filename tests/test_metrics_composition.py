import itertools

import numpy as np
import pytest

from d3lm.metrics.composition import (
    Composition,
    KmerSpectrum,
    composition_table,
    cpg_oe,
    gc_content,
    gc_ratio,
    js_divergence,
    kmer_counts,
    kmer_spectrum,
)


def naive_counts(seqs, k):
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    counts = np.zeros(4**k, dtype=np.int64)
    for s in seqs:
        for i in range(len(s) - k + 1):
            if s[i : i + k] in index:
                counts[index[s[i : i + k]]] += 1
    return counts


def test_kmer_counts_match_naive_and_skip_n_and_boundaries():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), p=[0.24] * 4 + [0.04], size=n)) for n in (1, 7, 50)]
    seqs.append("")
    for k in (1, 2, 3, 5):
        np.testing.assert_array_equal(kmer_counts(seqs, k), naive_counts(seqs, k))
    # no window spans two sequences: "AC" + "GT" has no CG
    assert kmer_counts(["AC", "GT"], 2)[1 * 4 + 2] == 0


def test_kmer_spectrum_index_order_and_normalisation():
    spec = kmer_spectrum(["AAT"], 2)
    assert spec[0] == 0.5 and spec[3] == 0.5  # AA = 0, AT = 3
    assert kmer_spectrum(["NNN"], 2).sum() == 0


def test_gc_statistics_by_hand():
    seqs = ["GGGC", "ATCG"]  # A1 C2 G4 T1 ; dinucs: GG GG GC AT TC CG -> CG 1 of 6
    assert gc_content(seqs) == pytest.approx(6 / 8)
    assert gc_ratio(seqs) == pytest.approx(6 / 2)
    assert gc_ratio(seqs, "g_c") == pytest.approx(4 / 2)
    assert cpg_oe(seqs) == pytest.approx((1 / 6) / ((2 / 8) * (4 / 8)))
    with pytest.raises(ValueError, match="definition"):
        gc_ratio(seqs, "gc")


def test_cpg_oe_near_one_for_iid_sequence():
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), size=1000)) for _ in range(20)]
    assert cpg_oe(seqs) == pytest.approx(1.0, abs=0.05)


def test_js_divergence_bounds():
    p = np.array([1.0, 0.0])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(p, np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert 0 < js_divergence(np.array([0.5, 0.5]), np.array([0.9, 0.1])) < 1


def test_composition_table_and_metrics_agree():
    ref = ["ACGTACGTGG", "CCGGAATT"]
    table = composition_table({"ref": ref, "at": ["ATATATAT"]}, ref, ks=(1, 4))
    assert table.loc["ref", "js_k4"] == 0.0
    assert table.loc["at", "gc_content"] == 0.0
    assert table.loc["at", "js_k1"] > 0.1
    metric = Composition()
    metric.update(ref[:1])
    metric.update(ref[1:])
    assert metric.compute()["cpg_oe"] == pytest.approx(table.loc["ref", "cpg_oe"])
    spectrum = KmerSpectrum(3)
    spectrum.update(ref[:1])
    spectrum.update(ref[1:])
    np.testing.assert_allclose(spectrum.compute().numpy(), kmer_spectrum(ref, 3))
