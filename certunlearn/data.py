"""Data sets for certified unlearning: loaders, an IDX reader and row normalisation.

Everything here is host-side NumPy; nothing imports JAX. :func:`load` returns a
:class:`Dataset` whose arrays are ready to hand to the models.

Conventions
-----------
* **Rows are examples.** ``X_train`` has shape ``(n, d)``; image sets are flattened
  row-major (28 x 28 -> 784).
* **Labels.** A binary task (``classes=(a, b)``) maps class ``a`` to ``+1`` and class
  ``b`` to ``-1``, stored as floats in ``dtype`` (the margin convention of the
  logistic and Huber losses, y * w^T x). A multiclass task (``classes=None``, or
  three or more classes) stores ``int32`` labels ``0 .. K-1``; with an explicit
  ``classes`` tuple the i-th class id listed becomes label ``i``.
* **Normalisation** (``normalize=True``, the default). Pixel values are scaled to
  [0, 1]; every feature is centred with the *training* mean (the same mean is
  subtracted from the test rows, so no test statistics leak into training); every
  row is then scaled to L2 norm just below 1 (zero rows stay zero). The removal
  certificates of Guo et al. (2020, arXiv:1911.03030) assume ||x_i||_2 <= 1, so this
  module *guarantees* that every returned row has norm <= 1 when the norm is computed
  in float64 from the stored values, in float32 as well as float64: rows are scaled
  in float64 to norm ``(1 - 2**-36)(1 - eps)`` (eps of ``dtype``), which rounding to
  ``dtype`` cannot push past 1, and the cast rows are checked against
  ``1 - 2**-38`` (and shrunk if ever needed). Float64 rows have norm
  ``1 - 1.5e-11``, float32 rows ``1 - 1.2e-7``, up to rounding.
  With ``normalize=False`` the raw values are returned (pixels 0..255, digits 0..16).
* **Randomness.** Every random choice (the digits train/test split, subsampling, the
  synthetic generator) comes from ``numpy.random.SeedSequence(seed)``; the same
  arguments always give the same arrays. Subsamples keep the original row order.
* **Files.** Fashion-MNIST and MNIST are read from the original IDX files (``.gz``
  or uncompressed), looked up in this order: ``path=`` (the directory itself, then
  ``path/<name>``), ``$CERTUNLEARN_DATA/<name>``, the user cache
  ``$XDG_CACHE_HOME/certunlearn/<name>`` (default ``~/.cache/certunlearn/<name>``),
  and for Fashion-MNIST the Debian/Ubuntu package directory
  ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
  If none has all four files and ``download=True``, the missing files are
  downloaded into the user cache, checked against the published checksums, and
  only then moved into place (atomically). Local files are not checksummed: the
  Debian package re-gzips the files, so its ``.gz`` MD5s differ from the published
  ones although the decompressed data are identical.

Arrays in a :class:`Dataset` are read-only, so the norm guarantee cannot be broken
by accident; copy them (``np.array(ds.X_train)``) to modify.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import numbers
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "Dataset",
    "IDXFormatError",
    "available",
    "load",
    "normalize_rows",
    "read_idx",
    "row_norm_violations",
]


# --------------------------------------------------------------------------- errors


class DataNotFoundError(FileNotFoundError):
    """The files of a data set are not on disk and could not be downloaded."""


class ChecksumError(RuntimeError):
    """A downloaded file did not match its published checksum (it was discarded)."""


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (bad header, truncated, corrupt gzip)."""


# ------------------------------------------------------------------------- constants

# Rows are scaled to _NORM_TARGET * (1 - eps of the output dtype) (see _row_target);
# after the cast, a row whose float64 norm exceeds _NORM_CEILING would be shrunk again.
# The gap to 1 (about 3.6e-12) absorbs the few-ulp differences between ways of
# computing a float64 norm (einsum, np.linalg.norm, BLAS dot).
_NORM_TARGET: Final = 1.0 - 2.0**-36
_NORM_CEILING: Final = 1.0 - 2.0**-38
_CHUNK_ROWS: Final = 8192  # bounds the temporaries of row-wise passes (8192 x 784 x 8 B = 51 MB)

_DTYPES: Final = (np.dtype(np.float32), np.dtype(np.float64))

_IDX_DTYPES: Final[dict[int, np.dtype]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Keys of the four IDX files, in the order of _IDX_FILES' values.
_IDX_FILES: Final[dict[str, str]] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Download locations, tried in order. The S3 *website* endpoint of Fashion-MNIST is
# HTTP-only (S3 website endpoints do not serve HTTPS); integrity comes from the
# checksum, and the GitHub copy of the same files is the HTTPS fallback.
_MIRRORS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
}

# (algorithm, hex digest) of the downloaded .gz files. Fashion-MNIST: the MD5s
# published in the zalandoresearch/fashion-mnist README; MNIST: torchvision's list.
_CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
}

# Directories that system packages install into, searched after the user cache.
_SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_FETCH_TIMEOUT_S: Final = 60.0
_DIGITS_TEST_FRACTION: Final = 0.2
_SYNTHETIC_N_TRAIN: Final = 1000
_SYNTHETIC_N_TEST: Final = 500
_SYNTHETIC_N_FEATURES: Final = 20
_SYNTHETIC_NUM_CLASSES: Final = 2
_SYNTHETIC_SEPARATION: Final = 3.0


# --------------------------------------------------------------------------- Dataset


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split with its labelling convention.

    Attributes:
        X_train: ``(n_train, d)`` features, floating ``dtype``; rows have L2 norm
            <= 1 when the data set was loaded with ``normalize=True``.
        y_train: ``(n_train,)`` labels: ``+1.0/-1.0`` in ``dtype`` for a binary task,
            ``int32`` in ``0 .. num_classes-1`` for a multiclass task.
        X_test: ``(n_test, d)`` features, preprocessed with the training statistics.
        y_test: ``(n_test,)`` labels, same convention as ``y_train``.
        name: the data set name given to :func:`load`.
        classes: the original class ids selected, in label order (``classes[0]`` is
            ``+1`` in a binary task, label ``i`` in a multiclass one); ``None`` when
            all classes are used.
        num_classes: number of distinct labels (2 for a binary task).
        task: ``"binary"`` or ``"multiclass"``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: tuple[int, ...] | None
    num_classes: int
    task: str

    def __post_init__(self) -> None:
        if self.task not in ("binary", "multiclass"):
            raise ValueError(f"task must be 'binary' or 'multiclass', got {self.task!r}")
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
                raise ValueError(
                    f"X_{split} must be (n, d) and y_{split} (n,), got {X.shape} and {y.shape}"
                )
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ValueError(
                f"X_train and X_test must have the same number of features, got "
                f"{self.X_train.shape[1]} and {self.X_test.shape[1]}"
            )

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return int(self.X_test.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features d (columns of ``X_train``)."""
        return int(self.X_train.shape[1])

    def __repr__(self) -> str:
        def spec(a: np.ndarray) -> str:
            return f"{a.dtype.name}{list(a.shape)}"

        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, classes={self.classes!r}, "
            f"num_classes={self.num_classes}, X_train={spec(self.X_train)}, "
            f"y_train={spec(self.y_train)}, X_test={spec(self.X_test)}, "
            f"y_test={spec(self.y_test)})"
        )


# ----------------------------------------------------------------- row normalisation


def _check_dtype(dtype: str | np.dtype | type) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def _row_norms(X: np.ndarray) -> np.ndarray:
    """Float64 L2 norm of every row, computed in row chunks to bound memory."""
    norms = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = np.asarray(X[start : start + _CHUNK_ROWS], dtype=np.float64)
        norms[start : start + _CHUNK_ROWS] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return norms


def _row_target(dtype: np.dtype) -> float:
    """Norm to scale float64 rows to before casting them to ``dtype``.

    Rounding each entry to ``dtype`` changes it by a relative error of at most eps/2,
    so it changes a row norm by at most that factor: a row of norm
    ``_NORM_TARGET * (1 - eps)`` stays below ``_NORM_CEILING`` after the cast.
    """
    return _NORM_TARGET * (1.0 - float(np.finfo(dtype).eps))


def _unit_rows_inplace(X: np.ndarray, target: float) -> None:
    """Scale the rows of a float64 array to norm ``target`` in place; zero rows stay zero."""
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS]
        # Dividing by the largest entry first keeps tiny or huge rows from
        # underflowing or overflowing in the sum of squares.
        # (A division, not a multiplication by 1/peak: 1/peak overflows for subnormal peaks.)
        peak = (
            np.max(np.abs(block), axis=1, keepdims=True)
            if block.shape[1]
            else np.zeros((len(block), 1))
        )
        np.divide(block, peak, out=block, where=peak > 0)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        scale = np.zeros_like(norms)
        np.divide(target, norms, out=scale, where=norms > 0)
        block *= scale[:, None]


def _cast_unit_rows(X64: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast rows scaled by ``_row_target(dtype)`` to ``dtype``, then verify the bound.

    The verification is the guarantee; the repair loop should never run (the bound
    in ``_row_target`` is a proof), but it costs nothing when it does not.
    """
    out = X64.astype(dtype, copy=False)
    eps = float(np.finfo(dtype).eps)
    for attempt in range(1, 12):
        norms = _row_norms(out)
        bad = np.flatnonzero(norms > _NORM_CEILING)
        if bad.size == 0:
            return out
        target = _NORM_TARGET * (1.0 - 2.0**attempt * eps)
        rows = np.asarray(out[bad], dtype=np.float64) * (target / norms[bad])[:, None]
        out[bad] = rows.astype(dtype)
    raise RuntimeError("could not bring every row norm below 1 after the cast; please report this")


def normalize_rows(X: np.ndarray, *, dtype: str | np.dtype = "float64") -> np.ndarray:
    """Scale every row of ``X`` to unit L2 norm (from just below), returning a new array.

    Computes ``x_i / ||x_i||_2`` in float64 (times ``(1 - 2**-36)(1 - eps)``, eps of
    ``dtype``), casts to ``dtype`` and re-checks: every row of the result has
    ``||x_i||_2 <= 1`` when the norm is computed in float64 from the stored values,
    also in float32 where rounding could otherwise give 1.0000001. Rows that are
    entirely zero stay zero. This is the ``||x|| <= 1`` assumption of Guo et al.
    (2020, arXiv:1911.03030). No centring is done.

    Args:
        X: ``(n, d)`` finite real array; not modified.
        dtype: ``"float32"`` or ``"float64"``, the dtype of the result.

    Returns:
        A new ``(n, d)`` array of ``dtype``.

    Raises:
        ValueError: if ``X`` is not 2-D, not real, or not finite, or ``dtype`` is not
            float32/float64.

    Example:
        >>> import numpy as np
        >>> Z = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]), dtype="float32")
        >>> np.round(Z.astype(np.float64), 6).tolist()
        [[0.6, 0.8], [0.0, 0.0]]
        >>> row_norm_violations(Z).tolist()
        []
    """
    out_dtype = _check_dtype(dtype)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (rows are examples), got shape {X.shape}")
    if not (
        np.issubdtype(X.dtype, np.floating)
        or np.issubdtype(X.dtype, np.integer)
        or X.dtype == np.bool_
    ):
        raise ValueError(f"X must be a real numeric array, got dtype {X.dtype}")
    X64 = np.array(X, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(X64)):
        bad = np.flatnonzero(~np.all(np.isfinite(X64), axis=1))
        raise ValueError(f"X must be finite; rows {bad[:10].tolist()} contain NaN or inf")
    _unit_rows_inplace(X64, _row_target(out_dtype))
    return _cast_unit_rows(X64, out_dtype)


def row_norm_violations(X: np.ndarray, *, max_norm: float = 1.0) -> np.ndarray:
    """Indices of the rows of ``X`` whose float64 L2 norm exceeds ``max_norm``.

    Rows containing NaN count as violations.

    Args:
        X: ``(n, d)`` array.
        max_norm: the allowed norm (the data bound of the certificate; 1 by default).

    Returns:
        Sorted ``int64`` array of row indices; empty when every row satisfies the bound.

    Raises:
        ValueError: if ``X`` is not 2-D.

    Example:
        >>> row_norm_violations(np.array([[0.6, 0.8], [1.0, 0.1]])).tolist()
        [1]
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}")
    norms = _row_norms(X)
    return np.flatnonzero(~(norms <= max_norm)).astype(np.int64)


# ------------------------------------------------------------------------ IDX files


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Format: a 4-byte magic number ``00 00 TT NN`` where ``TT`` is the element type
    (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and
    ``NN`` the number of dimensions; then ``NN`` big-endian uint32 sizes; then the
    elements, big-endian, in C order. Compression is detected from the gzip magic
    bytes, not the file name.

    Args:
        path: the file.

    Returns:
        A new, writable array in native byte order with the shape of the header.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IDXFormatError: (a ``ValueError``) on a corrupt gzip stream, a bad magic
            number, an unknown type code, or a data size that does not match the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IDXFormatError(
            f"{path}: not an IDX file (the magic number must start with two zero bytes, "
            f"got {raw[:4].hex(' ') or 'an empty file'})"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise IDXFormatError(
            f"{path}: unknown IDX element type 0x{type_code:02X}; expected one of "
            + ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IDXFormatError(
            f"{path}: truncated header: {ndim} dimensions need {header_len} bytes, "
            f"file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_len
    if found != expected:
        raise IDXFormatError(
            f"{path}: the header declares shape {shape} of {dtype.str[1:]} "
            f"({expected} data bytes) but the file has {found} data bytes; "
            "the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# ------------------------------------------------------------ finding / downloading


def _cache_dir(name: str) -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "certunlearn" / name


def _candidate_dirs(name: str, path: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    if path is not None:
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise ValueError(
                f"path must be a directory holding the {name} IDX files, got file {root}"
            )
        dirs += [root, root / name]
    env = os.environ.get("CERTUNLEARN_DATA")
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs.append(_cache_dir(name))
    dirs += list(_SYSTEM_DIRS.get(name, ()))
    return dirs


def _idx_files_in(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (plain preferred over .gz), or None if any is missing."""
    found: dict[str, Path] = {}
    for key, stem in _IDX_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _how_to_get(name: str, searched: Sequence[Path]) -> str:
    files = ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES.values())
    lines = [
        f"Looked for the {name} files ({files}) in: " + ", ".join(str(d) for d in searched) + ".",
        "To get them:",
    ]
    if name == "fashion-mnist":
        lines.append(
            "  - Debian/Ubuntu: apt-get install dataset-fashion-mnist "
            "(installs them in /usr/share/datasets/fashion-mnist);"
        )
    lines += [
        f"  - put the four files (.gz or uncompressed) in $CERTUNLEARN_DATA/{name}/ "
        "or in a directory passed as load(..., path=DIR);",
        f"  - or call load({name!r}, download=True) with network access; the files are "
        f"fetched from {', '.join(_MIRRORS[name])} into {_cache_dir(name)}.",
    ]
    return "\n".join(lines)


def _fetch(url: str, dest: str | os.PathLike[str]) -> None:
    """Download ``url`` to the file ``dest`` (overwritten). Tests replace this function.

    Raises:
        OSError: (``urllib.error.URLError`` and friends) or
            ``http.client.HTTPException`` on a network failure.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "certunlearn"})
    with (
        urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response,
        open(dest, "wb") as out,
    ):
        shutil.copyfileobj(response, out, length=1 << 20)


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _download_file(name: str, filename: str, directory: Path) -> Path:
    """Fetch one file into ``directory``: temp file, checksum, then atomic rename."""
    algorithm, expected = _CHECKSUMS[name][filename]
    dest = directory / filename
    failures: list[str] = []
    checksum_failed = False
    for base in _MIRRORS[name]:
        url = base + filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                _fetch(url, tmp)
            except (OSError, http.client.HTTPException) as err:
                failures.append(f"{url}: {err!r}")
                continue
            actual = _digest(tmp, algorithm)
            if actual != expected:
                checksum_failed = True
                failures.append(f"{url}: {algorithm} {actual} != published {expected}")
                continue
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    detail = "\n  ".join(failures)
    if checksum_failed:
        raise ChecksumError(
            f"Downloaded {name} file {filename} did not match its published checksum; "
            f"nothing was kept.\n  {detail}"
        )
    raise DataNotFoundError(f"Could not download {name} file {filename}:\n  {detail}")


def _locate_idx(name: str, path: str | os.PathLike[str] | None, download: bool) -> dict[str, Path]:
    searched = _candidate_dirs(name, path)
    for directory in searched:
        found = _idx_files_in(directory)
        if found is not None:
            return found
    hint = _how_to_get(name, searched)
    if not download:
        raise DataNotFoundError(f"{name} files not found and download=False.\n{hint}")
    cache = _cache_dir(name)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for stem in _IDX_FILES.values():
            if not (cache / stem).is_file() and not (cache / f"{stem}.gz").is_file():
                _download_file(name, f"{stem}.gz", cache)
    except ChecksumError as err:
        raise ChecksumError(f"{err}\n{hint}") from err
    except OSError as err:  # includes DataNotFoundError and an unwritable cache
        raise DataNotFoundError(
            f"{name} files not found and the download failed: {err}\n{hint}"
        ) from err
    found = _idx_files_in(cache)
    assert found is not None
    return found


# ------------------------------------------------------------------------ raw loaders


class _Raw(NamedTuple):
    """Unprocessed rows: 2-D features (uint8 or float64) and int64 class ids."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    pixel_max: float | None  # divide by this to get [0, 1]; None for non-image data


def _load_idx_set(name: str, path: str | os.PathLike[str] | None, download: bool) -> _Raw:
    files = _locate_idx(name, path, download)
    arrays = {key: read_idx(p) for key, p in files.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = f"{files[f'{split}_images'].parent}"
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise IDXFormatError(
                f"{where}: {split} images must be (n, rows, cols) and labels (n,), got "
                f"{images.shape} and {labels.shape}"
            )
        if images.dtype != np.uint8:
            raise IDXFormatError(f"{where}: {split} images must be uint8, got {images.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(_CLASS_IDS[name])):
            raise IDXFormatError(
                f"{where}: {split} labels must lie in 0..{len(_CLASS_IDS[name]) - 1}, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        out += [images.reshape(images.shape[0], -1), labels.astype(np.int64)]
    return _Raw(*out, pixel_max=255.0)


def _stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = round(test_fraction * idx.size)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _load_digits(rng: np.random.Generator) -> _Raw:
    from sklearn.datasets import load_digits  # deferred: importing sklearn is slow

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = _stratified_split(y, _DIGITS_TEST_FRACTION, rng)
    return _Raw(X[train], y[train], X[test], y[test], pixel_max=16.0)


def _make_synthetic(
    seeds: Sequence[np.random.SeedSequence],
    *,
    n_train: int,
    n_test: int,
    n_features: int,
    num_classes: int,
    class_ids: Sequence[int],
) -> _Raw:
    means_rng = np.random.default_rng(seeds[0])
    gaussian = means_rng.standard_normal((n_features, num_classes))
    if num_classes <= n_features:
        directions, _ = np.linalg.qr(gaussian)  # orthonormal class directions
    else:
        directions = gaussian / np.linalg.norm(gaussian, axis=0, keepdims=True)
    means = _SYNTHETIC_SEPARATION * directions.T  # (num_classes, n_features)

    def sample(seed: np.random.SeedSequence, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        y = rng.choice(np.asarray(class_ids, dtype=np.int64), size=n)
        return means[y] + rng.standard_normal((n, n_features)), y

    X_train, y_train = sample(seeds[1], n_train)
    X_test, y_test = sample(seeds[2], n_test)
    return _Raw(X_train, y_train, X_test, y_test, pixel_max=None)


_CLASS_IDS: Final[dict[str, tuple[int, ...]]] = {
    "digits": tuple(range(10)),
    "fashion-mnist": tuple(range(10)),
    "mnist": tuple(range(10)),
}

_NAMES: Final = ("digits", "fashion-mnist", "mnist", "synthetic")


def available() -> list[str]:
    """Names that :func:`load` accepts.

    Fashion-MNIST and MNIST may still need their files (see the module docstring).

    Example:
        >>> available()
        ['digits', 'fashion-mnist', 'mnist', 'synthetic']
    """
    return list(_NAMES)


# ------------------------------------------------------------------------- load()


def _check_positive_int(argument: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)


def _check_classes(classes: object, valid: Sequence[int]) -> tuple[int, ...] | None:
    if classes is None:
        return None
    valid_text = f"valid class ids are {list(valid)}"
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, np.ndarray)):
        raise ValueError(
            f"classes must be None or a sequence of class ids ({valid_text}), got {classes!r}"
        )
    ids: list[int] = []
    for c in classes:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise ValueError(
                f"classes must contain integer class ids ({valid_text}), got {classes!r}"
            )
        ids.append(int(c))
    if len(ids) < 2:
        raise ValueError(f"classes must list at least 2 class ids ({valid_text}), got {classes!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes must not repeat a class id ({valid_text}), got {classes!r}")
    unknown = [c for c in ids if c not in valid]
    if unknown:
        raise ValueError(f"classes contains unknown class ids {unknown}; {valid_text}")
    return tuple(ids)


def _subsample(
    argument: str, n: int | None, available_rows: int, seed: np.random.SeedSequence, what: str
) -> np.ndarray | None:
    if n is None:
        return None
    if n > available_rows:
        raise ValueError(f"{argument}={n} exceeds the {available_rows} rows available ({what})")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(available_rows, size=n, replace=False))


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def load(
    name: str,
    *,
    classes: Sequence[int] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    dtype: str | np.dtype = "float64",
    normalize: bool = True,
    download: bool = True,
    n_features: int | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """Load a data set as a :class:`Dataset`, preprocessed for certified removal.

    Data sets (``name``):

    * ``"digits"``: scikit-learn's bundled 8x8 digits (1,797 x 64, 10 classes),
      split 80/20 stratified by class (per class, ``round(0.2 n_c)`` test rows),
      deterministic for a ``seed``. Works offline.
    * ``"fashion-mnist"``, ``"mnist"``: the original IDX files (60,000 + 10,000 x 784,
      10 classes), found or downloaded as described in the module docstring.
    * ``"synthetic"``: a Gaussian mixture. Class ``k`` has mean ``3 q_k`` where the
      ``q_k`` are random orthonormal directions in R^d (random unit vectors when
      ``num_classes > n_features``); a row is ``x = 3 q_y + N(0, I_d)`` with ``y``
      uniform over the selected classes. Any two classes are separated by
      ``3 sqrt(2)`` standard deviations along the line joining their means, so they
      are linearly separable up to about 2% overlap. Sizes default to
      ``n_train=1000``, ``n_test=500``; ``n_train``/``n_test`` set how many rows are
      generated, and the training rows do not depend on ``n_test``.

    Processing order: the train/test split, the ``classes`` selection, the
    ``n_train``/``n_test`` subsamples, then (``normalize=True``) pixel scaling to
    [0, 1], centring with the mean of the *final* training rows, and row scaling to
    norm <= 1 (see the module docstring for the exact guarantee).

    Args:
        name: one of :func:`available`.
        classes: ``None`` for all classes (multiclass, ``int32`` labels 0..K-1);
            ``(a, b)`` for a binary task with class ``a`` -> ``+1`` and ``b`` -> ``-1``
            (labels in ``dtype``); three or more ids for a multiclass task on those
            classes, relabelled ``0..len(classes)-1`` in the given order.
        n_train: keep this many training rows, sampled without replacement
            (``None``: all); for ``"synthetic"``, the number generated.
        n_test: the same for the test rows.
        seed: non-negative integer seeding every random choice.
        path: a directory holding the IDX files (``fashion-mnist``/``mnist`` only).
        dtype: ``"float32"`` or ``"float64"`` for features and binary labels.
        normalize: scale, centre and row-normalise (``False``: raw values).
        download: fetch missing IDX files into the user cache.
        n_features: ``"synthetic"`` only: dimension d (default 20).
        num_classes: ``"synthetic"`` only: number of mixture components (default 2).

    Returns:
        The :class:`Dataset`, with read-only arrays.

    Raises:
        ValueError: on an unknown ``name``, invalid ``classes``, sizes that are not
            positive or exceed the rows available, a bad ``seed``/``dtype``, or
            synthetic-only arguments given for another data set.
        DataNotFoundError: (a ``FileNotFoundError``) if IDX files are missing and
            could not be downloaded; the message says where they were looked for
            and how to get them.
        ChecksumError: (a ``RuntimeError``) if a download did not match its checksum.
        IDXFormatError: (a ``ValueError``) if a data file is corrupt.

    Example:
        >>> ds = load("digits", classes=(3, 8), seed=0)
        >>> ds.task, ds.classes, ds.X_train.shape, ds.X_test.shape
        ('binary', (3, 8), (285, 64), (72, 64))
        >>> sorted(set(ds.y_train.tolist()))
        [-1.0, 1.0]
        >>> row_norm_violations(ds.X_train).size, row_norm_violations(ds.X_test).size
        (0, 0)
        >>> load("digits", dtype="float32").y_train.dtype.name
        'int32'
    """
    if not isinstance(name, str) or name not in _NAMES:
        raise ValueError(f"name must be one of {list(_NAMES)}, got {name!r}")
    out_dtype = _check_dtype(dtype)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n_train is not None:
        n_train = _check_positive_int("n_train", n_train)
    if n_test is not None:
        n_test = _check_positive_int("n_test", n_test)
    if name != "synthetic":
        for argument, value in (("n_features", n_features), ("num_classes", num_classes)):
            if value is not None:
                raise ValueError(
                    f"{argument} applies only to name='synthetic', "
                    f"got {argument}={value!r} for {name!r}"
                )
    if path is not None and name not in _MIRRORS:
        raise ValueError(f"path applies only to {sorted(_MIRRORS)}, got path={path!r} for {name!r}")

    seeds = np.random.SeedSequence(int(seed)).spawn(3)
    if name == "synthetic":
        n_features = _check_positive_int(
            "n_features", _SYNTHETIC_N_FEATURES if n_features is None else n_features
        )
        num_classes = _check_positive_int(
            "num_classes", _SYNTHETIC_NUM_CLASSES if num_classes is None else num_classes
        )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        all_ids: tuple[int, ...] = tuple(range(num_classes))
        selected = _check_classes(classes, all_ids)
        raw = _make_synthetic(
            seeds,
            n_train=_SYNTHETIC_N_TRAIN if n_train is None else n_train,
            n_test=_SYNTHETIC_N_TEST if n_test is None else n_test,
            n_features=n_features,
            num_classes=num_classes,
            class_ids=all_ids if selected is None else selected,
        )
        n_train = n_test = None  # already the generated sizes
    else:
        all_ids = _CLASS_IDS[name]
        selected = _check_classes(classes, all_ids)
        if name == "digits":
            raw = _load_digits(np.random.default_rng(seeds[0]))
        else:
            raw = _load_idx_set(name, path, download)

    order = all_ids if selected is None else selected
    rows = []
    for split, n, seed_seq in (("train", n_train, seeds[1]), ("test", n_test, seeds[2])):
        X, y = getattr(raw, f"X_{split}"), getattr(raw, f"y_{split}")
        if selected is not None:
            keep = np.isin(y, selected)
            X, y = X[keep], y[keep]
        pick = _subsample(
            f"n_{split}",
            n,
            y.shape[0],
            seed_seq,
            f"{split} rows of {name!r} with classes={selected}",
        )
        if pick is not None:
            X, y = X[pick], y[pick]
        rows.append((X, y))
    (X_train, y_train), (X_test, y_test) = rows

    if normalize:
        X_train = np.array(X_train, dtype=np.float64)
        X_test = np.array(X_test, dtype=np.float64)
        if raw.pixel_max is not None:
            X_train /= raw.pixel_max
            X_test /= raw.pixel_max
        mean = X_train.mean(axis=0) if X_train.shape[0] else np.zeros(X_train.shape[1])
        X_train -= mean
        X_test -= mean
        _unit_rows_inplace(X_train, _row_target(out_dtype))
        _unit_rows_inplace(X_test, _row_target(out_dtype))
        X_train = _cast_unit_rows(X_train, out_dtype)
        X_test = _cast_unit_rows(X_test, out_dtype)
    else:
        X_train = np.array(X_train, dtype=out_dtype)
        X_test = np.array(X_test, dtype=out_dtype)

    lookup = np.full(max(all_ids) + 1, -1, dtype=np.int64)
    lookup[list(order)] = np.arange(len(order))
    if selected is not None and len(selected) == 2:
        task, k = "binary", 2
        y_train = np.where(lookup[y_train] == 0, 1.0, -1.0).astype(out_dtype)
        y_test = np.where(lookup[y_test] == 0, 1.0, -1.0).astype(out_dtype)
    else:
        task, k = "multiclass", len(order)
        y_train = lookup[y_train].astype(np.int32)
        y_test = lookup[y_test].astype(np.int32)

    return Dataset(
        X_train=_read_only(X_train),
        y_train=_read_only(y_train),
        X_test=_read_only(X_test),
        y_test=_read_only(y_test),
        name=name,
        classes=selected,
        num_classes=k,
        task=task,
    )
