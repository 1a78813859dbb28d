"""Reduced precision of the phalp engine's backbones (pose_pipeline/engines/phalp/precision.py):
weights stored in bf16/fp16, fp32 around them. On the CPU always, on CUDA where there is one;
no upstream package needed (HMR2 is a stand-in of the parts ``hmr2_forward`` uses).

The bounds here are for the stand-in; those of the real networks (random weights of the real
shapes, on a GPU) are measured by bench/phalp_vs_upstream.py and stated in docs/phalp-engine.md.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pose_pipeline.engines.phalp.model import texture_sampler_class
from pose_pipeline.engines.phalp.precision import DTYPES, LowPrecision, lower_precision, to_float32

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


class TinyHmr2(torch.nn.Module):
    """What ``hmr2_forward`` uses of HMR2: backbone, smpl_head, smpl and cfg. Its "SMPL"
    multiplies by fp32 buffers as the real one does, so it fails on bf16/fp16 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 16, stride=16), torch.nn.Flatten(),
                                            torch.nn.Linear(16 * 16 * 12, 64))  # 256x192 -> 16x12 patches
        self.head = torch.nn.Linear(64, 9 + 23 * 9 + 10 + 3)
        with torch.no_grad():  # camera scale near 1, so the depth 2f/(256 s) is well conditioned
            self.head.weight.mul_(0.1)
            self.head.bias[226] = 1.0
        self.register_buffer("blend", torch.randn(9 + 23 * 9 + 10, 30))
        self.cfg = SimpleNamespace(EXTRA=SimpleNamespace(FOCAL_LENGTH=5000.0), MODEL=SimpleNamespace(IMAGE_SIZE=256))
        self.feature_dtypes: list[torch.dtype] = []

    def smpl_head(self, features):
        self.feature_dtypes.append(features.dtype)
        out = self.head(features)
        params = {"global_orient": out[:, :9], "body_pose": out[:, 9:216], "betas": out[:, 216:226]}
        return params, out[:, 226:], None

    def smpl(self, global_orient, body_pose, betas, pose2rot):
        assert not pose2rot
        flat = torch.cat([global_orient.flatten(1), body_pose.flatten(1), betas], 1)
        return SimpleNamespace(vertices=(flat @ self.blend).view(-1, 10, 3))


class Backbone(torch.nn.Module):
    """A detectron2-like backbone: an attribute its model reads, a dict of feature maps out."""

    size_divisibility = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return {"p2": self.conv(x), "p3": self.conv(x)[:, :, ::2, ::2]}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_hmr2_forward_runs_the_backbone_low_and_the_rest_in_fp32(device, precision):
    # Only hmr2_forward is called: the class's upstream base is never constructed.
    sampler_class = texture_sampler_class(SimpleNamespace(HMR2018Predictor=torch.nn.Module))
    torch.manual_seed(0)
    full_model = TinyHmr2().to(device).eval()
    low_model = TinyHmr2().to(device).eval()
    low_model.load_state_dict(full_model.state_dict())
    lower_precision(low_model, "backbone", precision)
    image = torch.randn(5, 3, 256, 256, device=device)
    with torch.no_grad():
        full = sampler_class.hmr2_forward(SimpleNamespace(model=full_model), image)
        low = sampler_class.hmr2_forward(SimpleNamespace(model=low_model), image)
    assert all(p.dtype == DTYPES[precision] for p in low_model.backbone.parameters())  # stored low
    assert low_model.feature_dtypes == [torch.float32]  # the head sees fp32
    assert all(p.dtype == torch.float32 for p in low_model.head.parameters())
    for name in ("pred_cam", "pred_cam_t", "pred_vertices"):
        assert low[name].dtype == torch.float32
        torch.testing.assert_close(low[name], full[name], rtol=0.05, atol=0.05)
        assert not torch.equal(low[name], full[name])  # it really ran in the lower precision
    assert all(v.dtype == torch.float32 for v in low["pred_smpl_params"].values())


@pytest.mark.parametrize("device", DEVICES)
def test_wrapper_returns_fp32_structures_and_reads_through_to_the_backbone(device):
    torch.manual_seed(0)
    backbone = Backbone().to(device)
    reference = {k: v.clone() for k, v in backbone(torch.ones(1, 3, 8, 8, device=device)).items()}
    owner = torch.nn.Module()
    owner.backbone = backbone
    lower_precision(owner, "backbone", "bf16")
    assert isinstance(owner.backbone, LowPrecision)
    assert owner.backbone.size_divisibility == 32  # read from the wrapped backbone
    assert backbone.conv.weight.dtype == torch.bfloat16
    features = owner.backbone(torch.ones(1, 3, 8, 8, device=device))
    assert set(features) == {"p2", "p3"} and all(v.dtype == torch.float32 for v in features.values())
    for name, value in features.items():
        torch.testing.assert_close(value, reference[name], rtol=0.02, atol=0.02)


def test_fp32_leaves_the_module_as_it_is():
    owner = torch.nn.Module()
    owner.backbone = backbone = Backbone()
    lower_precision(owner, "backbone", "fp32")
    assert owner.backbone is backbone and backbone.conv.weight.dtype == torch.float32


def test_to_float32_converts_floating_tensors_only():
    value = {"a": [torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.int64)],
             "b": (torch.ones(1, dtype=torch.float16), "text")}
    out = to_float32(value)
    assert out["a"][0].dtype == torch.float32 and out["a"][1].dtype == torch.int64
    assert out["b"][0].dtype == torch.float32 and out["b"][1] == "text" and isinstance(out["b"], tuple)
