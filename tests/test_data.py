"""Tests for certunlearn.data: IDX reader, loaders, row normalisation, downloads.

No test touches the network: downloads go through a monkeypatched ``data._fetch``
(or the real one on a ``file://`` URL). The IDX files used here are written by the
tests themselves from the format description, independently of ``data.read_idx``.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import http.client
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from certunlearn import data

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


# ------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` in the IDX format: 00 00 type ndim, big-endian dims, big-endian data."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim])
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_mnist(
    directory: Path, *, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write four tiny IDX files (5x4 images, every class 0..9 present) into ``directory``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 5, 4), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 5, 4), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    rng.shuffle(arrays["train_labels"])
    directory.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        write_idx(directory / (IDX_STEMS[key] + (".gz" if gz else "")), array, gz=gz)
    return arrays


def norms64(X: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(X, dtype=np.float64), axis=1)


def reference_preprocess(train: np.ndarray, test: np.ndarray, scale: float):
    """Independent float64 reference: scale, centre with the training mean, unit rows."""
    train = train.astype(np.float64) / scale
    test = test.astype(np.float64) / scale
    mean = train.mean(axis=0)

    def unit(X):
        X = X - mean
        n = np.linalg.norm(X, axis=1, keepdims=True)
        return np.divide(X, n, out=np.zeros_like(X), where=n > 0)

    return unit(train), unit(test)


def sorted_rows(X: np.ndarray) -> np.ndarray:
    return X[np.lexsort(X.T[::-1])]


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No system directory, no $CERTUNLEARN_DATA, an empty user cache under tmp_path."""
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {})
    monkeypatch.delenv("CERTUNLEARN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "certunlearn"


# ---------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10,  # images, 3-D
        np.array([7, 0, 9, 3], dtype=np.uint8),  # labels, 1-D
        np.array([[-128, 5], [127, -1]], dtype=np.int8),
        np.array([[-30000, 2], [300, 1]], dtype=np.int16),
        np.array([-(2**31), 2**31 - 1, 258], dtype=np.int32),
        np.array([[1.5, -2.25e-3], [np.pi, 1e30]], dtype=np.float32),
        np.array([np.pi, -1e-300, 2.0**60], dtype=np.float64),
    ],
    ids=["ubyte-3d", "ubyte-1d", "sbyte", "short", "int", "float", "double"],
)
def test_read_idx_roundtrip(tmp_path, array, gz):
    path = write_idx(tmp_path / ("x.idx.gz" if gz else "x.idx"), array, gz=gz)
    out = data.read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype  # native byte order, same kind
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_read_idx_detects_gzip_from_content_not_name(tmp_path):
    labels = np.array([1, 2, 3], dtype=np.uint8)
    path = tmp_path / "labels-without-gz-suffix"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(data.read_idx(path), labels)


def test_read_idx_reads_the_header_big_endian(tmp_path):
    # 0x0102 rows would read as 0x0201 if the dimensions were little-endian.
    array = np.zeros((258, 1), dtype=np.uint8)
    assert data.read_idx(write_idx(tmp_path / "big", array, gz=False)).shape == (258, 1)


def test_read_idx_truncated_file_raises_clear_error(tmp_path):
    payload = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    path = tmp_path / "truncated"
    path.write_bytes(payload[:-7])
    with pytest.raises(data.IDXFormatError, match=r"truncated or corrupt") as info:
        data.read_idx(path)
    assert "60 data bytes" in str(info.value) and "53" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_idx_truncated_gzip_raises_clear_error(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(data.IDXFormatError, match="gzip"):
        data.read_idx(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", "unknown IDX element type 0x0A"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "truncated or corrupt"),  # extra byte
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, payload, message):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(data.IDXFormatError, match=message):
        data.read_idx(path)


# ------------------------------------------------------ fashion-mnist on fake files


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_loader_from_path_matches_reference(isolated, tmp_path, gz):
    raw = fake_mnist(tmp_path / "files", gz=gz)
    ds = data.load("fashion-mnist", path=tmp_path / "files", download=False)
    X_tr = raw["train_images"].reshape(40, -1)
    X_te = raw["test_images"].reshape(20, -1)

    assert (ds.n_train, ds.n_features, ds.X_test.shape) == (40, 20, (20, 20))
    assert ds.task == "multiclass" and ds.num_classes == 10 and ds.classes is None
    assert ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.y_train, raw["train_labels"])
    np.testing.assert_array_equal(ds.y_test, raw["test_labels"])
    ref_tr, ref_te = reference_preprocess(X_tr, X_te, 255.0)
    np.testing.assert_allclose(ds.X_train, ref_tr, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ds.X_test, ref_te, rtol=1e-9, atol=1e-12)
    assert norms64(ds.X_train).max() <= 1.0 and norms64(ds.X_test).max() <= 1.0


def test_fashion_loader_binary_classes_use_training_mean(isolated, tmp_path):
    raw = fake_mnist(tmp_path / "files", n_train=60, n_test=30)
    ds = data.load("fashion-mnist", classes=(2, 4), path=tmp_path / "files", download=False)
    keep_tr = np.isin(raw["train_labels"], (2, 4))
    keep_te = np.isin(raw["test_labels"], (2, 4))

    assert ds.task == "binary" and ds.num_classes == 2 and ds.classes == (2, 4)
    assert ds.y_train.dtype == np.float64
    np.testing.assert_array_equal(
        ds.y_train, np.where(raw["train_labels"][keep_tr] == 2, 1.0, -1.0)
    )
    np.testing.assert_array_equal(ds.y_test, np.where(raw["test_labels"][keep_te] == 2, 1.0, -1.0))
    ref_tr, ref_te = reference_preprocess(
        raw["train_images"][keep_tr].reshape(keep_tr.sum(), -1),
        raw["test_images"][keep_te].reshape(keep_te.sum(), -1),
        255.0,
    )
    # The mean is that of the selected *training* rows; the test rows use it too.
    np.testing.assert_allclose(ds.X_train, ref_tr, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ds.X_test, ref_te, rtol=1e-9, atol=1e-12)


def test_fashion_loader_from_env_var(isolated, tmp_path, monkeypatch):
    raw = fake_mnist(tmp_path / "root" / "fashion-mnist", n_train=30, seed=3)
    monkeypatch.setenv("CERTUNLEARN_DATA", str(tmp_path / "root"))
    ds = data.load("fashion-mnist", classes=(0, 1, 2), normalize=False, download=False)
    keep = np.isin(raw["train_labels"], (0, 1, 2))
    np.testing.assert_array_equal(ds.X_train, raw["train_images"][keep].reshape(keep.sum(), -1))
    np.testing.assert_array_equal(ds.y_train, raw["train_labels"][keep])  # 0,1,2 -> 0,1,2
    assert ds.X_train.dtype == np.float64 and ds.X_train.max() > 1  # raw 0..255 values


def test_lookup_order_path_env_cache_system(isolated, tmp_path, monkeypatch):
    places = {
        "path": tmp_path / "explicit",
        "env": tmp_path / "env" / "fashion-mnist",
        "cache": isolated / "fashion-mnist",
        "system": tmp_path / "system",
    }
    for size, directory in zip((11, 12, 13, 14), places.values(), strict=True):
        fake_mnist(directory, n_train=size, gz=size % 2 == 0)
    monkeypatch.setenv("CERTUNLEARN_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {"fashion-mnist": (places["system"],)})

    def n_train(**kwargs):
        return data.load("fashion-mnist", download=False, normalize=False, **kwargs).n_train

    assert n_train(path=places["path"]) == 11
    assert n_train(path=tmp_path) == 12  # path=DIR without the files, nor DIR/fashion-mnist
    assert n_train() == 12
    shutil.rmtree(places["env"])
    assert n_train() == 13
    shutil.rmtree(places["cache"])
    assert n_train() == 14
    # path=DIR also finds DIR/<name>/
    assert n_train(path=tmp_path / "env-parent-missing") == 14
    fake_mnist(tmp_path / "parent" / "fashion-mnist", n_train=15)
    assert n_train(path=tmp_path / "parent") == 15


def test_incomplete_directory_is_skipped(isolated, tmp_path):
    fake_mnist(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.load("fashion-mnist", path=tmp_path / "partial", download=False)


def test_inconsistent_files_raise(isolated, tmp_path):
    fake_mnist(tmp_path / "files")
    write_idx(tmp_path / "files" / "train-labels-idx1-ubyte.gz", np.zeros(39, np.uint8), gz=True)
    with pytest.raises(data.IDXFormatError, match="train images"):
        data.load("fashion-mnist", path=tmp_path / "files", download=False)


# ------------------------------------------------------- the installed Fashion-MNIST


@pytest.fixture
def installed_fashion(monkeypatch, tmp_path):
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("CERTUNLEARN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(data, "_fetch", _no_network)


def _no_network(url, dest):
    raise AssertionError(f"test tried to download {url}")


def test_installed_fashion_mnist(installed_fashion):
    full32 = data.load("fashion-mnist", dtype="float32", download=False)
    assert full32.X_train.shape == (60000, 784) and full32.X_test.shape == (10000, 784)
    assert full32.X_train.dtype == np.float32 and full32.y_train.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(full32.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(full32.y_test), np.full(10, 1000))
    assert norms64(full32.X_train).max() <= 1.0 and norms64(full32.X_test).max() <= 1.0
    assert norms64(full32.X_train).min() > 1 - 1e-6  # no image equals the mean

    binary = data.load("fashion-mnist", classes=(2, 4), download=False)
    assert binary.X_train.shape == (12000, 784) and binary.X_test.shape == (2000, 784)
    assert binary.X_train.dtype == np.float64 and binary.y_train.dtype == np.float64
    np.testing.assert_array_equal(np.unique(binary.y_train, return_counts=True)[1], [6000, 6000])
    assert set(np.unique(binary.y_train).tolist()) == {-1.0, 1.0}
    assert norms64(binary.X_train).max() <= 1.0 and norms64(binary.X_test).max() <= 1.0
    # The same computation a model would do (x . x), not only np.linalg.norm.
    assert np.einsum("ij,ij->i", binary.X_train, binary.X_train).max() <= 1.0
    # +1 rows (Pullover, 2) are the class-2 rows of the full set, in the original order.
    selected = np.isin(full32.y_train, (2, 4))
    np.testing.assert_array_equal(binary.y_train == 1.0, full32.y_train[selected] == 2)


def test_installed_fashion_mnist_content_is_the_published_data():
    # The Debian package re-gzips the files (so their .gz MD5s differ from the README's);
    # the decompressed bytes match the MD5s published for the raw files.
    if not (FASHION_SYSTEM_DIR / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed")
    raw_md5 = {
        "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
        "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    }
    for filename, expected in raw_md5.items():
        content = gzip.decompress((FASHION_SYSTEM_DIR / filename).read_bytes())
        assert hashlib.md5(content).hexdigest() == expected, filename


# ---------------------------------------------------------------------- downloads


@pytest.fixture
def fake_server(tmp_path, monkeypatch, isolated):
    """Fake .gz files served by a monkeypatched _fetch; their MD5s replace the real table."""
    served = fake_mnist(tmp_path / "server")
    md5 = {
        f"{stem}.gz": (
            "md5",
            hashlib.md5((tmp_path / "server" / f"{stem}.gz").read_bytes()).hexdigest(),
        )
        for stem in IDX_STEMS.values()
    }
    monkeypatch.setitem(data._CHECKSUMS, "fashion-mnist", md5)
    calls: list[str] = []

    def fetch(url, dest):
        calls.append(url)
        shutil.copyfile(tmp_path / "server" / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(data, "_fetch", fetch)
    return served, calls, isolated / "fashion-mnist"


def test_download_lands_in_cache_after_checksum(fake_server):
    served, calls, cache = fake_server
    ds = data.load("fashion-mnist", normalize=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in IDX_STEMS.values())
    assert len(calls) == 4 and all(u.startswith(data._MIRRORS["fashion-mnist"][0]) for u in calls)
    np.testing.assert_array_equal(ds.y_train, served["train_labels"])
    np.testing.assert_array_equal(ds.X_test, served["test_images"].reshape(20, -1))
    data.load("fashion-mnist")  # second call: found in the cache, no fetch
    assert len(calls) == 4


def test_download_fetches_only_missing_files(fake_server):
    _, calls, cache = fake_server
    data.load("fashion-mnist")
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    calls.clear()
    data.load("fashion-mnist")
    assert [u.rsplit("/", 1)[1] for u in calls] == ["t10k-labels-idx1-ubyte.gz"]


def test_download_with_wrong_checksum_raises_and_keeps_nothing(fake_server, monkeypatch):
    _, calls, cache = fake_server
    bad = {name: ("md5", "0" * 32) for name in data._CHECKSUMS["fashion-mnist"]}
    monkeypatch.setitem(data._CHECKSUMS, "fashion-mnist", bad)
    with pytest.raises(data.ChecksumError, match="checksum") as info:
        data.load("fashion-mnist")
    assert isinstance(info.value, RuntimeError)
    assert len(calls) == len(data._MIRRORS["fashion-mnist"])  # every mirror tried once
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_network_failure_says_how_to_get_the_data(isolated, monkeypatch):
    def offline(url, dest):
        Path(dest).write_bytes(b"partial")  # a half-written temp file must not survive
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data, "_fetch", offline)
    with pytest.raises(FileNotFoundError) as info:
        data.load("fashion-mnist")
    message = str(info.value)
    for needle in (
        "apt-get install dataset-fashion-mnist",
        "CERTUNLEARN_DATA",
        "path=",
        "no network",
    ):
        assert needle in message
    assert str(isolated / "fashion-mnist") in message  # where it looked
    cache = isolated / "fashion-mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_falls_back_to_second_mirror(fake_server, monkeypatch):
    served, calls, _ = fake_server
    first, second = data._MIRRORS["fashion-mnist"][:2]
    copy = data._fetch

    def flaky(url, dest):
        if url.startswith(first):
            calls.append(url)
            raise urllib.error.URLError("first mirror down")
        copy(url, dest)

    monkeypatch.setattr(data, "_fetch", flaky)
    ds = data.load("fashion-mnist", normalize=False)
    assert sum(u.startswith(second) for u in calls) == 4
    np.testing.assert_array_equal(ds.y_test, served["test_labels"])


def test_download_survives_an_interrupted_transfer(fake_server, monkeypatch):
    served, calls, cache = fake_server
    copy = data._fetch

    def interrupted_once(url, dest):
        if not calls:
            calls.append(url)
            Path(dest).write_bytes(b"\x1f\x8b half")
            raise http.client.IncompleteRead(b"half")
        copy(url, dest)

    monkeypatch.setattr(data, "_fetch", interrupted_once)
    ds = data.load("fashion-mnist", normalize=False)
    np.testing.assert_array_equal(ds.y_train, served["train_labels"])
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_no_download_when_disabled(isolated, monkeypatch):
    monkeypatch.setattr(data, "_fetch", _no_network)
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.load("mnist", download=False)


def test_mnist_download_uses_its_own_mirror_and_checksums(isolated, tmp_path, monkeypatch):
    fake_mnist(tmp_path / "server")
    md5 = {
        f"{s}.gz": ("md5", hashlib.md5((tmp_path / "server" / f"{s}.gz").read_bytes()).hexdigest())
        for s in IDX_STEMS.values()
    }
    monkeypatch.setitem(data._CHECKSUMS, "mnist", md5)
    urls: list[str] = []

    def fetch(url, dest):
        urls.append(url)
        shutil.copyfile(tmp_path / "server" / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(data, "_fetch", fetch)
    ds = data.load("mnist", classes=(3, 8))
    assert ds.task == "binary" and ds.name == "mnist"
    assert all(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in urls)
    assert (isolated / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_real_fetch_copies_a_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00\x01payload" * 1000)
    data._fetch(source.as_uri(), tmp_path / "dest.bin")
    assert (tmp_path / "dest.bin").read_bytes() == source.read_bytes()
    with pytest.raises(OSError):
        data._fetch((tmp_path / "missing").as_uri(), tmp_path / "dest2.bin")


def test_published_checksum_tables():
    # The brief's published MD5s; a typo here would make every real download fail.
    assert data._CHECKSUMS["fashion-mnist"]["train-images-idx3-ubyte.gz"] == (
        "md5",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    )
    assert data._CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte.gz"] == (
        "md5",
        "ec29112dd5afa0611ce80d1b7f02629c",
    )
    for table in data._CHECKSUMS.values():
        assert sorted(table) == sorted(f"{s}.gz" for s in IDX_STEMS.values())
        assert all(algo == "md5" and len(h) == 32 for algo, h in table.values())


# --------------------------------------------------------------------------- digits


def test_digits_multiclass_split_is_stratified_and_deterministic():
    from sklearn.datasets import load_digits

    target = load_digits().target
    ds = data.load("digits", seed=0)
    assert ds.X_train.shape == (1438, 64) and ds.X_test.shape == (359, 64)
    assert ds.task == "multiclass" and ds.num_classes == 10 and ds.y_train.dtype == np.int32
    assert set(ds.y_train.tolist()) == set(range(10))
    expected_test = np.round(0.2 * np.bincount(target)).astype(int)
    np.testing.assert_array_equal(np.bincount(ds.y_test), expected_test)
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.bincount(target) - expected_test)

    again = data.load("digits", seed=0)
    other = data.load("digits", seed=1)
    np.testing.assert_array_equal(ds.X_train, again.X_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    assert not np.array_equal(ds.X_train, other.X_train)


def test_digits_split_is_a_partition_of_the_data():
    from sklearn.datasets import load_digits

    original = load_digits().data
    raw = data.load("digits", seed=5, normalize=False)
    both = np.concatenate([raw.X_train, raw.X_test])
    np.testing.assert_array_equal(sorted_rows(both), sorted_rows(original))


def test_digits_binary_3_vs_8():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = data.load("digits", classes=(3, 8), normalize=False)
    assert ds.task == "binary" and ds.classes == (3, 8) and ds.num_classes == 2
    assert set(np.unique(ds.y_train).tolist()) == {-1.0, 1.0}
    # +1 rows are exactly the 3s, -1 rows exactly the 8s (train and test together).
    for label, digit in ((1.0, 3), (-1.0, 8)):
        rows = np.concatenate([ds.X_train[ds.y_train == label], ds.X_test[ds.y_test == label]])
        np.testing.assert_array_equal(
            sorted_rows(rows), sorted_rows(bunch.data[bunch.target == digit])
        )
    assert (ds.y_train == 1).sum() == 183 - 37 and (ds.y_train == -1).sum() == 174 - 35


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_normalised_rows_and_dtype(dtype):
    ds = data.load("digits", classes=(3, 8), dtype=dtype)
    assert ds.X_train.dtype == np.dtype(dtype) and ds.y_train.dtype == np.dtype(dtype)
    for X in (ds.X_train, ds.X_test):
        norms = norms64(X)
        assert norms.max() <= 1.0
        assert norms.min() > 1 - 1e-6
        assert data.row_norm_violations(X).size == 0
    raw = data.load("digits", classes=(3, 8), normalize=False)
    ref_tr, ref_te = reference_preprocess(raw.X_train, raw.X_test, 16.0)
    tol = 1e-6 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(ds.X_train, ref_tr, atol=tol)
    np.testing.assert_allclose(ds.X_test, ref_te, atol=tol)


def test_digits_training_rows_are_centred_before_scaling():
    ds = data.load("digits", classes=(3, 8), normalize=False)
    centred = ds.X_train / 16.0 - (ds.X_train / 16.0).mean(axis=0)
    unit = data.load("digits", classes=(3, 8))
    # Undo the row scaling: the unit rows are positive multiples of the centred rows.
    ratio = np.einsum("ij,ij->i", unit.X_train, centred) / np.linalg.norm(centred, axis=1)
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-9)


def test_digits_multiclass_subset_relabels_in_given_order():
    ds = data.load("digits", classes=(7, 1, 5), normalize=False)
    full = data.load("digits", normalize=False)
    assert ds.task == "multiclass" and ds.num_classes == 3 and ds.classes == (7, 1, 5)
    for new, old in enumerate((7, 1, 5)):
        np.testing.assert_array_equal(
            ds.X_train[ds.y_train == new], full.X_train[full.y_train == old]
        )


def test_digits_subsample_is_seeded_subset():
    full = data.load("digits", normalize=False)
    sub = data.load("digits", n_train=100, n_test=50, normalize=False)
    assert sub.X_train.shape == (100, 64) and sub.X_test.shape == (50, 64)
    full_rows = {row.tobytes() for row in full.X_train}
    assert all(row.tobytes() in full_rows for row in sub.X_train)
    again = data.load("digits", n_train=100, n_test=50, normalize=False)
    np.testing.assert_array_equal(sub.X_train, again.X_train)
    other = data.load("digits", n_train=100, n_test=50, normalize=False, seed=7)
    assert not np.array_equal(sub.X_train, other.X_train)


# ------------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_and_shaped():
    a = data.load("synthetic", n_train=300, n_test=100, n_features=7, num_classes=3, seed=4)
    b = data.load("synthetic", n_train=300, n_test=100, n_features=7, num_classes=3, seed=4)
    c = data.load("synthetic", n_train=300, n_test=100, n_features=7, num_classes=3, seed=5)
    assert a.X_train.shape == (300, 7) and a.X_test.shape == (100, 7)
    assert a.task == "multiclass" and a.num_classes == 3 and set(a.y_train.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    # The training rows do not depend on the test size.
    d = data.load("synthetic", n_train=300, n_test=10, n_features=7, num_classes=3, seed=4)
    np.testing.assert_array_equal(a.X_train, d.X_train)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_synthetic_defaults_binary_norms_and_separability(dtype):
    ds = data.load("synthetic", classes=(0, 1), dtype=dtype)
    assert ds.X_train.shape == (1000, 20) and ds.X_test.shape == (500, 20)
    assert ds.task == "binary" and set(np.unique(ds.y_train).tolist()) == {-1.0, 1.0}
    assert norms64(ds.X_train).max() <= 1.0 and norms64(ds.X_test).max() <= 1.0
    # Nearly linearly separable: least squares on the training set classifies the test set.
    w, *_ = np.linalg.lstsq(
        np.asarray(ds.X_train, np.float64), ds.y_train.astype(np.float64), rcond=None
    )
    assert np.mean(np.sign(ds.X_test @ w) == ds.y_test) > 0.9


# ------------------------------------------------------------------ normalize_rows


def test_normalize_rows_does_not_modify_input_and_keeps_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 30)) * rng.uniform(0.1, 100, size=(50, 1))
    X[7] = 0.0
    before = X.copy()
    out = data.normalize_rows(X)
    np.testing.assert_array_equal(X, before)
    assert out is not X and not np.shares_memory(out, X)
    np.testing.assert_array_equal(out[7], 0.0)
    keep = np.arange(50) != 7
    expected = X[keep] / np.linalg.norm(X[keep], axis=1, keepdims=True)
    np.testing.assert_allclose(out[keep], expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalize_rows_bound_holds_after_cast(dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20000, 64))  # many rows: float32 rounding pushes naive ones above 1
    naive = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(dtype)
    out = data.normalize_rows(X, dtype=dtype)
    assert out.dtype == np.dtype(dtype)
    assert norms64(out).max() <= 1.0
    assert norms64(out).min() > 1 - 1e-6
    if dtype == "float32":
        assert norms64(naive).max() > 1.0  # the problem the guarantee fixes is real


def test_cast_repairs_rows_that_rounding_pushed_above_one():
    # Rows of norm exactly 1 in float64 (no margin): the post-cast check must catch
    # the float32 rows that rounding pushed above 1, independently of _row_target.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5000, 64))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert norms64(X.astype(np.float32)).max() > 1.0
    out = data._cast_unit_rows(X.copy(), np.dtype(np.float32))
    assert out.dtype == np.float32 and norms64(out).max() <= 1.0
    np.testing.assert_allclose(out, X, atol=1e-6)


def test_normalize_rows_extreme_magnitudes():
    X = np.array([[1e-310, 2e-310], [1e300, -1e300], [3.0, 4.0], [0.0, 0.0]])
    out = data.normalize_rows(X)
    np.testing.assert_allclose(
        out[:3], [[1 / 5**0.5, 2 / 5**0.5], [2**-0.5, -(2**-0.5)], [0.6, 0.8]], rtol=1e-9
    )
    np.testing.assert_array_equal(out[3], 0.0)
    assert norms64(out).max() <= 1.0


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    X=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    ),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_normalize_rows_property(X, dtype):
    out = data.normalize_rows(X, dtype=dtype)
    assert out.shape == X.shape
    assert norms64(out).max() <= 1.0
    zero = ~X.any(axis=1)
    assert not out[zero].any()
    assert np.all(norms64(out)[~zero] > 1 - 1e-6)


def test_normalize_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        data.normalize_rows(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        data.normalize_rows(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="dtype"):
        data.normalize_rows(np.ones((2, 2)), dtype="float16")


def test_row_norm_violations():
    X = np.array([[0.6, 0.8], [1.0, 1e-3], [np.nan, 0.0], [0.0, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(data.row_norm_violations(X), [1, 2, 4])
    np.testing.assert_array_equal(data.row_norm_violations(X, max_norm=3.0), [2])
    assert data.row_norm_violations(X).dtype == np.int64


# ----------------------------------------------------------- Dataset and bad inputs


def test_dataset_is_frozen_read_only_and_has_a_short_repr():
    ds = data.load("digits", classes=(3, 8))
    assert ds.n_train == ds.X_train.shape[0] and ds.n_features == 64
    text = repr(ds)
    assert "float64[285, 64]" in text and "(3, 8)" in text and len(text) < 300
    with pytest.raises(ValueError):
        ds.X_train[0, 0] = 5.0  # the norm guarantee cannot be broken in place
    with pytest.raises(AttributeError):
        ds.name = "other"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"name must be one of .*'digits'.*'synthetic'"):
        data.load("cifar-10")
    assert data.available() == ["digits", "fashion-mnist", "mnist", "synthetic"]


@pytest.mark.parametrize(
    "classes", [(3,), (3, 3), (3, 11), (3, -1), "38", (3.0, 8), 3, (True, False)]
)
def test_bad_classes_raise_naming_the_argument(classes):
    with pytest.raises(ValueError, match=r"classes") as info:
        data.load("digits", classes=classes)
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in str(info.value)


def test_bad_classes_for_synthetic_list_its_classes():
    with pytest.raises(ValueError, match=r"classes.*\[0, 1, 2\]"):
        data.load("synthetic", num_classes=3, classes=(0, 3))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"n_train": 2000}, "n_train"),
        ({"classes": (3, 8), "n_train": 286}, "n_train"),
        ({"n_test": 360}, "n_test"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": -2}, "n_test"),
        ({"n_train": 10.5}, "n_train"),
        ({"dtype": "int32"}, "dtype"),
        ({"seed": -1}, "seed"),
        ({"n_features": 5}, "n_features"),
        ({"num_classes": 3}, "num_classes"),
        ({"path": "/tmp"}, "path"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        data.load("digits", **kwargs)


def test_n_train_too_large_for_idx_sets(isolated, tmp_path):
    fake_mnist(tmp_path / "files")
    with pytest.raises(ValueError, match=r"n_train=41 exceeds the 40"):
        data.load("fashion-mnist", path=tmp_path / "files", n_train=41)


def test_classes_argument_is_not_mutated():
    classes = [3, 8]
    data.load("digits", classes=classes)
    assert classes == [3, 8]


def test_module_does_not_import_jax():
    tree = ast.parse(Path(data.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "jax" not in imported and "flax" not in imported
    assert "numpy" in imported  # the parse found the imports at all
