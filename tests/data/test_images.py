"""Image tasks on the MNIST fixture (real digits, re-packed as IDX): loaders, checksums, batches, metrics."""

from __future__ import annotations

import gzip
import math
import shutil
import struct

import numpy as np
import pytest
import torch

from flurka.data import images
from flurka.data.sources import DataError
from tests.helpers import FIXTURE_DATA, use_fixture_checksums


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))


def raw_idx(name: str) -> np.ndarray:
    """The fixture's bytes parsed here independently of the loader (fixed header sizes)."""
    raw = gzip.decompress((FIXTURE_DATA / "mnist" / name).read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16 if "images" in name else 8)


class ConstantModel(torch.nn.Module):
    """Predicts class 0 for every input; loss = cross-entropy of uniform-ish fixed logits."""

    def forward(self, pixels=None, input_ids=None, labels=None, **_):
        x = pixels if pixels is not None else input_ids
        logits = torch.zeros(x.shape[0], 10)
        logits[:, 0] = 1.0
        return {"logits": logits, "loss": torch.nn.functional.cross_entropy(logits, labels)}


def test_published_md5_of_the_content_rejects_the_fixture():
    with pytest.raises(DataError, match="checksum mismatch .*train-images-idx3-ubyte.gz: md5_gunzip"):
        images.load_mnist(FIXTURE_DATA)


def test_mnist_loads_real_digits_with_known_labels(monkeypatch):
    root = use_fixture_checksums(monkeypatch)
    d = images.load_mnist(root)
    assert d["train_images"].shape == (144, 28, 28) and d["train_images"].dtype == np.uint8
    assert list(d["train_labels"][:5]) == [5, 0, 4, 1, 9]  # MNIST's well-known first training labels
    assert list(d["test_labels"][:5]) == [7, 2, 1, 0, 4]
    assert (d["train_images"].reshape(-1) == raw_idx("train-images-idx3-ubyte.gz")).all()
    again = images.load_mnist(root)  # second run: memory-mapped cache
    assert isinstance(again["train_images"], np.memmap) and (again["train_images"] == d["train_images"]).all()


def test_idx_header_and_size_are_validated(tmp_path):
    good = gzip.decompress((FIXTURE_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    bad_magic = tmp_path / "bad-magic.gz"
    bad_magic.write_bytes(gzip.compress(struct.pack(">I", 0x803) + good[4:]))
    with pytest.raises(DataError, match="magic number 0x00000803, expected 0x00000801"):
        images.read_idx(bad_magic, "labels")
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(good[:-3]))
    with pytest.raises(DataError, match="truncated or padded: 45 data bytes, header says \\(48,\\)"):
        images.read_idx(short, "labels")


def test_truncated_gzip_stops_with_a_clear_error(tmp_path, monkeypatch):
    use_fixture_checksums(monkeypatch)
    shutil.copytree(FIXTURE_DATA / "mnist", tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is corrupt or truncated"):
        images.load_mnist(tmp_path)


def test_missing_mnist_names_the_files(tmp_path):
    with pytest.raises(DataError, match=r"missing data file .*mnist/train-images-idx3-ubyte.gz.*t10k-labels"):
        images.load_mnist(tmp_path)


def test_image_classification_batches_and_accuracy(monkeypatch):
    use_fixture_checksums(monkeypatch)
    task = images.build_mnist_image()
    assert task.kind == "image_classification"
    assert task.model_kwargs() == {"image_size": 28, "channels": 1, "num_classes": 10}
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 132, "valid": 12, "test": 48}
    b = task.train_batch(0, 5, seed=0)
    assert b["pixels"].shape == (5, 1, 28, 28) and b["pixels"].dtype == torch.float32
    assert b["labels"].dtype == torch.int64
    assert b["pixels"].min() == pytest.approx((0 - 0.1307) / 0.3081)  # background pixel, normalised
    assert (task.train_batch(0, 5, seed=0)["pixels"] == b["pixels"]).all()
    test_labels = raw_idx("t10k-labels-idx1-ubyte.gz")
    result = task.evaluate(ConstantModel(), "test", batch_size=16)
    assert result["accuracy"] == pytest.approx((test_labels == 0).mean())
    expected_loss = (
        -math.log(math.e / (math.e + 9)) * (test_labels == 0).mean()
        - math.log(1 / (math.e + 9)) * (test_labels != 0).mean()
    )
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_step_seeded_batches_are_deterministic(monkeypatch):
    use_fixture_checksums(monkeypatch)
    task = images.build_mnist_seq()
    a, b, c = task.train_batch(7, 8, seed=3), task.train_batch(7, 8, seed=3), task.train_batch(8, 8, seed=3)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (a["input_ids"] == c["input_ids"]).all()


def test_sequential_mnist_is_the_raw_pixels_in_raster_order(monkeypatch):
    use_fixture_checksums(monkeypatch)
    task = images.build_mnist_seq()
    assert task.kind == "classification" and task.model_kwargs()["num_labels"] == 10
    batch = next(task.eval_batches("test", 3))
    pixels = raw_idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    assert batch["input_ids"].shape == (3, 784) and (batch["input_ids"].numpy() == pixels[:3]).all()
    assert list(batch["labels"]) == [7, 2, 1]


def test_downsampled_sequence_averages_pixel_blocks(monkeypatch):
    use_fixture_checksums(monkeypatch)
    task = images.build_mnist_seq(seq_len=16)  # 4x4: each token is the mean of a 7x7 block
    first = raw_idx("t10k-images-idx3-ubyte.gz").reshape(-1, 28, 28)[0].astype(float)
    expected = first.reshape(4, 7, 4, 7).mean(axis=(1, 3))
    assert np.abs(next(task.eval_batches("test", 1))["input_ids"][0].numpy() - expected.reshape(-1)).max() <= 0.5
    with pytest.raises(ValueError, match="square number of pixels"):
        images.build_mnist_seq(seq_len=100 + 1)


def test_autoregressive_mnist_predicts_every_pixel(monkeypatch):
    use_fixture_checksums(monkeypatch)
    task = images.build_mnist_ar()
    assert task.kind == "lm" and task.causal and task.model_kwargs() == {"vocab_size": 257, "max_len": 784}
    b = next(task.eval_batches("test", 2))
    pixels = raw_idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784)[:2]
    assert (b["labels"].numpy() == pixels).all()
    assert (b["input_ids"][:, 0] == 256).all() and (b["input_ids"][:, 1:] == b["labels"][:, :-1]).all()
    assert task.eval_metrics(8 * math.log(2))["bpd"] == pytest.approx(8.0)
    quantised = images.build_mnist_ar(levels=4)
    q = next(quantised.eval_batches("test", 2))
    assert quantised.vocab_size == 5 and (q["labels"].numpy() == pixels // 64).all()


def _digit_folder(root, split, n_per_class):
    from PIL import Image

    imgs = raw_idx("train-images-idx3-ubyte.gz").reshape(-1, 28, 28)
    labels = raw_idx("train-labels-idx1-ubyte.gz")
    for digit in (3, 7):
        folder = root / "imagenet" / split / f"n0000000{digit}"
        folder.mkdir(parents=True)
        for i in np.flatnonzero(labels == digit)[:n_per_class]:
            Image.fromarray(imgs[i]).save(folder / f"{i}.png")


def test_imagenet_folder_layout_on_real_digits(tmp_path):
    _digit_folder(tmp_path, "train", 4)
    _digit_folder(tmp_path, "val", 2)
    task = images.build_imagenet(str(tmp_path), image_size=24)
    assert task.model_kwargs() == {"image_size": 24, "channels": 3, "num_classes": 2}
    a = task.train_batch(0, 6, seed=0)
    assert a["pixels"].shape == (6, 3, 24, 24) and a["pixels"].dtype == torch.float32
    assert set(a["labels"].tolist()) <= {0, 1}
    assert (task.train_batch(0, 6, seed=0)["pixels"] == a["pixels"]).all()  # augmentation is step-seeded
    val = list(task.eval_batches("valid", 3))
    assert [b["labels"].tolist() for b in val] == [[0, 0, 1], [1]]
    result = task.evaluate(ConstantModel(), "valid", batch_size=3)
    assert result["accuracy"] == pytest.approx(0.5)
    lists = list((tmp_path / "cache" / "imagefolder").glob("*.json"))  # file lists cached for the next start
    assert len(lists) == 2 and images.build_imagenet(str(tmp_path), image_size=24).train.samples == task.train.samples


def test_imagenet_missing_and_mismatched_classes(tmp_path):
    with pytest.raises(DataError, match=r"(?s)imagenet/train/<wnid>/\*\.JPEG.*ILSVRC/imagenet-1k"):
        images.build_imagenet(str(tmp_path))
    _digit_folder(tmp_path, "train", 1)
    (tmp_path / "imagenet" / "val" / "n00000003").mkdir(parents=True)
    shutil.copy(
        next((tmp_path / "imagenet" / "train" / "n00000003").glob("*.png")), tmp_path / "imagenet/val/n00000003"
    )
    with pytest.raises(DataError, match="train has 2 classes and val 1"):
        images.build_imagenet(str(tmp_path))


def test_cifar10_missing_names_the_release_files(tmp_path):
    with pytest.raises(DataError, match=r"(?s)cifar-10-batches-py/data_batch_1.*test_batch.*uoft-cs/cifar10"):
        images.build_cifar10(str(tmp_path))


def test_cifar10_python_batches_parse_checksum_and_augment(tmp_path, monkeypatch):
    """The CIFAR-10 release format (pickled dicts of uint8 rows), filled with real MNIST digits padded to 32x32x3:
    CIFAR-10 itself is not staged here. The published md5s must reject these files; registered, they load."""
    import pickle

    from flurka.data import files

    digits = raw_idx("train-images-idx3-ubyte.gz").reshape(-1, 28, 28)[:12]
    labels = raw_idx("train-labels-idx1-ubyte.gz")[:12]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rgb = np.repeat(np.pad(digits, ((0, 0), (2, 2), (2, 2)))[:, None], 3, axis=1)  # [N, 3, 32, 32], CIFAR's order
    for k, name in enumerate(images.CIFAR_BATCHES):
        rows = slice(2 * k, 2 * k + 2)
        batch = {b"data": rgb[rows].reshape(2, -1), b"labels": labels[rows].tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="checksum mismatch .*data_batch_1: md5"):
        images.load_cifar10(tmp_path)
    for name in images.CIFAR_BATCHES:
        rel = f"cifar-10-batches-py/{name}"
        monkeypatch.setitem(files.PUBLISHED, rel, ("md5", files.digest(tmp_path / rel, "md5")))
    d = images.load_cifar10(tmp_path)
    assert d["train_images"].shape == (10, 32, 32, 3) and d["test_images"].shape == (2, 32, 32, 3)
    assert (d["train_images"][0, 2:30, 2:30, 1] == digits[0]).all() and list(d["test_labels"]) == list(labels[10:])
    task = images.build_cifar10(str(tmp_path))
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 9, "valid": 1, "test": 2}
    b = task.train_batch(0, 4, seed=0)
    assert b["pixels"].shape == (4, 3, 32, 32) and (task.train_batch(0, 4, seed=0)["pixels"] == b["pixels"]).all()
