"""Where a cached-mode checkpoint loses mAP on the val protocol: the training classifier's accuracy on
the queries, the AP of correctly and wrongly classified queries, and the ceiling that ADC would reach if
every database code sat exactly on its species prototype (the database ranked like the classifier ranks
the species).

Usage: python bench/diagnose.py runs/s10/c4/last.pt [--output /tmp/diagnose]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from phpq.eval.metrics import average_precision, ranked_relevance
from phpq.pq import adc_scores, lookup_tables
from phpq_train.checkpoint import load_checkpoint
from phpq_train.config import TrainConfig, merge, recipe_values
from phpq_train.train import CachedTrainer


@torch.no_grad()
def diagnose(checkpoint: Path, output: Path) -> dict[str, float]:
    payload = load_checkpoint(checkpoint)
    # The loss weights play no part here, and older checkpoints may name loss fields that no longer exist:
    # the recipe's loss, and the recipe's values for fields added after the checkpoint was written.
    run = {**payload["train_config"], "loss": {}, "output": str(output)}
    config = TrainConfig(**merge(recipe_values(), run))
    if config.protocol != "val" or config.mode != "cached":
        raise SystemExit("diagnose needs a cached-mode checkpoint trained on the val protocol")
    trainer = CachedTrainer(config)
    trainer.model.load_state_dict(payload["state_dict"])
    head = trainer.model.head.eval()
    labels = trainer.photo_set.labels
    query_index = trainer.photo_indices(trainer.split.query)
    database_index = trainer.photo_indices(trainer.split.database)
    query_labels, database_labels = labels[query_index], labels[database_index]
    query = head.quantizer(trainer._embed_cached(query_index))
    database = head.quantizer(trainer._embed_cached(database_index))
    prototypes = F.normalize(head.classifier.prototypes, dim=-1)
    query_cosine = F.normalize(query.subvectors.flatten(1), dim=-1) @ prototypes.T
    database_class = (F.normalize(database.hard.flatten(1), dim=-1) @ prototypes.T).argmax(1).numpy()

    codebooks = head.quantizer.normalized_codebooks().numpy()
    scores = adc_scores(lookup_tables(query.subvectors.numpy(), codebooks), database.codes.numpy().astype(np.uint8))
    precision = average_precision(ranked_relevance(scores, query_labels, database_labels))
    own = query_cosine.gather(1, torch.as_tensor(query_labels)[:, None])
    rank = ((query_cosine > own).sum(1) + 1).numpy()
    correct = rank == 1
    collapsed = query_cosine[:, torch.as_tensor(database_labels)].numpy()  # database item -> its prototype
    return {
        "mAP@all": float(precision.mean()),
        "query_top1": float(correct.mean()),
        "query_top5": float((rank <= 5).mean()),
        "query_MRR": float((1 / rank).mean()),
        "database_code_top1": float((database_class == database_labels).mean()),
        "AP_correct_queries": float(precision[correct].mean()),
        "AP_wrong_queries": float(precision[~correct].mean()),
        "mAP@all_if_codes_were_prototypes": float(
            average_precision(ranked_relevance(collapsed, query_labels, database_labels)).mean()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--output", type=Path, default=Path("/tmp/phpq-diagnose"))
    args = parser.parse_args()
    print(json.dumps({name: round(value, 4) for name, value in diagnose(args.checkpoint, args.output).items()}))


if __name__ == "__main__":
    main()
