import torch
from torch import nn

from mcu_lightning.curves import Curve, has_batchnorm, recompute_batchnorm, recompute_curve_batchnorm


class TinyCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def cnn(seed: int) -> TinyCnn:
    """A CNN with random weights and random (non-default) BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = TinyCnn()
    bn = model.features[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(10 + seed)
    return model.eval()


def batches(n: int = 3):
    gen = torch.Generator().manual_seed(0)
    return [{"inputs": torch.randn(4, 1, 6, 6, generator=gen), "labels": torch.zeros(4, dtype=torch.long)}] * n


def test_cnn_endpoints_exact_and_buffers_interpolated():
    ends = [cnn(0), cnn(1)]
    curve = Curve(cnn(2), [m.state_dict() for m in ends]).eval()
    x = batches(1)[0]
    with torch.no_grad():
        assert torch.equal(curve(0.0, x), ends[0](x["inputs"]))
        assert torch.equal(curve(1.0, x), ends[1](x["inputs"]))
    buffers = curve.buffers_at(0.25)
    mean0, mean1 = ends[0].features[1].running_mean, ends[1].features[1].running_mean
    assert torch.allclose(buffers["features.1.running_mean"], 0.75 * mean0 + 0.25 * mean1)
    assert buffers["features.1.num_batches_tracked"].item() == 10  # integer buffers: endpoint 0, never mixed


def test_recompute_at_endpoint_matches_endpoint_after_same_recompute():
    ends = [cnn(0), cnn(1)]
    curve = Curve(cnn(2), [m.state_dict() for m in ends])
    assert has_batchnorm(curve.template) and not has_batchnorm(nn.Linear(2, 2))
    data = batches()
    point = recompute_batchnorm(curve.write_to(cnn(3), 0.0), data)
    reference = recompute_batchnorm(cnn(0), data)
    assert not point.training and point.features[1].momentum == 0.1  # mode and momentum restored
    x = data[0]["inputs"]
    with torch.no_grad():
        assert torch.equal(point(x), reference(x))
    # statistics really were recomputed: the running mean is the batch mean of the conv output
    with torch.no_grad():
        conv = reference.features[0](x)
    assert torch.allclose(reference.features[1].running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-6)
    assert reference.features[1].num_batches_tracked.item() == 3


def test_recompute_through_functional_call_matches_working_copy():
    ends = [cnn(0), cnn(1)]
    curve = Curve(cnn(2), [m.state_dict() for m in ends]).eval()
    stored = curve._buffers_start.clone()
    data = batches()
    buffers = recompute_curve_batchnorm(curve, 0.4, data, max_batches=2)
    copy = recompute_batchnorm(curve.write_to(cnn(3), 0.4), data, max_batches=2)
    assert torch.allclose(buffers["features.1.running_var"], copy.features[1].running_var, atol=1e-6)
    assert buffers["features.1.num_batches_tracked"].item() == 2
    with torch.no_grad():
        assert torch.allclose(curve(0.4, data[0], buffers=buffers), copy(data[0]["inputs"]), atol=1e-6)
    assert torch.equal(curve._buffers_start, stored)  # the curve's own statistics untouched
    assert not curve.template.training
