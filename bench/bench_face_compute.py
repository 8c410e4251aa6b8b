"""What the buffalo_l face gate costs on this CPU, without buffalo_l's weights.

buffalo_l cannot be downloaded here, so this builds networks of the same architecture with
random weights, exports them to ONNX and times onnxruntime on the inputs the gate feeds them:

- recognizer: IResNet-50 as in insightface's arcface_torch (w600k_r50.onnx), 112x112 input;
- detector: SCRFD-10G's published configuration (ResNetV1e deep stem, BasicBlock stages
  (3, 4, 2, 3) of [56, 88, 88, 224] channels, PAFPN to 56 channels over strides 8/16/32, shared
  heads of 3 convs x 80 channels, 2 anchors: score, box, 5 keypoints), 640x640 input. This is a
  re-implementation from the configuration, not the released graph; the FLOPs it prints are the
  figure to compare with the model card (SCRFD-10G: ~10 GFLOPs at 640x480).

The gate (mlfreeze_runtime/verify/face_checks.py, default thresholds in mlfreeze/specs/models.toml) runs the detector on
t1.jpg, one no-face image, t1 flipped, t1 at 0.5x and t1 again (determinism): 5 detector runs;
t1 has 6 faces, so 4 x 6 = 24 recognizer runs (insightface embeds one face at a time).

    /work/venv-ml/bin/python bench/bench_face_compute.py [--det-runs 5] [--rec-runs 24]

Prints session load time, per-run medians and the estimated face-gate compute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build_models():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn_conv(cin, cout, k=3, s=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    # ---- IResNet-50 (arcface_torch backbones/iresnet.py layout) ----
    class IBasicBlock(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
            self.conv1 = nn.Conv2d(cin, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
            self.prelu = nn.PReLU(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
            self.down = None
            if stride != 1 or cin != planes:
                self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return out + (self.down(x) if self.down is not None else x)

    class IResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
            blocks, cin = [], 64
            for n, planes in zip((3, 4, 14, 3), (64, 128, 256, 512), strict=True):
                for i in range(n):
                    blocks.append(IBasicBlock(cin, planes, 2 if i == 0 else 1))
                    cin = planes
            self.body = nn.Sequential(*blocks)
            self.bn2 = nn.BatchNorm2d(512)
            self.fc = nn.Linear(512 * 7 * 7, 512)
            self.features = nn.BatchNorm1d(512)

        def forward(self, x):
            x = self.bn2(self.body(self.stem(x)))
            return self.features(self.fc(torch.flatten(x, 1)))

    # ---- SCRFD-10G (configuration of scrfd_10g_bnkps) ----
    class BasicBlock(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.c1 = bn_conv(cin, planes, 3, stride)
            self.c2 = bn_conv(planes, planes, 3, 1, act=False)
            self.down = None
            if stride != 1 or cin != planes:  # ResNetV1e: avg-pool then 1x1 conv
                self.down = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                                          nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x):
            return F.relu(self.c2(self.c1(x)) + (self.down(x) if self.down is not None else x))

    class SCRFD10G(nn.Module):
        def __init__(self, base=56, blocks=(3, 4, 2, 3), planes=(56, 88, 88, 224), neck=56, feat=80,
                     stacked=3, anchors=2):
            super().__init__()
            self.stem = nn.Sequential(bn_conv(3, base // 2, 3, 2), bn_conv(base // 2, base // 2),
                                      bn_conv(base // 2, base), nn.MaxPool2d(3, 2, 1))
            stages, cin = [], base
            for i, (n, p) in enumerate(zip(blocks, planes, strict=True)):
                stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else p, p, (1 if i == 0 else 2) if j == 0 else 1)
                                              for j in range(n)]))
                cin = p
            self.stages = nn.ModuleList(stages)
            ins = planes[1:]  # start_level=1: strides 8, 16, 32
            self.lateral = nn.ModuleList(bn_conv(c, neck, 1) for c in ins)
            self.fpn = nn.ModuleList(bn_conv(neck, neck) for _ in ins)
            self.down = nn.ModuleList(bn_conv(neck, neck, 3, 2) for _ in ins[1:])
            self.pafpn = nn.ModuleList(bn_conv(neck, neck) for _ in ins[1:])
            self.tower = nn.Sequential(*[bn_conv(neck if i == 0 else feat, feat) for i in range(stacked)])
            self.cls = nn.Conv2d(feat, anchors, 3, 1, 1)
            self.reg = nn.Conv2d(feat, anchors * 4, 3, 1, 1)
            self.kps = nn.Conv2d(feat, anchors * 10, 3, 1, 1)

        def forward(self, x):
            x = self.stem(x)
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            lat = [conv(f) for conv, f in zip(self.lateral, feats[1:], strict=True)]
            for i in range(len(lat) - 1, 0, -1):
                lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
            outs = [conv(t) for conv, t in zip(self.fpn, lat, strict=True)]
            for i in range(len(outs) - 1):
                outs[i + 1] = outs[i + 1] + self.down[i](outs[i])
            outs = [outs[0]] + [conv(o) for conv, o in zip(self.pafpn, outs[1:], strict=True)]
            res = []
            for o in outs:
                t = self.tower(o)
                res += [torch.sigmoid(self.cls(t)), self.reg(t), self.kps(t)]
            return tuple(res)

    return IResNet50().eval(), SCRFD10G().eval()


def gflops(model, shape) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(*shape))
    return counter.get_total_flops() / 2e9  # multiply-adds, the convention of the model cards


def export(model, shape, path: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(*shape), str(path), dynamo=False, input_names=["input"],
                          opset_version=17)


def time_session(path: Path, shape, runs: int, threads: int | None):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    t = time.perf_counter()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return load_s, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--det-runs", type=int, default=5, help="detector runs in one gate (default 5)")
    ap.add_argument("--rec-runs", type=int, default=24, help="recognizer runs in one gate (default 24)")
    ap.add_argument("--det-size", type=int, default=640)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--iters", type=int, default=5, help="timed runs per model (median)")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch

    torch.manual_seed(0)
    rec, det = build_models()
    rec_shape, det_shape = (1, 3, 112, 112), (1, 3, args.det_size, args.det_size)
    print(f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, CPU threads {args.threads or 'default'}")
    with tempfile.TemporaryDirectory(prefix="mlfreeze-bench-faces-") as tmp:
        rows = []
        for label, model, shape, runs in (("recognizer IResNet-50", rec, rec_shape, args.rec_runs),
                                          (f"detector SCRFD-10G @{args.det_size}", det, det_shape, args.det_runs)):
            path = Path(tmp) / f"{label.split()[0]}.onnx"
            export(model, shape, path)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            load_s, run_s = time_session(path, shape, args.iters, args.threads)
            rows.append((label, runs, load_s, run_s))
            macs = gflops(model, shape)
            vga = f" ({macs * 640 * 480 / args.det_size ** 2:.2f} at 640x480)" if model is det else ""
            print(f"{label}: {params:.1f} M params, {macs:.2f} GMACs{vga}, "
                  f"ONNX {path.stat().st_size / 1e6:.0f} MB, session load {load_s:.2f} s, "
                  f"one run {run_s * 1e3:.0f} ms (median of {args.iters})")
        load = sum(r[2] for r in rows)
        compute = sum(r[1] * r[3] for r in rows)
        print(f"face gate estimate: load {load:.2f} s + {rows[1][1]} detector and {rows[0][1]} recognizer runs "
              f"{compute:.2f} s = {load + compute:.2f} s (excludes image decoding and insightface's Python "
              f"post-processing, which the demo face gate measures at under 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
