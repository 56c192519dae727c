"""Class prototypes: the mean embedding of each species the model trained on, stored in its metadata
(``phpq.class_prototypes``, written by ``python -m phpq_train.export.prototypes``). A softmax over the
cosines of a photo's embedding to them, at the temperature the model was trained with, says how probable
each of its species is, and ``phpq.species`` names a photo's species with it."""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
from dataclasses import dataclass

import numpy as np

from phpq.model import Encoding, ModelInfo, unit_rows

log = logging.getLogger(__name__)

PROTOTYPES_KEY = "class_prototypes"  # the metadata entry (after the ``phpq.`` prefix)
EMBEDDINGS = ("subvectors", "descriptor")  # what prototypes can be means of


@dataclass(frozen=True)
class ClassPrototypes:
    """A model's class prototypes: the mean unit embedding of each class's photos (unit length again)."""

    names: list[str]  # display names
    vectors: np.ndarray  # [C, D] float32, unit rows
    embedding: str  # "subvectors" (the code's continuous form) or "descriptor"
    temperature: float  # softmax over cosine / temperature
    threshold: float  # confident from this probability

    @classmethod
    def from_model(cls, info: ModelInfo) -> ClassPrototypes | None:
        """The prototypes in a model's metadata, or None when it has none or they cannot be read (logged:
        the model then makes no suggestion, and everything else works). Read once per model (about 2 ms
        for 200 species), not at every search that names a species."""
        text = info.metadata.get(PROTOTYPES_KEY)
        return _read_prototypes(text, tuple(info.class_names)) if text else None

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray,
        labels: np.ndarray,
        names: list[str],
        embedding: str,
        temperature: float,
        threshold: float = 1.0,
    ) -> ClassPrototypes:
        """Prototypes of unit embeddings [N, D] with class labels [N] (every class needs a photo)."""
        vectors = np.stack([embeddings[labels == label].mean(axis=0) for label in range(len(names))])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        names = [display_name(name) for name in names]
        return cls(names, vectors.astype(np.float32), embedding, temperature, threshold)

    def to_metadata(self, class_count: int) -> str:
        """The metadata form (``phpq.class_prototypes``) for a model with ``class_count`` class names."""
        if len(self.vectors) != class_count:
            raise ValueError(f"{len(self.vectors)} prototypes for {class_count} class names")
        data = base64.b64encode(self.vectors.astype(np.float16).tobytes()).decode("ascii")
        fields = {"embedding": self.embedding, "temperature": self.temperature, "threshold": self.threshold}
        return json.dumps({**fields, "float16": data})

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Softmax [N, C] of unit embeddings [N, D] over the classes."""
        logits = embeddings @ self.vectors.T / self.temperature
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return weights / weights.sum(axis=1, keepdims=True)


def model_embeddings(encoding: Encoding, embedding: str) -> np.ndarray:
    """The unit embeddings [N, D] prototypes compare: the sub-vectors joined, or the descriptor."""
    if embedding == "descriptor":
        if encoding.descriptors is None:
            raise ValueError("prototypes of descriptors need a format-2 model")
        vectors = encoding.descriptors
    elif embedding == "subvectors":
        vectors = encoding.subvectors.reshape(len(encoding.subvectors), -1)
    else:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    return unit_rows(vectors)


def display_name(class_name: str) -> str:
    """A class folder's name as a species name: "015.Lazuli_Bunting" -> "Lazuli Bunting", "ABBOTTS BABBLER"
    -> "Abbotts Babbler"."""
    name = re.sub(r"^\d+\.", "", class_name).replace("_", " ").strip()
    return name.title() if name.isupper() else name


@functools.lru_cache(maxsize=4)
def _read_prototypes(text: str, class_names: tuple[str, ...]) -> ClassPrototypes | None:
    """``ClassPrototypes.from_model`` of a model's ``class_prototypes`` metadata and class names."""
    try:
        data = json.loads(text)
        vectors = np.frombuffer(base64.b64decode(data["float16"]), np.float16).astype(np.float32)
        names = [display_name(name) for name in class_names]
        shaped = vectors.reshape(len(names), -1)
        if data["embedding"] not in EMBEDDINGS or not names:
            raise ValueError(f"embedding {data['embedding']!r} for {len(names)} class names")
        shaped.setflags(write=False)  # shared by every search of the model
        return ClassPrototypes(names, shaped, data["embedding"], float(data["temperature"]), float(data["threshold"]))
    except (ValueError, KeyError, TypeError) as error:
        log.warning("the model's class prototypes cannot be read (%s); it makes no species suggestion", error)
        return None
