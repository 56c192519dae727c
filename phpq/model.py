"""Exported PHPQ models at run time: ONNX Runtime session, execution provider, metadata and codebooks."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from phpq.fusion import SearchSettings
from phpq.imaging import RESIZE_RATIO, DecodedPhoto, Preprocessing, decode_for_network, load_image
from phpq.locations import default_cache_dir
from phpq.zoom import PhotoSource, Zoom, zoom_regions, zoomed_inputs

log = logging.getLogger(__name__)

# 3: a fourth output, the attention map that finds a small bird (phpq.zoom); 2: a third, the general-purpose
# descriptor; 1: codes only. All are still read.
FORMAT_VERSION = "3"
READABLE_FORMAT_VERSIONS = ("1", "2", "3")
INPUT_NAME = "images"
OUTPUT_NAMES = ("subvectors", "codes", "descriptor", "attention")  # format 3
OUTPUTS_OF_FORMAT = {"1": OUTPUT_NAMES[:2], "2": OUTPUT_NAMES[:3], "3": OUTPUT_NAMES}
# Format 2 metadata: the descriptor's length and the weight w of the code similarity in the fused ranking
# (similarity = w * ADC / M + (1 - w) * descriptor similarity), chosen on the dev protocols. Optional:
# "adaptive_weight", the per-query weight (phpq.fusion.AdaptiveWeight as JSON), "fusion_weight" then
# being the weight of the first scan only; "neighbour_rerank" (phpq.fusion.NeighbourRerank as JSON);
# "collection_centring" (phpq.fusion.CollectionCentring as JSON); see phpq.fusion.SearchSettings. Format 3:
# "zoom" (phpq.zoom.Zoom as JSON, {} for none).
DESCRIPTOR_METADATA = ("descriptor_dim", "fusion_weight")
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
    preprocessing: Preprocessing  # the pixels this model was trained on (from its metadata)
    search: SearchSettings  # how its photos are ranked (from its metadata)
    zoom: Zoom | None  # when a photo is encoded again around a small bird (format 3; None: never)

    @property
    def has_descriptor(self) -> bool:
        """Format 2: the model also gives a general-purpose descriptor; format 1 gives codes only."""
        return self.metadata["format_version"] != "1"

    @property
    def descriptor_dim(self) -> int:
        return self.search.descriptor_dim

    @property
    def descriptor_parts(self) -> list[tuple[slice, float]]:
        """The descriptor's parts and their weights in its cosine (each part has length sqrt(weight)): the
        trained descriptor alone, or it and the untrained network's view (``general_descriptor``)."""
        general = json.loads(self.metadata.get("general_descriptor") or "{}")
        if not general:
            return [(slice(0, self.descriptor_dim), 1.0)]
        cut = self.descriptor_dim - int(general["dim"])
        weight = float(general["weight"])
        return [(slice(0, cut), 1.0 - weight), (slice(cut, self.descriptor_dim), weight)]

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS_OF_FORMAT[self.metadata["format_version"]]

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
    if props["format_version"] not in READABLE_FORMAT_VERSIONS:
        raise ModelError(
            f"{source} has model format {props['format_version']}, this version reads"
            f" {', '.join(READABLE_FORMAT_VERSIONS)}; update PHPQ Search"
        )
    missing = [key for key in DESCRIPTOR_METADATA if props["format_version"] != "1" and key not in props]
    if missing:
        raise ModelError(f"{source} is a format-2 model without {', '.join(missing)} in its metadata")
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
            Preprocessing(  # validated here, not at the first photo; resize ratio 256/224 when absent
                int(props["input_size"]),
                float(props.get("resize_ratio", RESIZE_RATIO)),
                float(props["pixel_offset"]),
                float(props["pixel_scale"]),
            ),
            SearchSettings.from_metadata(props),
            Zoom.from_json(props.get("zoom", "{}")) if props["format_version"] == "3" else None,
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
        # ONNX Runtime's threads otherwise spin for a while after each run, holding the cores that the
        # scan right after the encoding needs (measured: the 10^6-photo search scan took 2x longer).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
        expected_outputs = self.info.output_names
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or tuple(outputs) != expected_outputs:
            raise ModelError(
                f"{self.path} does not have the inputs/outputs of a format-{self.info.metadata['format_version']}"
                f" PHPQ model ({INPUT_NAME} -> {', '.join(expected_outputs)})"
            )
        shape = inputs[0].shape
        size = self.info.input_size
        if len(shape) != 4 or shape[1:] != [3, size, size]:
            raise ModelError(f"{self.path} expects input {shape}, but its metadata says [batch, 3, {size}, {size}]")
        if self.info.has_descriptor:
            descriptor_shape = self.session.get_outputs()[2].shape
            if len(descriptor_shape) != 2 or descriptor_shape[1] != self.info.descriptor_dim:
                raise ModelError(
                    f"{self.path} gives descriptors of shape {descriptor_shape}, but its metadata says"
                    f" [batch, {self.info.descriptor_dim}]"
                )
        expected = (self.info.n_subspaces, self.info.n_codewords, self.info.dim // self.info.n_subspaces)
        if self.codebooks.shape != expected:
            raise ModelError(f"{self.path} codebooks have shape {self.codebooks.shape}, metadata says {expected}")

    def encode_paths(self, paths: list[Path], batch_size: int = 32, threads: int = 2) -> Encoding:
        """Decode and preprocess photos in a thread pool, encode them in batches (test-time geometry,
        zooming in on small birds as ``encode_photos`` does)."""
        spec, size = self.info.preprocessing, self.info.input_size
        batches = []
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(0, len(paths), batch_size):
                chunk = paths[start : start + batch_size]
                decoded = list(pool.map(lambda path: decode_for_network(path, spec), chunk))
                sources = [photo_source(path, photo) for path, photo in zip(chunk, decoded, strict=True)]
                arrays, full_sizes = np.stack([d.array for d in decoded]), [d.full_size for d in decoded]
                batches.append(self.encode_photos(arrays, sources, full_sizes))
        if not batches:
            return self.encode(np.zeros((0, 3, size, size), np.float32))
        descriptors = None if batches[0].descriptors is None else np.concatenate([b.descriptors for b in batches])
        return Encoding(
            np.concatenate([b.subvectors for b in batches]), np.concatenate([b.codes for b in batches]), descriptors
        )

    def encode(self, images: np.ndarray) -> Encoding:
        """Preprocessed images [B, 3, S, S] -> sub-vectors [B, M, d] float32, codes [B, M] uint8, for
        format-2 and later models descriptors [B, E] float32 (L2-normalised), for format 3 attention maps."""
        outputs = self.session.run(list(self.info.output_names), {INPUT_NAME: np.ascontiguousarray(images, np.float32)})
        codes = outputs[1].astype(np.uint8 if self.info.n_codewords <= 256 else np.int32)
        return Encoding(
            outputs[0],
            codes,
            outputs[2] if self.info.has_descriptor else None,
            outputs[3] if len(outputs) > 3 else None,
        )

    def encode_photos(
        self, images: np.ndarray, sources: Sequence[PhotoSource], full_sizes: Sequence[tuple[int, int]]
    ) -> Encoding:
        """``encode`` the preprocessed photos, then encode again, from a crop around the bird, each photo
        whose bird the model's ``zoom`` finds small (``sources`` decode the photos again for the crop;
        ``full_sizes`` are their (width, height) as shown)."""
        encoding = self.encode(images)
        regions = zoom_regions(self.info.zoom, encoding.attention)
        crops = zoomed_inputs(regions, sources, full_sizes, self.info.preprocessing)
        if not crops:
            return encoding
        zoomed = self.encode(np.stack(list(crops.values())))
        rows = list(crops)
        if self.info.zoom.combine == "average":
            zoomed = encoding.rows(rows).averaged(zoomed, self.codebooks, self.info.descriptor_parts)
        return encoding.replaced(rows, zoomed)


def photo_source(path: Path, decoded: DecodedPhoto) -> PhotoSource:
    """The photo at ``path`` with at least the short side asked for: ``decoded``'s image when it is at full
    size or large enough (most photos: decoding again would repeat the same work), else decoded again."""

    def source(min_side: int) -> Image.Image:
        image = decoded.image
        if image.size == decoded.full_size or min(image.size) >= min_side:
            return image
        return load_image(path, min_side=min_side)

    return source


@dataclass(frozen=True)
class Encoding:
    """What a model gives for a batch of photos."""

    subvectors: np.ndarray  # [B, M, d] float32, L2-normalised per sub-space
    codes: np.ndarray  # [B, M] uint8 (int32 when K > 256)
    descriptors: np.ndarray | None  # [B, E] float32, L2-normalised; None for format-1 models
    attention: np.ndarray | None = None  # [B, g, g] float32, the bird's whereabouts (phpq.zoom); format 3

    def rows(self, rows: list[int]) -> Encoding:
        """These photos of the batch only."""
        return Encoding(
            self.subvectors[rows],
            self.codes[rows],
            None if self.descriptors is None else self.descriptors[rows],
            None if self.attention is None else self.attention[rows],
        )

    def averaged(self, other: Encoding, codebooks: np.ndarray, descriptor_parts: list[tuple[slice, float]]) -> Encoding:
        """The mean of two encodings of the same photos: sub-vectors (per sub-space) summed and L2-normalised,
        codes assigned again as the graph does (the codeword of highest inner product), and each part of the
        descriptors summed and scaled back to length sqrt(its weight) (``ModelInfo.descriptor_parts``)."""
        subvectors = unit_rows(self.subvectors + other.subvectors)
        codes = np.einsum("bmd,mkd->bmk", subvectors, codebooks).argmax(axis=-1).astype(self.codes.dtype)
        descriptors = None
        if self.descriptors is not None and other.descriptors is not None:
            summed = self.descriptors + other.descriptors
            descriptors = np.concatenate(
                [unit_rows(summed[:, part]) * np.float32(np.sqrt(weight)) for part, weight in descriptor_parts], axis=1
            )
        return Encoding(subvectors, codes, descriptors, self.attention)

    def replaced(self, rows: list[int], other: Encoding) -> Encoding:
        """This encoding with ``rows`` taken from ``other`` (one row of it per entry of ``rows``, in order);
        the attention maps stay this encoding's."""

        def merged(mine: np.ndarray | None, theirs: np.ndarray | None) -> np.ndarray | None:
            if mine is None or theirs is None:
                return mine
            result = mine.copy()
            result[rows] = theirs
            return result

        return Encoding(
            merged(self.subvectors, other.subvectors),
            merged(self.codes, other.codes),
            merged(self.descriptors, other.descriptors),
            self.attention,
        )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each vector along the last axis scaled to length 1 (zero vectors stay zero)."""
    vectors = vectors.astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


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
