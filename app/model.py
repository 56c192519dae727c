"""Exported PHPQ models at run time: ONNX Runtime session, execution provider, metadata and codebooks."""

from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.imaging import load_and_preprocess
from app.locations import default_cache_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("subvectors", "codes")
CODEBOOKS_NAME = "phpq_codebooks"
METADATA_PREFIX = "phpq."
REQUIRED_METADATA = (
    "format_version",
    "model_id",
    "backbone",
    "input_size",
    "pixel_offset",
    "pixel_scale",
    "n_subspaces",
    "n_codewords",
    "bits",
    "dim",
)


class ModelError(Exception):
    """A file that is not a usable PHPQ model; the message says why in words a user understands."""


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata of an exported PHPQ model says."""

    model_id: str
    backbone: str
    input_size: int
    n_subspaces: int
    n_codewords: int
    bits: int
    dim: int
    metadata: dict[str, str]

    @property
    def class_names(self) -> list[str]:
        return json.loads(self.metadata.get("class_names", "[]"))

    @property
    def validation(self) -> dict[str, Any]:
        return json.loads(self.metadata.get("validation", "{}"))


def parse_metadata(metadata: dict[str, str], source: str) -> ModelInfo:
    """Validate ``phpq.*`` metadata props and turn them into a ModelInfo."""
    props = {k[len(METADATA_PREFIX) :]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
    missing = [key for key in REQUIRED_METADATA if key not in props]
    if missing:
        raise ModelError(
            f"{source} is not a PHPQ model exported by phpq-export (missing metadata: {', '.join(missing)})"
        )
    if props["format_version"] != FORMAT_VERSION:
        raise ModelError(f"{source} has model format {props['format_version']}, this version reads {FORMAT_VERSION}")
    try:
        return ModelInfo(
            props["model_id"],
            props["backbone"],
            int(props["input_size"]),
            int(props["n_subspaces"]),
            int(props["n_codewords"]),
            int(props["bits"]),
            int(props["dim"]),
            props,
        )
    except ValueError as error:
        raise ModelError(f"{source} has malformed metadata: {error}") from error


def import_onnxruntime(cache_dir: Path | None = None) -> Any:
    """Import ONNX Runtime so that the device-id file it writes on first import (under
    ``$XDG_CACHE_HOME/Microsoft/DeveloperTools`` on Linux) lands in our data directory, not in the
    user's home; its telemetry events are switched off."""
    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"]
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache_dir or default_cache_dir())
    try:
        import onnxruntime
    finally:
        if previous is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = previous
    onnxruntime.disable_telemetry_events()
    return onnxruntime


def execution_providers(prefer_cuda: bool = True) -> list[str]:
    """Providers to ask for, CUDA first when this ONNX Runtime build has it, CPU always last."""
    onnxruntime = import_onnxruntime()
    available = onnxruntime.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_cuda and "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


class PHPQModel:
    """An exported PHPQ model: encode preprocessed images, read codebooks and metadata.

    CUDA is tried first; when its libraries cannot load, ONNX Runtime falls back to CPU. The probe runs
    with ONNX Runtime's logging at FATAL only, so no CUDA load errors reach the terminal; ``provider``
    says which one is active.
    """

    def __init__(self, path: Path, prefer_cuda: bool = True, threads: int | None = None, cache_dir: Path | None = None):
        onnxruntime = import_onnxruntime(cache_dir)
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise ModelError(f"cannot read model file {self.path}: {error.strerror or error}") from error
        # Parsing the codebooks out of the file overlaps with ONNX Runtime building its session.
        # A file that is not a PHPQ model gets the codebook reader's message, the more specific one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            codebooks = pool.submit(read_codebooks, data, str(self.path))
            try:
                self.session = self._create_session(onnxruntime, data, prefer_cuda, threads)
            except ModelError:
                codebooks.result()
                raise
            self.codebooks = codebooks.result()
        self.info = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self._check_signature()
        self.provider = self.session.get_providers()[0]
        log.info("model %s on %s", self.info.model_id[:12], self.provider)

    def _create_session(self, onnxruntime: Any, data: bytes, prefer_cuda: bool, threads: int | None) -> Any:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4
        if threads:
            options.intra_op_num_threads = threads
        onnxruntime.set_default_logger_severity(4)
        try:
            return onnxruntime.InferenceSession(data, options, providers=execution_providers(prefer_cuda))
        except Exception as error:  # ONNX Runtime raises several unrelated types for bad files
            raise ModelError(f"{self.path} cannot be loaded by ONNX Runtime: {str(error).splitlines()[0]}") from error
        finally:
            onnxruntime.set_default_logger_severity(2)

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or tuple(outputs) != OUTPUT_NAMES:
            raise ModelError(f"{self.path} does not have the PHPQ inputs/outputs ({INPUT_NAME} -> {OUTPUT_NAMES})")
        shape = inputs[0].shape
        size = self.info.input_size
        if len(shape) != 4 or shape[1:] != [3, size, size]:
            raise ModelError(f"{self.path} expects input {shape}, but its metadata says [batch, 3, {size}, {size}]")
        expected = (self.info.n_subspaces, self.info.n_codewords, self.info.dim // self.info.n_subspaces)
        if self.codebooks.shape != expected:
            raise ModelError(f"{self.path} codebooks have shape {self.codebooks.shape}, metadata says {expected}")

    def encode_paths(self, paths: list[Path], batch_size: int = 32, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Decode and preprocess photos in a thread pool, encode them in batches (test-time geometry)."""
        size = self.info.input_size
        subvectors, codes = [], []
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(0, len(paths), batch_size):
                batch = list(pool.map(lambda path: load_and_preprocess(path, size), paths[start : start + batch_size]))
                batch_sub, batch_codes = self.encode(np.stack(batch))
                subvectors.append(batch_sub)
                codes.append(batch_codes)
        if not subvectors:
            return np.zeros((0, self.info.n_subspaces, self.info.dim // self.info.n_subspaces), np.float32), np.zeros(
                (0, self.info.n_subspaces), np.uint8
            )
        return np.concatenate(subvectors), np.concatenate(codes)

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed images [B, 3, S, S] -> (sub-vectors [B, M, d] float32, codes [B, M] uint8)."""
        subvectors, codes = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, np.float32)})
        return subvectors, codes.astype(np.uint8 if self.info.n_codewords <= 256 else np.int32)


def read_codebooks(data: bytes, source: str) -> np.ndarray:
    """The normalised codebooks [M, K, d] stored as the ``phpq_codebooks`` initializer."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf raises DecodeError and others for damaged files
        raise ModelError(f"{source} is not a readable ONNX file ({type(error).__name__})") from error
    for initializer in model.graph.initializer:
        if initializer.name == CODEBOOKS_NAME:
            return numpy_helper.to_array(initializer).astype(np.float32)
    raise ModelError(f"{source} is not a PHPQ model exported by phpq-export (no {CODEBOOKS_NAME} initializer)")
