"""PHPQ losses: cosine-classifier cross-entropy on continuous and quantized features, a quantization
term, a centre term that pulls features onto their class prototype, and a relational structure term
that keeps the frozen backbone's similarity structure (for species never seen in training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from phpq_train.model import HeadOutput


@dataclass
class LossConfig:
    """Loss weights and temperatures (all DECISIONS, see README)."""

    classification_continuous: float = 1.0
    classification_quantized: float = 1.0
    quantization: float = 0.1
    structure: float = 0.0
    label_smoothing: float = 0.1
    structure_temperature: float = 0.05
    classifier_scale: float = 16.0
    margin: float = 0.0  # additive cosine margin (CosFace) on the target class
    centre_continuous: float = 4.0  # weight of centre_loss on the continuous feature
    centre_quantized: float = 4.0  # weight of centre_loss on the soft-quantized feature
    # The general-purpose descriptor: a cosine-classifier term on its own prototypes, and a distillation
    # term that keeps the frozen backbone's neighbourhoods (what carries species never trained on).
    descriptor_classification: float = 1.0
    descriptor_distillation: float = 0.0  # measured: any weight lowers unseen and fresh (docs/results.md)
    descriptor_label_smoothing: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


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
    descriptor: torch.Tensor, cosine: torch.Tensor, frozen: torch.Tensor, labels: torch.Tensor, config: LossConfig
) -> dict[str, torch.Tensor]:
    """The descriptor's loss terms: cross-entropy on its prototypes and distillation from the frozen input."""
    logits = config.classifier_scale * cosine.float()
    terms = {
        "descriptor_classification": F.cross_entropy(logits, labels, label_smoothing=config.descriptor_label_smoothing)
    }
    if config.descriptor_distillation > 0:
        terms["descriptor_distillation"] = structure_loss(descriptor, frozen, config.structure_temperature)
    return terms


def phpq_loss(
    output: HeadOutput, labels: torch.Tensor, config: LossConfig, teacher: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the loss terms, and each term's value for the log."""
    quantized = output.quantized
    terms = {
        **descriptor_terms(output.descriptor, output.cosine_descriptor, output.descriptor_input, labels, config),
        "classification_continuous": margin_cross_entropy(output.cosine_continuous, labels, config),
        "classification_quantized": margin_cross_entropy(output.cosine_quantized, labels, config),
        # Pull each sub-vector and its nearest codeword together (both are unit vectors).
        "quantization": (1 - (quantized.subvectors * quantized.hard).sum(dim=-1)).mean(),
    }
    if config.centre_continuous > 0:
        terms["centre_continuous"] = centre_loss(output.cosine_continuous, labels)
    if config.centre_quantized > 0:
        terms["centre_quantized"] = centre_loss(output.cosine_quantized, labels)
    if config.structure > 0:
        if teacher is None:
            raise ValueError("the structure loss needs teacher features (the 'head' tap)")
        terms["structure"] = structure_loss(quantized.subvectors.flatten(1), teacher, config.structure_temperature)
    total = sum(getattr(config, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}
