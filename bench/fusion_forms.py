"""Other ways to combine the code and descriptor similarities than the app's ``w * ADC / M + (1 - w) *
cosine``, measured on the checkpoints of one recipe trained on the val, fresh and unseen protocols
(encoded from the feature cache, centre-crop view, float descriptors; a checkpoint whose backbone
trained, partial or finetune mode, is encoded from the photos instead, at its model's encode size):

- ``linear``: the app's form, for reference;
- ``z``: each query's code and descriptor scores standardised over the database before mixing;
- ``gated``: the code term counts only where the descriptor agrees, ``w * code * sigmoid((cos - t) / 0.05)``;
- ``expanded``: query expansion, the query's fused scores plus those of its top k results.

The form, weight w and expansion depth of the app are chosen here, by a rule fixed before the numbers
were seen: among the rows whose val mAP@all is at least ``--val-floor`` (0.75; the hashing papers'
protocol must stay strong), the one with the highest mean of fresh mAP@all and unseen P@4 (the two
protocols that look like a user's collection). Each row prints [P@4, mAP@all] per protocol.

``--flip all``: every photo (query and database) is encoded from its centre crop and the crop's
mirror image, their pooled backbone features averaged (what a model exported with ``mirror_average``
stores; two backbone passes per photo). ``--flip queries``: only the queries are (the index keeps one
pass per photo; the query costs two).

``--centring PRIOR [--whitening S]``: descriptors compared as the app's collection centring compares
them (the query's less each database's mean, made a unit vector, against each stored one less that
mean; the mean shrunk as if the database held PRIOR more photos at zero; whitened by the database's
covariance with shrinkage S, ``phpq.fusion.CollectionCentring``). The benches that read these scores
(``bench.query_adaptive``, ``bench.neighbour_rerank``) take them too.

Usage: python bench/fusion_forms.py --runs runs/r256 [--input-size 256] [--flip all|queries] [--centring PRIOR
                                    [--whitening S]]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from phpq.eval.datasets import OTHER_PROTOCOLS, load_photo_set, split_protocol
from phpq.eval.metrics import retrieval_report
from phpq.fusion import CollectionCentring
from phpq.pq import adc_scores, decode, lookup_tables
from phpq_train.checkpoint import model_from_checkpoint
from phpq_train.export.from_onnx import payload_from_file
from phpq_train.features import build_or_load_cache, mirror_averaged
from phpq_train.general import attach_to_checkpoint_model
from phpq_train.train import encode_photos


def protocol_scores(
    run: Path,
    protocol: str,
    photo_set,
    cache,
    query_cache=None,
    checkpoint: Path | None = None,
    model_file: str = "last.pt",
    **config_changes,
) -> dict:
    """Code (ADC / M) and descriptor scores of one protocol's queries (encoded from ``query_cache``,
    default ``cache``) against its database, plus the database's scores against itself (what query
    expansion adds). The model is ``run/PROTOCOL/model_file`` or ``checkpoint`` (a checkpoint or an
    exported model). ``config_changes`` replace fields of the checkpoint's model config (``encode_size`` and
    ``encode_resize_ratio`` take effect where photos are encoded, not from the cache). With the model's
    ``general_dim``, the general descriptor (fitted on the model's training photos) is part of the
    descriptor, and ``with_general_weight`` mixes it again at another weight."""
    split = split_protocol(photo_set, protocol)
    payload = payload_from_file(checkpoint or run / protocol / model_file)
    model = model_from_checkpoint(payload)
    model.config = replace(model.config, **config_changes)
    if model.config.general_dim:
        attach_to_checkpoint_model(model, payload)
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    # The frozen backbone's cache holds neither a trained backbone's maps nor the general descriptor's.
    from_photos = payload["train_config"]["mode"] != "cached" or model.config.general_dim or cache is None
    if from_photos and (query_cache is not None or (cache is not None and cache.views == 1)):
        raise SystemExit(f"{run / protocol}: encoded from photos, so the frozen mirror-image cache does not apply")

    def encode(photos: list, source=cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if from_photos:
            encoding = encode_photos(model, photos, torch.device("cpu"))
            return encoding.subvectors, encoding.codes, encoding.descriptors
        rows = np.array([position[p.path] for p in photos])
        gather = cache.layout.gather_index(model.layout).numpy()
        with torch.no_grad():
            pooled = torch.from_numpy(np.asarray(source.features[0][rows][:, gather], dtype=np.float32))
            quantized = model.head.quantizer(model.head.fusion(pooled))
            return (
                quantized.subvectors.numpy(),
                quantized.codes.numpy().astype(np.uint8),
                model.head.descriptor(pooled).numpy(),
            )

    query = encode(split.query, query_cache or cache)
    database = encode(split.database) if query_cache or not split.leave_one_out else query
    codebooks = model.head.quantizer.normalized_codebooks().detach().numpy()
    n_subspaces = codebooks.shape[0]
    return {
        "code": adc_scores(lookup_tables(query[0], codebooks), database[1]) / n_subspaces,
        "descriptor": query[2] @ database[2].T,
        "database_code": adc_scores(lookup_tables(decode(database[1], codebooks), codebooks), database[1])
        / n_subspaces,
        "database_descriptor": database[2] @ database[2].T,
        "query_descriptors": query[2],
        "database_descriptors": database[2],
        "query_subvectors": query[0],
        "database_codes": database[1],
        "codebooks": codebooks,
        "prototypes": torch.nn.functional.normalize(model.head.classifier.prototypes.detach(), dim=1).numpy(),
        "query_labels": np.array([p.label for p in split.query]),
        "database_labels": np.array([p.label for p in split.database]),
        "leave_one_out": split.leave_one_out,
        "trained_dim": model.config.descriptor_dim,
        "general_weight": model.config.general_weight if model.config.general_dim else None,
    }


def with_general_weight(s: dict, weight: float) -> dict:
    """``protocol_scores`` with the general descriptor weighted ``weight`` in the descriptor (0: left out)."""
    if s["general_weight"] is None:
        raise ValueError("the model has no general descriptor")
    dim, before = s["trained_dim"], s["general_weight"]
    trained, general = np.sqrt((1 - weight) / (1 - before)), np.sqrt(weight / before)

    def mixed(descriptors: np.ndarray) -> np.ndarray:
        return np.concatenate([descriptors[:, :dim] * trained, descriptors[:, dim:] * general], axis=1)

    query, database = mixed(s["query_descriptors"]), mixed(s["database_descriptors"])
    changed = {"query_descriptors": query, "database_descriptors": database, "general_weight": weight}
    return {**s, **changed, "descriptor": query @ database.T, "database_descriptor": database @ database.T}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a bench that reads one recipe's val, fresh and unseen checkpoints."""
    parser.add_argument("--runs", type=Path, required=True, help="holds val/, fresh/ and unseen/ run directories")
    parser.add_argument(
        "--model-file",
        default="last.pt",
        help="the model in each run directory: its checkpoint, or an export of it (which carries the general"
        " descriptor's fit, so the benches need not fit it again)",
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="the cache's backbone")
    parser.add_argument(
        "--centring",
        type=int,
        metavar="PRIOR",
        help="descriptors centred on each database's mean, as the app's collection centring with this prior",
    )
    parser.add_argument("--whitening", type=float, default=0.0, help="with --centring: the whitening's shrinkage")
    parser.add_argument(
        "--other-model",
        type=Path,
        default=Path("assets/models/phpq-cub200-lite0-64bit.onnx"),
        help="the other protocol's model (a checkpoint or exported model trained on CUB, never on --other-data)",
    )
    parser.add_argument("--other-data", type=Path, default=Path("../shared/data/birds525-dev"))
    parser.add_argument(
        "--encode-size",
        type=int,
        help="encode the photos at this size (default: the model's encode_size; 256 reproduces the numbers"
        " measured before photos were encoded at 288)",
    )


def all_protocol_scores(
    args: argparse.Namespace,
    flip: str | None = None,
    protocols: tuple[str, ...] = ("val", "fresh", "unseen"),
    **config_changes,
) -> dict[str, dict]:
    """``protocol_scores`` of val, fresh and unseen (or ``protocols``), from the centre-crop view of the
    feature cache (``flip``: "all" or "queries" encode those from the crop and its mirror image, averaged;
    ``config_changes`` and ``--encode-size`` replace fields of the checkpoints' model configs). ``other``
    encodes ``--other-data`` with ``--other-model``."""
    changes = ({"encode_size": args.encode_size} if args.encode_size else {}) | config_changes
    scores = {}
    others = [p for p in protocols if p in OTHER_PROTOCOLS]
    if others:
        other = load_photo_set(args.other_data)
        scores |= {
            p: protocol_scores(args.runs, p, other, None, checkpoint=args.other_model, **changes) for p in others
        }
    cub = [p for p in protocols if p not in OTHER_PROTOCOLS]
    if cub:
        photo_set = load_photo_set(args.data)
        cache = build_or_load_cache(photo_set.photos, args.cache_dir, args.backbone, args.input_size, args.views)
        mirrored = flip and mirror_averaged(cache, photo_set.photos, args.cache_dir, args.backbone, args.input_size)
        if flip == "all":
            cache = mirrored
        query_cache = mirrored if flip == "queries" else None
        scores |= {
            p: protocol_scores(args.runs, p, photo_set, cache, query_cache, model_file=args.model_file, **changes)
            for p in cub
        }
    if args.centring is None:
        return scores
    centring = CollectionCentring(args.centring, args.whitening)
    return {p: collection_centred(s, centring) for p, s in scores.items()}


def collection_centred(s: dict, centring: CollectionCentring) -> dict:
    """``protocol_scores`` with the descriptor terms as the app's collection centring makes them: the
    query's descriptor less the database's mean (whitened, made a unit vector) against each stored one
    less the mean, and the stored ones against each other through the same whitening."""
    database = s["database_descriptors"]
    mean = centring.mean(database.sum(axis=0, dtype=np.float64), len(database))
    metric = centring.metric(database[centring.sample(len(database))], mean)
    query, database = centring.query(s["query_descriptors"], mean, metric), database - mean
    weighted = database if metric is None else database @ metric
    return {**s, "descriptor": query @ database.T, "database_descriptor": weighted @ database.T}


def protocol_report(s: dict, scores: np.ndarray) -> list[float]:
    """[P@4, mAP@all] of one protocol's ranking scores."""
    report = retrieval_report(scores, s["query_labels"], s["database_labels"], leave_one_out=s["leave_one_out"])
    return [round(report["P@4"], 4), round(report["mAP@all"], 4)]


def rule_objective(row: dict) -> float:
    """The rule's objective of one setting's [P@4, mAP@all] per protocol: the mean of fresh mAP@all,
    unseen P@4 and other (or other-held) P@4 over those measured (the protocols that look like a user's
    collection)."""
    parts = [row["fresh"][1]] if "fresh" in row else []
    parts += [row[p][0] for p in ("unseen", *OTHER_PROTOCOLS) if p in row]
    return round(sum(parts) / len(parts), 4)


def printed_choice(fields: dict, row: dict, chosen: dict | None, val_floor: float) -> dict | None:
    """Print one setting's line (``fields``, [P@4, mAP@all] per protocol, the rule's objective) and return
    the rule's choice so far: val mAP@all at least ``val_floor``, then the best mean of fresh mAP@all and
    unseen P@4."""
    line = {**fields, **row, "objective": rule_objective(row)}
    print(json.dumps(line), flush=True)
    if row["val"][1] >= val_floor and (chosen is None or line["objective"] > chosen["objective"]):
        return line
    return chosen


def standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-9)


def top_k(scores: np.ndarray, k: int, leave_one_out: bool) -> np.ndarray:
    """Indices of each row's k best entries (the query itself left out when leave-one-out)."""
    ranking = np.array(scores, dtype=np.float64)
    if leave_one_out:
        np.fill_diagonal(ranking, -np.inf)
    return np.argsort(-ranking, axis=1)[:, :k]


def expanded(fused: np.ndarray, database_fused: np.ndarray, k: int, leave_one_out: bool) -> np.ndarray:
    """The query's fused scores plus those of its top k results (itself excluded when leave-one-out)."""
    return fused + database_fused[top_k(fused, k, leave_one_out)].sum(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--val-floor", type=float, default=0.75)
    parser.add_argument("--flip", choices=["all", "queries"], help="encode photo + mirror image, averaged")
    args = parser.parse_args()
    scores = all_protocol_scores(args, args.flip)

    def forms(s: dict, w: float) -> dict[str, np.ndarray]:
        code, descriptor = s["code"], s["descriptor"]
        fused = w * code + (1 - w) * descriptor
        database_fused = w * s["database_code"] + (1 - w) * s["database_descriptor"]
        gate = 1 / (1 + np.exp(-(descriptor - 0.3) / 0.05))
        return {
            "linear": fused,
            "z": w * standardised(code) + (1 - w) * standardised(descriptor),
            "gated t=0.3": (1 - w) * descriptor + w * code * gate,
            **{f"expanded k={k}": expanded(fused, database_fused, k, s["leave_one_out"]) for k in (1, 3)},
        }

    chosen = None
    for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        rows: dict[str, dict] = {}
        for protocol, s in scores.items():
            for name, fused in forms(s, w).items():
                rows.setdefault(name, {})[protocol] = protocol_report(s, fused)
        for name, row in rows.items():
            chosen = printed_choice({"w": w, "form": name}, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
