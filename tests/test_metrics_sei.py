import copy

import pytest
import torch

from d3lm.metrics.features.sei import Sei, SeiFeatures, bspline_basis, load_sei_weights

OFFICIAL_PREFIXES = [
    "lconv1.0",
    "lconv1.1",
    "conv1.0",
    "conv1.2",
    "lconv2.2",
    "lconv2.3",
    "conv2.1",
    "conv2.3",
    "lconv3.2",
    "lconv3.3",
    "conv3.1",
    "conv3.3",
    "dconv1.1",
    "dconv2.1",
    "dconv3.1",
    "dconv4.1",
    "dconv5.1",
    "classifier.0",
    "classifier.2",
]


@pytest.fixture(scope="module")
def small_sei() -> Sei:
    torch.manual_seed(0)
    return Sei(sequence_length=256, n_outputs=7).eval()


def test_parameter_names_are_the_official_ones(small_sei):
    names = set(small_sei.state_dict())
    assert names == {f"{p}.{w}" for p in OFFICIAL_PREFIXES for w in ("weight", "bias")}


def test_spline_basis_is_a_partition_of_unity():
    basis = bspline_basis(256, 16)
    assert basis.shape == (256, 16)
    torch.testing.assert_close(basis.sum(1), torch.ones(256))


def test_loads_prefixed_checkpoint_and_names_mismatches(small_sei, tmp_path):
    wrapped = {f"module.model.{k}": v for k, v in small_sei.state_dict().items()}
    torch.save({"state_dict": wrapped}, tmp_path / "sei.pth")
    fresh = copy.deepcopy(small_sei)
    torch.nn.init.zeros_(fresh.classifier[2].bias)
    load_sei_weights(fresh, tmp_path / "sei.pth")
    torch.testing.assert_close(fresh.classifier[2].bias, small_sei.classifier[2].bias)

    broken = dict(small_sei.state_dict())
    broken["extra.weight"] = broken.pop("dconv3.1.weight")
    torch.save(broken, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*dconv3\.1\.weight.*extra\.weight"):
        load_sei_weights(fresh, tmp_path / "bad.pth")


def test_features_pad_centre_and_strand_average(small_sei):
    features = SeiFeatures(None, layer="output", model=small_sei, batch_size=2)
    x = features.encode(["ACGT" * 25])
    assert x.shape == (1, 4, 256)
    assert torch.all(x[0, :, :78] == 0.25) and torch.all(x[0, :, 178:] == 0.25)
    assert x[0, 0, 78] == 1  # the sequence starts with A at (256 - 100) // 2
    out = features(["ACGT" * 25, "TTGCA" * 30, "GGCC" * 10])
    assert out.shape == (3, 7) and out.dtype == torch.float64
    assert torch.all((out >= 0) & (out <= 1))
    seq = "AACGTTTGCAGG" * 8  # 96 bp: even padding, so the reverse complement mirrors exactly
    revcomp = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    torch.testing.assert_close(features([seq]), features([revcomp]))
    hidden = SeiFeatures(None, layer="hidden", model=small_sei)
    assert hidden.dim == 7 and SeiFeatures(None, layer="spline", model=small_sei).dim == 15360
    with pytest.raises(ValueError, match="layer"):
        SeiFeatures(None, layer="logits", model=small_sei)


@pytest.mark.slow
def test_full_size_sei_maps_4096_bp_to_21907_profiles():
    torch.manual_seed(0)
    with torch.no_grad():
        out = Sei().eval()(torch.rand(1, 4, 4096))
    assert out.shape == (1, 21907)
