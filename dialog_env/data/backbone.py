"""ResNet-18 and ResNet-50 image encoders in plain ``torch.nn`` that read torchvision's weight files.

The core install needs no torchvision (its wheels are built against one torch each, and the
project pins its own), yet users hold torchvision checkpoints such as ``resnet18-f37072fd.pth``.
So the two networks here are built module for module like ``torchvision.models.resnet18`` and
``resnet50`` (ResNet v1.5: the stride of a bottleneck sits in its 3 x 3 convolution): their
``state_dict()`` has exactly torchvision's keys and shapes (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``..., ``fc.bias``), and such a file
loads without conversion.

What the catalogue builder (:mod:`dialog_env.data.images`) takes from an encoder is
:meth:`ResNet.encode`: the last stage's map, average-pooled to one vector per image, and the same
map as a grid of regions for an attention captioner (7 x 7 = 49 regions at 224 x 224 pixels).
The classifier ``fc`` is kept so that files load as they are, but no feature uses it.

Weight files are untrusted input: :func:`load_weights` reads them with
``torch.load(weights_only=True)`` (tensors and plain containers only, no pickled objects) or with
``safetensors``, and checks every key, shape and value before anything is copied into the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dialog_env.errors import ConfigurationError, DataFileNotFoundError, DataFormatError, DependencyNotInstalled

__all__ = [
    "ARCHITECTURES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION_WEIGHT_FILES",
    "BasicBlock",
    "Bottleneck",
    "Encoder",
    "ResNet",
    "feature_grid_size",
    "load_encoder",
    "load_weights",
    "read_state_dict",
    "resnet18",
    "resnet50",
]

#: The per-channel mean and standard deviation (RGB, pixel values in 0..1) that torchvision's
#: ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The global that torch's weights-only unpickler refused, as its message names it.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")

#: torchvision's file of each architecture's standard (``DEFAULT``) weights, for messages.
TORCHVISION_WEIGHT_FILES = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
}


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions and a shortcut: the block of ResNet-18 and -34 (torchvision's names).

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first convolution (2 where a stage halves the map).
        downsample: the shortcut's projection (1 x 1 convolution + batch norm) when the shape changes.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1 x 1, 3 x 3 (with the stride: ResNet v1.5, as torchvision), 1 x 1 convolutions and a shortcut.

    Args:
        inplanes: input channels.
        planes: channels of the 3 x 3 convolution; the block outputs ``4 * planes``.
        stride: stride of the 3 x 3 convolution.
        downsample: the shortcut's projection when the shape changes.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H, W)`` -> ``(B, 4 * planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet laid out as ``torchvision.models.ResNet``, so that its weight files load unchanged.

    Built with torchvision's initialisation (Kaiming-normal convolutions, batch norms at weight 1
    and bias 0, the default ``Linear`` init), drawn from torch's global generator: seed it (or use
    :func:`load_encoder`, which does) for reproducible random weights.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: rows of the classifier ``fc`` (1000 for ImageNet weights; not used by
            :meth:`encode`).
        arch: the name messages give it (``"resnet18"``...).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        arch: str = "resnet",
    ) -> None:
        super().__init__()
        self.arch = arch
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        #: Channels ``C`` of the last stage: the dimension of the pooled features and of each region.
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        modules += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map: ``(B, 3, H, W)`` normalised float32 -> ``(B, C, ceil(H/32), ceil(W/32))``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled and spatial features of a batch of images.

        Args:
            x: ``(B, 3, H, W)`` float32, RGB normalised with :data:`IMAGENET_MEAN` and
                :data:`IMAGENET_STD`.

        Returns:
            ``(pooled, regions)``: ``(B, C)`` float32, the global average of the last stage's
            map (``C = 512`` for ResNet-18, ``2048`` for ResNet-50), and ``(B, h * w, C)``
            float32, that map's cells in row-major order (``h = w = 7`` at 224 pixels).
        """
        grid = self.feature_map(x)
        return grid.mean(dim=(2, 3)), grid.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``, as torchvision's ``ResNet.forward``."""
        return self.fc(torch.flatten(self.avgpool(self.feature_map(x)), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (BasicBlocks ``2, 2, 2, 2``; 512-d features), torchvision's ``resnet18`` layout."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, arch="resnet18")


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 (Bottlenecks ``3, 4, 6, 3``; 2048-d features), torchvision's ``resnet50`` layout."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, arch="resnet50")


#: Constructors by name (the ``arch`` of :func:`load_encoder`).
ARCHITECTURES = {"resnet18": resnet18, "resnet50": resnet50}


def feature_grid_size(image_size: int) -> int:
    """Side of the last stage's map for a square input: ``ceil(image_size / 32)`` (7 at 224).

    Follows the four stride-2 steps (7 x 7 convolution, max pool, three 3 x 3 convolutions), each
    ``floor((s - 1) / 2) + 1``.
    """
    side = int(image_size)
    for _ in range(5):
        side = (side - 1) // 2 + 1
    return side


# ---------------------------------------------------------------------- weight files
def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: a plain ``torch.save`` state dict, or a ``.safetensors`` file.

    ``.pth``/``.pt`` (any other suffix) files are read with ``torch.load(map_location="cpu",
    weights_only=True)``, which rebuilds tensors and plain containers only, so a file holding
    pickled objects is refused before any of it runs. ``.safetensors`` files need the optional
    ``safetensors`` package.

    Returns:
        Key -> tensor, on the CPU, as stored.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataFormatError: unreadable, holds objects, or is not a flat mapping of names to tensors
            (the message says what it holds, e.g. a training checkpoint wrapping a state dict).
        DependencyNotInstalled: a ``.safetensors`` file without the ``safetensors`` package.
    """
    path = Path(path)
    where = f"weights file {str(path)!r}"
    if not path.is_file():
        raise DataFileNotFoundError(f"{where} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    if path.suffix.lower() == ".safetensors":
        if importlib.util.find_spec("safetensors") is None:
            raise DependencyNotInstalled(
                f"{where} is a .safetensors file, which needs the safetensors package: pip install safetensors "
                f"(or pass the torchvision .pth file)"
            )
        from safetensors.torch import load_file

        try:
            payload = load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 - SafetensorError and friends, for any damaged file
            raise DataFormatError(f"{where} is not a readable safetensors file (truncated?): {error}") from None
    else:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # torch's message suggests turning weights-only loading off, never right for a file from
            # elsewhere: only its diagnosis is kept.
            text = str(error)
            found = _UNSAFE_GLOBAL.search(text)
            if found:
                raise DataFormatError(
                    f"{where} holds a Python object ({found.group(1)}), not only tensors; it is not loaded, because "
                    f"unpickling objects could run code. Expected a plain state dict (torch.save(model.state_dict()))"
                ) from None
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
            reason = detail.group(1) if detail else "the weights-only unpickler refused it"
            raise DataFormatError(
                f"{where} could not be read (truncated, corrupted, or not a torch file?): {reason}"
            ) from None
        except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
            raise DataFormatError(f"{where} could not be read (truncated or corrupted?): {error}") from None
    if not isinstance(payload, Mapping):
        raise DataFormatError(f"{where} holds a {type(payload).__name__}, expected a state dict (names -> tensors)")
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(payload.get(wrapper), Mapping):
            raise DataFormatError(
                f"{where} is a training checkpoint whose {wrapper!r} entry holds the weights; save that entry "
                f"alone (torch.save(checkpoint[{wrapper!r}], 'weights.pth')) and pass the new file"
            )
    not_tensors = [str(key) for key, value in payload.items() if not isinstance(value, torch.Tensor)]
    if not_tensors or not all(isinstance(key, str) for key in payload):
        raise DataFormatError(
            f"{where} holds entries that are not named tensors (e.g. {not_tensors[:3]}); expected a state dict"
        )
    return dict(payload)


def _architecture_guess(keys: set[str], arch: str) -> str:
    """A hint at the ResNet that a set of state-dict keys came from (for messages)."""
    if not any(key.startswith("layer4.") for key in keys):
        if any(key.startswith("module.") for key in keys):
            return " The keys start with 'module.' (saved from nn.DataParallel): save model.module.state_dict()."
        return " It does not look like a torchvision ResNet."
    bottleneck = "layer1.0.conv3.weight" in keys
    blocks = sum(1 for key in keys if key.startswith("layer3.") and key.endswith(".conv1.weight"))
    names = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101",
             (True, 36): "resnet152"}  # fmt: skip
    name = names.get((bottleneck, blocks))
    if name is None or name == arch:
        return ""
    if name in ARCHITECTURES:
        return f" The keys look like torchvision's {name}: choose that architecture (--arch {name})."
    return f" The keys look like torchvision's {name}, which is not built here (only {sorted(ARCHITECTURES)})."


def load_weights(model: ResNet, state_dict: Mapping[str, torch.Tensor], where: str) -> ResNet:
    """Check ``state_dict`` against ``model`` and copy it in (as float32).

    Every key of ``model.state_dict()`` must be present with its shape, and no other key, except
    that ``*.num_batches_tracked`` may be missing (older torchvision files lack it) and ``fc`` may
    have any number of rows (a checkpoint fine-tuned on other classes: ``fc`` is rebuilt to fit;
    no feature uses it). Weights must be finite floating-point tensors.

    Args:
        model: a :class:`ResNet` (changed in place).
        state_dict: key -> tensor, e.g. from :func:`read_state_dict`.
        where: how messages name the source, e.g. ``"weights file 'resnet18.pth'"``.

    Returns:
        ``model``.

    Raises:
        DataFormatError: missing or unexpected keys, wrong shapes, non-float or non-finite
            values; the message lists the first offenders and names the architecture the keys
            suggest.
    """
    state = dict(state_dict)
    fc_weight = state.get("fc.weight")
    if isinstance(fc_weight, torch.Tensor) and fc_weight.ndim == 2 and fc_weight.shape[1] == model.feature_dim:
        if fc_weight.shape[0] != model.fc.out_features:
            model.fc = nn.Linear(model.feature_dim, int(fc_weight.shape[0]))
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    arch = f"{model.arch}, {model.feature_dim}-d features"
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:4]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:4]}")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {wrong[:3]}")
    if problems:
        raise DataFormatError(
            f"{where} does not fit the chosen architecture ({arch}, torchvision's layout): "
            + "; ".join(problems)
            + "."
            + _architecture_guess(set(state), model.arch)
        )
    checked = {}
    for key, value in state.items():
        if key.endswith(".num_batches_tracked"):
            checked[key] = value.to(torch.long)
            continue
        if not value.is_floating_point():
            raise DataFormatError(f"{where}: {key} has dtype {value.dtype}, expected floating-point weights")
        value = value.to(torch.float32)
        if not bool(torch.isfinite(value).all()):
            raise DataFormatError(f"{where}: {key} holds NaN or inf; expected finite weights")
        checked[key] = value
    model.load_state_dict(checked, strict=False)  # strictness was checked above, with better messages
    return model


# ---------------------------------------------------------------------- the encoder
@dataclass(frozen=True)
class Encoder:
    """A network in eval mode and what its features came from.

    Attributes:
        model: the :class:`ResNet`, in eval mode, on the CPU (move it with ``.to(device)``).
        arch: ``"resnet18"`` or ``"resnet50"``.
        weights: ``"random"``, ``"torchvision"`` or ``"file"``.
        description: where the weights came from, e.g. ``"random (torch seed 0)"`` or
            ``"file resnet18-f37072fd.pth"``.
        fingerprint: a string that changes whenever the weights do (the file's SHA-256, the
            torchvision weights' name, the seed of random weights); a resumed build compares it.
    """

    model: ResNet
    arch: str
    weights: str
    description: str
    fingerprint: str

    @property
    def random_weights(self) -> bool:
        """Whether the weights are random (features without meaning: tests and smoke runs only)."""
        return self.weights == "random"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torchvision_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """The standard torchvision weights of ``arch``, through its own API (downloaded once to its cache)."""
    if importlib.util.find_spec("torchvision") is None:
        raise DependencyNotInstalled(
            f"weights 'torchvision' loads torchvision's standard {arch} weights through torchvision, which is "
            f"not installed here. Download the file once instead ({TORCHVISION_WEIGHT_FILES[arch]}) and pass "
            f"its path as the weights (--weights FILE); the project reads it without torchvision"
        )
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch).DEFAULT
    return enum.get_state_dict(progress=False), f"torchvision {type(enum).__name__}.{enum.name}"


def load_encoder(
    arch: str = "resnet18",
    weights: str | os.PathLike[str] | None = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
) -> Encoder:
    """Build a ResNet in eval mode with the chosen weights.

    Args:
        arch: ``"resnet18"`` (512-d features) or ``"resnet50"`` (2048-d).
        weights: a torchvision weight file (``.pth`` state dict, or ``.safetensors``), or the
            string ``"torchvision"`` for torchvision's standard weights (needs torchvision), or
            ``None`` for random weights, which must then be asked for with ``random_weights``.
        random_weights: confirm that ``weights=None`` is meant (features of random weights
            carry no meaning: for tests and smoke runs).
        seed: seeds torch's generator while random weights are drawn (the global generator is
            left as it was), so that two builds get the same network.

    Raises:
        ConfigurationError: an unknown ``arch``, no weights without ``random_weights``, or both.
        DataFileNotFoundError, DataFormatError: the weight file is missing, unreadable or does
            not fit the architecture (see :func:`load_weights`).
        DependencyNotInstalled: ``"torchvision"`` without torchvision, ``.safetensors`` without
            safetensors.
    """
    if arch not in ARCHITECTURES:
        raise ConfigurationError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if weights is None and not random_weights:
        raise ConfigurationError(
            "no weights given: pass a torchvision weight file (e.g. resnet18-f37072fd.pth), 'torchvision' for "
            "torchvision's standard weights, or ask for random weights explicitly (random_weights=True, "
            "--random-weights; their features mean nothing)"
        )
    if weights is not None and random_weights:
        raise ConfigurationError(f"weights {str(weights)!r} and random_weights=True exclude each other; choose one")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[arch]()
    if weights is None:
        kind, description, fingerprint = "random", f"random (torch seed {seed})", f"random:{arch}:seed={seed}"
    elif isinstance(weights, str) and weights == "torchvision":
        state, description = _torchvision_state_dict(arch)
        load_weights(model, state, description)
        kind, fingerprint = "torchvision", description
    else:
        path = Path(weights)
        load_weights(model, read_state_dict(path), f"weights file {str(path)!r}")
        kind, description, fingerprint = "file", f"file {path.name}", f"sha256:{_file_sha256(path)}"
    model.eval()
    return Encoder(model=model, arch=arch, weights=kind, description=description, fingerprint=fingerprint)
