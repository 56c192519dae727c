"""``python -m phpq_train.export.prototypes MODEL.onnx --photos DIR -o OUT.onnx``: write class prototypes
into an exported model's metadata, so the app can name a photo's species (``phpq.species``).

A prototype is the mean unit embedding of a class's photos, encoded by the ONNX model itself; the
softmax over the cosines runs at the temperature the model's cosine classifier trained with (the
recipe's ``classifier_scale``), and ``--threshold`` (chosen by ``python -m bench.species``) is the
probability from which the model names a species. Only metadata changes: the graph, and so the model
id (the SHA-256 of the graph), stay the same, and an index keeps its codes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phpq.eval.datasets import EXTRA_SPECIES, PROTOCOLS, load_photo_set, split_protocol, with_extra_species
from phpq.model import PHPQModel
from phpq.prototypes import EMBEDDINGS, PROTOTYPES_KEY, ClassPrototypes, model_embeddings
from phpq_train.config import recipe_values
from phpq_train.export.onnx_export import write_metadata

PROTOTYPE_TEMPERATURE = 1 / recipe_values()["loss"]["classifier_scale"]


@dataclass(frozen=True)
class ExtraSpecies:
    """Another photo set whose species the model trained on too (the training config's ``extra_data``)."""

    photos: Path
    species: str  # even | all, as extra_species


def class_prototypes(
    model: PHPQModel,
    photos: Path,
    protocol: str | None,
    embedding: str,
    threshold: float,
    extra: ExtraSpecies | None = None,
) -> ClassPrototypes:
    """Prototypes of the photos a model trained on: a labelled photo folder (only a protocol's training
    photos, when given), and the species of ``extra`` it trained on too; the classes must be the model's."""
    photo_set = load_photo_set(photos)
    split, names = split_protocol(photo_set, protocol or "all"), photo_set.class_names
    if extra is not None:
        split, names, _ = with_extra_species(split, names, load_photo_set(extra.photos), extra.species)
    chosen = split.train
    if names != model.info.class_names:
        raise ValueError(f"the classes of these photos are not the model's {len(model.info.class_names)} classes")
    embeddings = model_embeddings(model.encode_paths([photo.path for photo in chosen]), embedding)
    labels = np.array([photo.label for photo in chosen])
    return ClassPrototypes.from_embeddings(embeddings, labels, names, embedding, PROTOTYPE_TEMPERATURE, threshold)


def write_prototypes(source: Path, output: Path, prototypes: ClassPrototypes, class_count: int) -> str:
    """Copy ``source`` to ``output`` with the prototypes in its metadata; returns the (unchanged) model id."""
    return write_metadata(source, output, {PROTOTYPES_KEY: prototypes.to_metadata(class_count)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--photos", type=Path, required=True, help="one folder per class, the model's classes")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="only this protocol's training photos (default: all)")
    parser.add_argument("--extra-photos", type=Path, help="the photo set whose species the model trained on too")
    parser.add_argument("--extra-species", choices=EXTRA_SPECIES, default="even", help="which of them it trained on")
    parser.add_argument("--embedding", choices=EMBEDDINGS, default="subvectors")
    parser.add_argument("--threshold", type=float, required=True, help="the probability from which it names")
    parser.add_argument("-o", "--output", type=Path, required=True, help="may be the model itself")
    args = parser.parse_args(argv)
    model = PHPQModel(args.model, prefer_cuda=False)
    try:
        extra = ExtraSpecies(args.extra_photos, args.extra_species) if args.extra_photos else None
        prototypes = class_prototypes(model, args.photos, args.protocol, args.embedding, args.threshold, extra)
        model_id = write_prototypes(args.model, args.output, prototypes, len(model.info.class_names))
    except (ValueError, FileNotFoundError) as error:
        print(f"prototypes: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(prototypes.names)} prototypes of {args.embedding}, model id {model_id[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
