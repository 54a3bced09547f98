"""Image tasks: MNIST (ViT classification, autoregressive pixels, sequential classification), CIFAR-10 and
ImageNet-1k.

Layouts under the data root (MANIFEST.md):

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz        original IDX files (HF: "ylecun/mnist")
    cifar-10-batches-py/{data_batch_1..5,test_batch}            the python release (HF: "uoft-cs/cifar10")
    imagenet/{train,val}/<wnid>/*.JPEG                          standard folder layout (HF: "ILSVRC/imagenet-1k")

MNIST is checked by the md5 of the *decompressed* IDX content (the official raw-file md5s): the train-images
.gz staged here was re-compressed, so its .gz bytes differ from the official .gz while its content does not.
IDX headers (magic number, dimensions) and sizes are validated; a truncated file stops with a DataError.

Splits: MNIST "valid" is the last 1/12 of the training file (5,000 of 60,000 images), "test" is t10k.
CIFAR-10 likewise holds out the last 5,000 training images; ImageNet "valid" is the official val folder.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flurka.data import metrics
from flurka.data.classification import ArrayClassificationTask, evaluate_predictions
from flurka.data.files import cached_arrays, checked, missing_dataset, register, source_key
from flurka.data.sources import DataError, cache_root, data_root

MNIST_FILES = {
    "train_images": "mnist/train-images-idx3-ubyte.gz",
    "train_labels": "mnist/train-labels-idx1-ubyte.gz",
    "test_images": "mnist/t10k-images-idx3-ubyte.gz",
    "test_labels": "mnist/t10k-labels-idx1-ubyte.gz",
}
register(
    {
        "mnist/train-images-idx3-ubyte.gz": ("md5_gunzip", "6bbc9ace898e44ae57da46a324031adb"),
        "mnist/train-labels-idx1-ubyte.gz": ("md5_gunzip", "a25bea736e30d166cdddb491f175f624"),
        "mnist/t10k-images-idx3-ubyte.gz": ("md5_gunzip", "2646ac647ad5339dbf082846283269ea"),
        "mnist/t10k-labels-idx1-ubyte.gz": ("md5_gunzip", "27ae3e4e09519cfbb04c329615203637"),
    }
)
CIFAR_BATCHES = {  # md5 of each python batch file, as published with the release (and checked by torchvision)
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
register({f"cifar-10-batches-py/{name}": ("md5", md5) for name, md5 in CIFAR_BATCHES.items()})

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual training-set statistics
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned byte data, 3 or 1 dimensions


# ---------------------------------------------------------------------------------------------------- MNIST


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An IDX file (.gz) as a uint8 array, after checking its magic number and that its size matches its header."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); replace it") from err
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != IDX_MAGIC[kind]:
        raise DataError(f"{path}: IDX magic number {magic:#010x}, expected {IDX_MAGIC[kind]:#010x} for {kind}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if kind == "images" and dims[1:] != (28, 28):
        raise DataError(f"{path}: images are {dims[1:]}, expected 28x28")
    if len(raw) != header + math.prod(dims):
        raise DataError(f"{path} is truncated or padded: {len(raw) - header} data bytes, header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """{"train_images" [60000,28,28] uint8, "train_labels", "test_images", "test_labels"}, checked and cached."""
    hint = (
        f"Put the four original MNIST IDX .gz files ({', '.join(Path(f).name for f in MNIST_FILES.values())}) "
        f"in {data_root(root) / 'mnist'} (see the README's Data section; HF dataset 'ylecun/mnist')."
    )
    paths = {k: checked(root, rel, hint=hint) for k, rel in MNIST_FILES.items()}

    def build() -> dict[str, np.ndarray]:
        out = {k: read_idx(p, "images" if k.endswith("images") else "labels") for k, p in paths.items()}
        for split in ("train", "test"):
            n_img, n_lab = len(out[f"{split}_images"]), len(out[f"{split}_labels"])
            if n_img != n_lab:
                raise DataError(f"MNIST {split}: {n_img} images but {n_lab} labels")
            if n_lab and out[f"{split}_labels"].max() > 9:
                raise DataError(f"MNIST {split}: labels must be 0..9; found {out[f'{split}_labels'].max()}")
        return out

    return cached_arrays("mnist", source_key(list(paths.values())), list(MNIST_FILES), build)


def _mnist_splits(root: str | Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = load_mnist(root)
    n_valid = len(d["train_labels"]) // 12  # 5,000 of the 60,000 training images: the usual held-out set
    cut = len(d["train_labels"]) - n_valid
    return {
        "train": (d["train_images"][:cut], d["train_labels"][:cut]),
        "valid": (d["train_images"][cut:], d["train_labels"][cut:]),
        "test": (d["test_images"], d["test_labels"]),
    }


def resize_to_tokens(images: np.ndarray, seq_len: int) -> np.ndarray:
    """[N, 28, 28] uint8 -> [N, seq_len] pixel tokens in raster order, area-downsampled to a side of sqrt(seq_len).

    The papers use all 784 pixels; smaller squares (e.g. 64 = 8x8) are for smoke runs and say so in the name.
    """
    side = math.isqrt(seq_len)
    if side * side != seq_len or not 1 <= side <= images.shape[-1]:
        raise ValueError(f"seq_len must be a square number of pixels up to {images.shape[-1] ** 2}; got {seq_len}")
    if side == images.shape[-1]:
        return np.ascontiguousarray(images.reshape(len(images), -1))
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    pooled = F.adaptive_avg_pool2d(x, side).round().clamp(0, 255).to(torch.uint8)
    return pooled.reshape(len(images), -1).numpy()


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {"accuracy": metrics.accuracy(pred, gold)}


def _normalise(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[np.ndarray], torch.Tensor]:
    def transform(images: np.ndarray) -> torch.Tensor:  # [B, H, W] or [B, H, W, C] uint8 -> [B, C, H, W]
        x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        m, s = torch.tensor(mean)[None, :, None, None], torch.tensor(std)[None, :, None, None]
        return ((x - m) / s).contiguous()

    return transform


def build_mnist_image(root: str | None = None, seq_len: int | None = None) -> ArrayClassificationTask:
    """MNIST for ViT: batches {"pixels" float [B,1,28,28] normalised, "labels"}, accuracy.

    `seq_len` is accepted because scale configs set it for every task; a ViT's token count is set by its patch
    size, so it has no effect here.
    """
    del seq_len
    splits = {s: {"pixels": x, "labels": y} for s, (x, y) in _mnist_splits(root).items()}
    return ArrayClassificationTask(
        name="mnist_image",
        splits=splits,
        num_labels=10,
        metric_fn=_accuracy,
        kind="image_classification",
        extra_model_kwargs={"image_size": 28, "channels": 1, "num_classes": 10},
        pixel_transform=_normalise((MNIST_MEAN,), (MNIST_STD,)),
        description="MNIST 28x28 greyscale, normalised with mean 0.1307 / std 0.3081",
    )


def build_mnist_seq(root: str | None = None, seq_len: int = 784) -> ArrayClassificationTask:
    """Sequential MNIST classification: 784 pixel tokens (values 0..255) -> class; accuracy (LRA-style table)."""
    splits = {s: {"input_ids": resize_to_tokens(x, seq_len), "labels": y} for s, (x, y) in _mnist_splits(root).items()}
    return ArrayClassificationTask(
        name="mnist_seq" if seq_len == 784 else f"mnist_seq{seq_len}",
        splits=splits,
        num_labels=10,
        metric_fn=_accuracy,
        vocab_size=256,
        max_len=seq_len,
        description=f"sequential MNIST: {seq_len} pixel tokens in raster order",
    )


@dataclass
class PixelARTask:
    """Autoregressive image modelling: every pixel predicted from the ones before it (raster order).

    Each image is one sequence: `input_ids` = [BOS, p_0 .. p_{L-2}], `labels` = [p_0 .. p_{L-1}], so all L pixels
    are predicted and the mean loss is exactly the NLL per dimension; the metric is bits per dimension. The BOS
    id is `levels` (vocabulary levels + 1). `levels` < 256 quantises pixels to floor(p * levels / 256): bits/dim
    are then those of the quantised image, comparable to the literature only at 256 levels.
    """

    name: str
    splits: dict[str, np.ndarray]  # split -> [N, L] pixel tokens
    levels: int = 256
    description: str = ""
    kind: str = field(default="lm", init=False)
    causal: bool = field(default=True, init=False)

    @property
    def seq_len(self) -> int:
        return self.splits["train"].shape[1]

    @property
    def vocab_size(self) -> int:
        return self.levels + 1

    def model_kwargs(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "max_len": self.seq_len}

    def _batch(self, split: str, rows: np.ndarray) -> dict[str, torch.Tensor]:
        pixels = torch.from_numpy(np.asarray(self.splits[split][rows], dtype=np.int64))
        if self.levels != 256:
            pixels = pixels * self.levels // 256
        bos = torch.full((len(rows), 1), self.levels, dtype=torch.int64)
        return {"input_ids": torch.cat([bos, pixels[:, :-1]], dim=1), "labels": pixels}

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        return self._batch("train", rng.integers(0, len(self.splits["train"]), size=batch_size))

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        n = len(self.splits[split])
        if max_batches is not None:
            n = min(n, max_batches * batch_size)
        for first in range(0, n, batch_size):
            yield self._batch(split, np.arange(first, min(first + batch_size, n)))

    def eval_metrics(self, mean_loss: float) -> dict[str, float]:
        return {"loss": mean_loss, "bpd": metrics.bits_per_unit(mean_loss)}


def build_mnist_ar(root: str | None = None, seq_len: int = 784, levels: int = 256) -> PixelARTask:
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in 2..256; got {levels}")
    splits = {s: resize_to_tokens(x, seq_len) for s, (x, _) in _mnist_splits(root).items()}
    suffix = ("" if seq_len == 784 else f"-{seq_len}px") + ("" if levels == 256 else f"-{levels}lv")
    return PixelARTask(
        name="mnist_ar" + suffix,
        splits=splits,
        levels=levels,
        description=f"autoregressive MNIST, {seq_len} pixels, {levels} levels, bits per dimension",
    )


# ------------------------------------------------------------------------------------------------- CIFAR-10


def load_cifar10(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """{"train_images" [50000,32,32,3] uint8, "train_labels", "test_images", "test_labels"} from the python release."""
    folder = "cifar-10-batches-py"
    files = [f"{folder}/{name}" for name in CIFAR_BATCHES]
    if not all((data_root(root) / f).is_file() for f in files):
        raise missing_dataset(
            "CIFAR-10",
            root,
            files,
            hf_name="uoft-cs/cifar10",
            extra="(the python version, cifar-10-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html, "
            "md5 c58f30108f718f92721af3b95e74349a, extracted)\n",
        )
    paths = [checked(root, f, hint="re-extract cifar-10-python.tar.gz") for f in files]

    def build() -> dict[str, np.ndarray]:
        parts: dict[str, list] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
        for path in paths:
            try:
                with path.open("rb") as f:
                    d = pickle.load(f, encoding="bytes")  # the official release is a pickle; checksummed above
            except Exception as err:
                raise DataError(f"{path} is not a CIFAR-10 python batch ({err})") from err
            split = "test" if path.name == "test_batch" else "train"
            parts[f"{split}_images"].append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32))
            parts[f"{split}_labels"].append(np.asarray(d[b"labels"], np.int64))
        out = {k: np.concatenate(v) for k, v in parts.items()}
        out["train_images"] = out["train_images"].transpose(0, 2, 3, 1)
        out["test_images"] = out["test_images"].transpose(0, 2, 3, 1)
        return out

    return cached_arrays(
        "cifar10", source_key(paths), ["train_images", "train_labels", "test_images", "test_labels"], build
    )


def _cifar_splits(root: str | Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = load_cifar10(root)
    cut = len(d["train_labels"]) - len(d["train_labels"]) // 10  # 45,000 / 5,000 / 10,000
    return {
        "train": (d["train_images"][:cut], d["train_labels"][:cut]),
        "valid": (d["train_images"][cut:], d["train_labels"][cut:]),
        "test": (d["test_images"], d["test_labels"]),
    }


@dataclass
class AugmentedArrayTask(ArrayClassificationTask):
    """CIFAR-style training augmentation (4-pixel zero-pad random crop + horizontal flip), step-seeded."""

    pad: int = 4

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        rows = rng.integers(0, self.num_examples("train"), size=batch_size)
        images = np.asarray(self.splits["train"]["pixels"][rows])
        padded = np.pad(images, ((0, 0), (self.pad, self.pad), (self.pad, self.pad), (0, 0)))
        h, w = images.shape[1:3]
        dy, dx = rng.integers(0, 2 * self.pad + 1, size=(2, batch_size))
        flip = rng.random(batch_size) < 0.5
        out = np.empty_like(images)
        for i in range(batch_size):
            crop = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
            out[i] = crop[:, ::-1] if flip[i] else crop
        labels = torch.from_numpy(np.asarray(self.splits["train"]["labels"][rows], dtype=np.int64))
        return {"pixels": self.pixel_transform(out), "labels": labels}


def build_cifar10(root: str | None = None, seq_len: int | None = None, augment: bool = True) -> ArrayClassificationTask:
    """CIFAR-10 for ViT: {"pixels" [B,3,32,32] normalised, "labels"}, accuracy. `seq_len`: see build_mnist_image."""
    del seq_len
    splits = {s: {"pixels": x, "labels": y} for s, (x, y) in _cifar_splits(root).items()}
    cls = AugmentedArrayTask if augment else ArrayClassificationTask
    return cls(
        name="cifar10",
        splits=splits,
        num_labels=10,
        metric_fn=_accuracy,
        kind="image_classification",
        extra_model_kwargs={"image_size": 32, "channels": 3, "num_classes": 10},
        pixel_transform=_normalise(CIFAR_MEAN, CIFAR_STD),
        description="CIFAR-10, random crop + flip for training",
    )


# ------------------------------------------------------------------------------------------------- ImageNet


@dataclass
class ImageFolderTask:
    """ImageNet-style folders through torchvision ImageFolder, with the usual augmentations.

    Train: RandomResizedCrop(image_size) + horizontal flip; eval: resize to image_size * 8/7 (256 for 224) and
    centre crop. Augmentation randomness is drawn under a torch seed derived from (seed, step), so the batch of
    a step is a pure function of both, as the task contract asks.
    """

    name: str
    train: Any  # torchvision.datasets.ImageFolder
    valid: Any
    image_size: int
    kind: str = field(default="image_classification", init=False)
    causal: bool = field(default=False, init=False)

    def model_kwargs(self) -> dict[str, int]:
        return {"image_size": self.image_size, "channels": 3, "num_classes": len(self.train.classes)}

    def _stack(self, dataset: Any, rows: np.ndarray) -> dict[str, torch.Tensor]:
        items = [dataset[int(i)] for i in rows]
        return {"pixels": torch.stack([x for x, _ in items]), "labels": torch.tensor([y for _, y in items])}

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        rows = rng.integers(0, len(self.train), size=batch_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
            return self._stack(self.train, rows)

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        if split != "valid":
            raise DataError(f"{self.name} has splits 'train' and 'valid' (the official val folder); got {split!r}")
        n = len(self.valid) if max_batches is None else min(len(self.valid), max_batches * batch_size)
        for first in range(0, n, batch_size):
            yield self._stack(self.valid, np.arange(first, min(first + batch_size, n)))

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> dict[str, float]:
        batches = self.eval_batches(split, batch_size, max_batches)
        return evaluate_predictions(model, batches, "classification", _accuracy, device=device, autocast=autocast)


def _cached_image_folder_class():
    from torchvision import datasets

    class CachedImageFolder(datasets.ImageFolder):
        """ImageFolder whose file list is cached: listing ImageNet's 1.28M files takes minutes, a cached list
        under a second. The key is each class folder's mtime (adding or removing a file changes it)."""

        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            import json

            folders = [Path(directory) / c for c in sorted(class_to_idx)]
            key = source_key(folders, sorted(class_to_idx.items()), extensions)
            cache = cache_root() / "imagefolder" / f"{key}.json"
            try:
                return [(p, int(y)) for p, y in json.loads(cache.read_text())]
            except (OSError, ValueError):
                pass
            samples = datasets.folder.make_dataset(
                directory, class_to_idx, extensions=extensions, is_valid_file=is_valid_file, allow_empty=allow_empty
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(samples))
            os.replace(tmp, cache)
            return samples

    return CachedImageFolder


def build_imagenet(
    root: str | None = None, seq_len: int | None = None, image_size: int = 224, folder: str = "imagenet"
) -> ImageFolderTask:
    """ImageNet-1k from `<root>/<folder>/{train,val}/<class>/*` (any folder of images in that layout works)."""
    del seq_len
    from torchvision import transforms

    CachedImageFolder = _cached_image_folder_class()
    base = data_root(root) / folder
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise missing_dataset(
            "ImageNet-1k",
            root,
            [
                f"{folder}/train/<wnid>/*.JPEG  (1000 class folders, 1,281,167 images)",
                f"{folder}/val/<wnid>/*.JPEG    (the 50,000 val images sorted into the same class folders)",
            ],
            hf_name="ILSVRC/imagenet-1k",
        )
    norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]
    )
    eval_tf = transforms.Compose(
        [transforms.Resize(round(image_size * 8 / 7)), transforms.CenterCrop(image_size), transforms.ToTensor(), norm]
    )
    try:
        train, valid = CachedImageFolder(base / "train", train_tf), CachedImageFolder(base / "val", eval_tf)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"{base}: not an image folder layout ({err})") from err
    if train.classes != valid.classes:
        raise DataError(
            f"{base}: train has {len(train.classes)} classes and val {len(valid.classes)}; they must be the same "
            f"folders (first difference: {sorted(set(train.classes) ^ set(valid.classes))[:3]})"
        )
    return ImageFolderTask(name=folder, train=train, valid=valid, image_size=image_size)
