"""The benchmark's PyTorch baseline: the package's default networks written in ``torch.nn``.

Same layers, sizes and parameter counts as :func:`fcn_tf.build_model` with the
defaults the benchmark uses (21 classes), so that a timing ratio compares the
frameworks, not the networks:

- FCN-8s on VGG16 with the reference geometry (``conv1_1`` padded by 100,
  ceil-mode pools, 7x7 ``fc6``, bias-free transposed convolutions, crops 5, 9
  and 31), as in the reference PyTorch FCN (Long et al., 2015);
- U-Net with 64-1024 filters, bias-free 3x3 convolutions + BatchNorm + ReLU,
  2x2 transposed convolutions, ``[skip, upsampled]`` concatenation;
- DeepLabV3+ on MobileNetV2 at output stride 16 (the last stride-2 stage
  dilated), ASPP 6/12/18 with an image-pooling branch, a 48-channel
  low-level projection and two 3x3 decoder convolutions of 256 channels.

Padding differs only where the frameworks differ by nature (PyTorch pads
stride-2 convolutions symmetrically, Keras ``"same"`` at the bottom/right);
it changes no layer's size or FLOPs. Weights are PyTorch's default
initialisation: these models are for timing only.

PyTorch is an optional dependency (``pip install -e ".[bench]"``): this
module is imported only by the benchmark's PyTorch worker.
"""

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 21


def _crop(x, offset, like):
    """``x[..., offset:offset + h, offset:offset + w]`` with ``like``'s ``h, w``."""
    h, w = like.shape[2], like.shape[3]
    return x[:, :, offset:offset + h, offset:offset + w]


class FCN8s(nn.Module):
    """FCN-8s on VGG16, the reference Caffe geometry."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        blocks = []
        channels = 3
        for block, (count, filters) in enumerate(zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512))):
            layers = []
            for index in range(count):
                padding = 100 if block == 0 and index == 0 else 1
                layers += [nn.Conv2d(channels, filters, 3, padding=padding), nn.ReLU(inplace=True)]
                channels = filters
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Sequential(
            nn.Conv2d(512, 4096, 7), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(4096, num_classes, 1),
        )
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, bias=False)

    def forward(self, image):
        pools = []
        x = image
        for block in self.blocks:
            x = block(x)
            pools.append(x)
        x = self.upscore2(self.fc(x))
        x = x + _crop(self.score_pool4(pools[3]), 5, x)
        x = self.upscore_pool4(x)
        x = x + _crop(self.score_pool3(pools[2]), 9, x)
        return _crop(self.upscore8(x), 31, image)


def _double_conv(in_channels, filters):
    layers = []
    for channels in (in_channels, filters):
        layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False),
                   nn.BatchNorm2d(filters), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net, ``base_filters * 2**level`` channels at each of ``depth + 1`` levels."""

    def __init__(self, num_classes=NUM_CLASSES, base_filters=64, depth=4):
        super().__init__()
        self.encoder = nn.ModuleList()
        channels = 3
        for level in range(depth + 1):
            self.encoder.append(_double_conv(channels, base_filters * 2**level))
            channels = base_filters * 2**level
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            filters = base_filters * 2**level
            self.up.append(nn.ConvTranspose2d(channels, filters, 2, 2))
            self.decoder.append(_double_conv(2 * filters, filters))
            channels = filters
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        # Inputs are multiples of 2**depth here, so the Keras model's pad and crop are no-ops.
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
            x = block(torch.cat([skip, up(x)], 1))
        return self.head(x)


def _conv_bn(in_channels, out_channels, kernel, stride=1, dilation=1, groups=1, relu=True):
    padding = dilation * (kernel // 2)
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, groups,
                        bias=False), nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU6(inplace=True) if relu == 6 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_channels, out_channels, expansion, stride, dilation):
        super().__init__()
        hidden = in_channels * expansion
        layers = [] if expansion == 1 else [_conv_bn(in_channels, hidden, 1, relu=6)]
        layers += [_conv_bn(hidden, hidden, 3, stride, dilation, groups=hidden, relu=6),
                   _conv_bn(hidden, out_channels, 1, relu=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


# (expansion, output channels, repeats, first stride): MobileNetV2's Table 2, as in
# fcn_tf.backbones.mobilenet_v2.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class DeepLabV3PlusMobileNetV2(nn.Module):
    """DeepLabV3+ on MobileNetV2 (alpha 1.0) at output stride 16."""

    def __init__(self, num_classes=NUM_CLASSES, output_stride=16, rates=(6, 12, 18)):
        super().__init__()
        stem = _conv_bn(3, 32, 3, stride=2, relu=6)
        low, high = [stem], []
        stride, rate, channels = 2, 1, 32
        for expansion, filters, repeats, first_stride in MOBILENET_V2_STAGES:
            for repeat in range(repeats):
                block_stride, dilation = first_stride if repeat == 0 else 1, rate
                if block_stride == 2:
                    if stride >= output_stride:  # trade the stride for dilation (TF-slim rule)
                        block_stride, rate = 1, rate * 2
                    else:
                        stride *= 2
                target = low if stride <= 4 else high
                target.append(InvertedResidual(channels, filters, expansion, block_stride,
                                               dilation))
                channels = filters
        self.low = nn.Sequential(*low)   # stride 4, 24 channels
        self.high = nn.Sequential(*high)  # stride 16, 320 channels
        self.aspp = nn.ModuleList([_conv_bn(channels, 256, 1)]
                                  + [_conv_bn(channels, 256, 3, dilation=r) for r in rates])
        self.aspp_pool = _conv_bn(channels, 256, 1)
        self.aspp_project = nn.Sequential(_conv_bn(256 * (len(rates) + 2), 256, 1),
                                          nn.Dropout(0.1))
        self.low_level = _conv_bn(24, 48, 1)
        self.decoder = nn.Sequential(_conv_bn(256 + 48, 256, 3), _conv_bn(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, image):
        low = self.low(image)
        x = self.high(low)
        size = x.shape[2:]
        pooled = self.aspp_pool(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *size)
        x = self.aspp_project(torch.cat([branch(x) for branch in self.aspp] + [pooled], 1))
        low = self.low_level(low)
        x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=False)
        x = self.classifier(self.decoder(torch.cat([x, low], 1)))
        return F.interpolate(x, size=image.shape[2:], mode="bilinear", align_corners=False)


# Benchmark key (as in fcn_tf.bench.measurements.MODELS) -> PyTorch builder.
TORCH_MODELS = {
    "fcn8s": FCN8s,
    "unet": UNet,
    "deeplabv3plus_mobilenet_v2": DeepLabV3PlusMobileNetV2,
}


def build_torch_model(key, num_classes=NUM_CLASSES):
    """The PyTorch network for benchmark model ``key``."""
    if key not in TORCH_MODELS:
        raise ValueError(f"No PyTorch baseline for model {key!r}; available: "
                         f"{', '.join(TORCH_MODELS)}.")
    return TORCH_MODELS[key](num_classes)


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
