"""PHPQ losses: cosine-classifier cross-entropy on continuous and quantized features, a quantization
term, a centre term that pulls features onto their class prototype, and a relational structure term
that keeps the frozen backbone's similarity structure (for species never seen in training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from phpq_train.model import HeadOutput


class LossTerm(str, Enum):
    """One term of the PHPQ loss; its value names it in ``log.jsonl``."""

    DESCRIPTOR_CLASSIFICATION = "descriptor_classification"
    DESCRIPTOR_DISTILLATION = "descriptor_distillation"
    CLASSIFICATION_CONTINUOUS = "classification_continuous"
    CLASSIFICATION_QUANTIZED = "classification_quantized"
    QUANTIZATION = "quantization"
    CENTRE_CONTINUOUS = "centre_continuous"
    CENTRE_QUANTIZED = "centre_quantized"
    STRUCTURE = "structure"


@dataclass(kw_only=True)
class LossConfig:
    """Loss weights and temperatures (all DECISIONS, see the docs); the values come from the recipe."""

    classification_continuous: float
    classification_quantized: float
    quantization: float
    structure: float
    label_smoothing: float
    structure_temperature: float
    classifier_scale: float
    margin: float  # additive cosine margin (CosFace) on the target class
    centre_continuous: float  # weight of centre_loss on the continuous feature
    centre_quantized: float  # weight of centre_loss on the soft-quantized feature
    # The general-purpose descriptor: a cosine-classifier term on its own prototypes, and a distillation
    # term that keeps the frozen backbone's neighbourhoods (what carries species never trained on).
    descriptor_classification: float
    descriptor_distillation: float
    descriptor_label_smoothing: float

    def weights(self) -> dict[LossTerm, float]:
        """The weight of every loss term: the field each term's value names."""
        return {term: getattr(self, term.value) for term in LossTerm}

    def to_dict(self) -> dict:
        return asdict(self)


def weighted_total(terms: dict[LossTerm, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """The sum of the terms, each times its weight."""
    weights = config.weights()
    return sum(weights[term] * value for term, value in terms.items())


def margin_cross_entropy(cosine: torch.Tensor, labels: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Cross-entropy of scale * (cosine - margin on the target class), with label smoothing."""
    target = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
    logits = config.classifier_scale * (cosine.float() - config.margin * target)
    return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)


def centre_loss(cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cosine to the own class prototype.

    Applied to the quantized feature, it collapses each species' database codes onto its prototype, so
    ADC then ranks the database the way the classifier ranks the species.
    """
    return (1 - cosine.float().gather(1, labels[:, None])).mean()


def structure_loss(embedding: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL between the batch neighbour distributions of the teacher features and of the embeddings.

    Each row is a softmax over the other items of the batch of cosine similarity / temperature.
    """
    student = F.normalize(embedding.float(), dim=-1)
    reference = F.normalize(teacher.float(), dim=-1)
    eye = torch.eye(len(student), dtype=torch.bool, device=student.device)
    student_logits = (student @ student.T / temperature).masked_fill(eye, float("-inf"))
    teacher_logits = (reference @ reference.T / temperature).masked_fill(eye, float("-inf"))
    teacher_probs = torch.softmax(teacher_logits, dim=1)
    log_student = torch.log_softmax(student_logits, dim=1).masked_fill(eye, 0.0)
    log_teacher = torch.log_softmax(teacher_logits, dim=1).masked_fill(eye, 0.0)
    return (teacher_probs * (log_teacher - log_student)).sum(dim=1).mean()


def descriptor_terms(
    descriptor: torch.Tensor,
    cosine: torch.Tensor,
    frozen: torch.Tensor,
    labels: torch.Tensor,
    config: LossConfig,
    descriptor_classes: int | None = None,
) -> dict[LossTerm, torch.Tensor]:
    """The descriptor's loss terms: cross-entropy on its prototypes (only of the photos of the first
    ``descriptor_classes`` classes, when given) and distillation from the frozen input."""
    logits = config.classifier_scale * cosine.float()
    smoothing = config.descriptor_label_smoothing
    if descriptor_classes is not None:
        kept = labels < descriptor_classes
        logits, labels = logits[kept], labels[kept]
    classification = F.cross_entropy(logits, labels, label_smoothing=smoothing) if len(labels) else logits.sum() * 0.0
    terms = {LossTerm.DESCRIPTOR_CLASSIFICATION: classification}
    if config.descriptor_distillation > 0:
        terms[LossTerm.DESCRIPTOR_DISTILLATION] = structure_loss(descriptor, frozen, config.structure_temperature)
    return terms


def phpq_loss(
    output: HeadOutput,
    labels: torch.Tensor,
    config: LossConfig,
    teacher: torch.Tensor | None = None,
    descriptor_classes: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the loss terms, and each term's value for the log (the descriptor's classifier
    learns only the first ``descriptor_classes`` classes, when given)."""
    quantized = output.quantized
    descriptor = (output.descriptor, output.cosine_descriptor, output.descriptor_input)
    terms = {
        **descriptor_terms(*descriptor, labels, config, descriptor_classes),
        LossTerm.CLASSIFICATION_CONTINUOUS: margin_cross_entropy(output.cosine_continuous, labels, config),
        LossTerm.CLASSIFICATION_QUANTIZED: margin_cross_entropy(output.cosine_quantized, labels, config),
        # Pull each sub-vector and its nearest codeword together (both are unit vectors).
        LossTerm.QUANTIZATION: (1 - (quantized.subvectors * quantized.hard).sum(dim=-1)).mean(),
    }
    if config.centre_continuous > 0:
        terms[LossTerm.CENTRE_CONTINUOUS] = centre_loss(output.cosine_continuous, labels)
    if config.centre_quantized > 0:
        terms[LossTerm.CENTRE_QUANTIZED] = centre_loss(output.cosine_quantized, labels)
    if config.structure > 0:
        if teacher is None:
            raise ValueError("the structure loss needs teacher features (the 'head' tap)")
        subvectors = quantized.subvectors.flatten(1)
        terms[LossTerm.STRUCTURE] = structure_loss(subvectors, teacher, config.structure_temperature)
    return weighted_total(terms, config), {term.value: float(value.detach()) for term, value in terms.items()}
