from dataclasses import asdict, fields, replace

import numpy as np
import pytest
import torch

from phpq.pq import adc_scores, decode, lookup_tables, sdc_scores
from phpq_train.config import load_config
from phpq_train.model import Level, ProductQuantizer, PyramidLayout


def make_quantizer(topk: int = 256, seed: int = 0) -> ProductQuantizer:
    torch.manual_seed(seed)
    return ProductQuantizer(dim=64, n_subspaces=8, n_codewords=256, alpha=10.0, topk=topk)


def test_shapes_and_unit_norms():
    quantizer = make_quantizer(topk=8)
    out = quantizer(torch.randn(5, 64))
    assert out.subvectors.shape == (5, 8, 8)
    assert out.similarities.shape == (5, 8, 256)
    assert out.soft.shape == out.hard.shape == (5, 8, 8)
    assert out.codes.shape == (5, 8) and out.codes.dtype == torch.int64
    torch.testing.assert_close(out.subvectors.norm(dim=-1), torch.ones(5, 8))
    torch.testing.assert_close(out.hard.norm(dim=-1), torch.ones(5, 8))


def test_hard_codes_are_the_argmax_of_inner_products():
    quantizer = make_quantizer()
    x = torch.randn(7, 64)
    out = quantizer(x)
    sub = torch.nn.functional.normalize(x.view(7, 8, 8), dim=-1)
    books = quantizer.normalized_codebooks()
    brute = torch.stack([(sub[:, m] @ books[m].T).argmax(dim=1) for m in range(8)], dim=1)
    assert torch.equal(out.codes, brute)
    torch.testing.assert_close(out.hard, books[torch.arange(8)[None], brute])


def test_partial_attention_with_k_equal_K_is_the_full_softmax():
    full, partial = make_quantizer(topk=256), make_quantizer(topk=256)
    similarities = torch.randn(3, 8, 256)
    torch.testing.assert_close(partial.attention(similarities), torch.softmax(10.0 * similarities, dim=-1))
    torch.testing.assert_close(full(torch.ones(2, 64)).soft, partial(torch.ones(2, 64)).soft)


def test_partial_attention_only_reaches_the_top_k_codewords():
    quantizer = make_quantizer(topk=4)
    x = torch.randn(1, 64)
    out = quantizer(x)
    weights = quantizer.attention(out.similarities)
    assert ((weights > 0).sum(dim=-1) == 4).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(1, 8))
    out.soft.sum().backward()
    touched = (quantizer.codebooks.grad.abs().sum(dim=-1) > 0).sum(dim=-1)
    assert (touched == 4).all(), touched  # gradients reach exactly the k attended codewords per sub-codebook
    top4 = out.similarities.topk(4, dim=-1).indices[0]
    for m in range(8):
        assert set(torch.nonzero(quantizer.codebooks.grad[m].abs().sum(-1)).flatten().tolist()) == set(top4[m].tolist())


def test_adc_equals_inner_product_with_decoded_vectors_and_sdc_with_both_decoded():
    rng = np.random.default_rng(0)
    books = rng.normal(size=(4, 16, 8)).astype(np.float32)
    queries = rng.normal(size=(3, 4, 8)).astype(np.float32)
    codes = rng.integers(0, 16, size=(20, 4)).astype(np.uint8)
    decoded = decode(codes, books).reshape(20, -1)
    expected = queries.reshape(3, -1) @ decoded.T
    np.testing.assert_allclose(adc_scores(lookup_tables(queries, books), codes), expected, rtol=1e-5, atol=1e-5)
    query_codes = codes[:3]
    np.testing.assert_allclose(
        sdc_scores(query_codes, codes, books),
        decode(query_codes, books).reshape(3, -1) @ decoded.T,
        rtol=1e-5,
        atol=1e-5,
    )


def test_kmeans_initialisation_fits_clustered_data():
    torch.manual_seed(0)
    quantizer = ProductQuantizer(dim=8, n_subspaces=2, n_codewords=4, alpha=10.0, topk=4)
    centres = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    data = centres.repeat_interleave(50, dim=0) + 0.01 * torch.randn(200, 8)
    before = (quantizer(data).subvectors * quantizer(data).hard).sum(-1).mean()
    quantizer.init_from_kmeans(data)
    after = (quantizer(data).subvectors * quantizer(data).hard).sum(-1).mean()
    assert after > 0.99 > before


def test_margin_cross_entropy_reduces_to_scaled_softmax_and_margin_raises_the_loss():
    from phpq_train.losses import margin_cross_entropy

    cosine = torch.tensor([[0.9, 0.1, -0.2], [0.0, 0.5, 0.4]])
    labels = torch.tensor([0, 2])
    plain = replace(load_config().loss, classifier_scale=10.0, margin=0.0, label_smoothing=0.0)
    expected = torch.nn.functional.cross_entropy(10.0 * cosine, labels)
    torch.testing.assert_close(margin_cross_entropy(cosine, labels, plain), expected)
    with_margin = replace(plain, margin=0.3)
    assert margin_cross_entropy(cosine, labels, with_margin) > expected


def test_structure_loss_is_zero_for_identical_neighbourhoods_and_positive_otherwise():
    from phpq_train.losses import structure_loss

    torch.manual_seed(0)
    features = torch.randn(6, 16)
    assert structure_loss(features, features, 0.1).abs() < 1e-6
    assert structure_loss(torch.randn(6, 16), features, 0.1) > 0.01


def test_centre_loss_is_zero_on_the_own_prototype_and_grows_with_the_angle():
    from phpq_train.losses import centre_loss

    labels = torch.tensor([0, 2])
    on_prototype = torch.tensor([[1.0, 0.2, -0.1], [0.3, 0.1, 1.0]])
    assert centre_loss(on_prototype, labels) == 0
    halfway = torch.tensor([[0.5, 0.9, 0.0], [0.9, 0.0, 0.5]])
    opposite = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    assert 0 < centre_loss(halfway, labels) < centre_loss(opposite, labels) == 2


def test_every_loss_term_has_its_own_weight_and_the_loss_is_their_weighted_sum():
    from phpq_train.losses import LossConfig, LossTerm, phpq_loss
    from phpq_train.model import PHPQHead

    recipe = load_config()
    # Every float field a distinct value: each term's weight must be a field of its own.
    loss = LossConfig(**{f.name: 0.01 * (index + 1) for index, f in enumerate(fields(LossConfig))})
    weights = loss.weights()
    assert set(weights) == set(LossTerm)
    assert len(set(weights.values())) == len(LossTerm)
    weight_fields = {name for name, value in asdict(loss).items() if value in weights.values()}
    assert weight_fields == {term.value for term in LossTerm}  # and every weight field is a term's
    settings = {"label_smoothing", "descriptor_label_smoothing", "classifier_scale", "margin", "structure_temperature"}
    assert {f.name for f in fields(LossConfig)} - weight_fields == settings

    torch.manual_seed(0)
    model = replace(
        recipe.model, taps=("head",), grids=(1,), dim=16, n_subspaces=4, n_codewords=8, topk=4, descriptor_dim=8
    )
    head = PHPQHead(replace(model, n_classes=3), PyramidLayout((Level("head", 8, (1,)),)))
    output = head(torch.randn(6, 16))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    total, parts = phpq_loss(output, labels, loss, teacher=torch.randn(6, 5))
    assert set(parts) == {term.value for term in LossTerm}  # every term computed once all weights are on
    expected = sum(weights[term] * parts[term.value] for term in LossTerm)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)


def test_the_descriptor_learns_only_the_classes_it_is_given():
    from phpq_train.losses import LossTerm, descriptor_terms

    config = load_config().loss
    generator = torch.Generator().manual_seed(0)
    cosine = torch.rand(6, 5, generator=generator) * 2 - 1
    descriptor, frozen = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.tensor([0, 3, 1, 4, 2, 3])
    term = LossTerm.DESCRIPTOR_CLASSIFICATION
    kept = labels < 3
    alone = descriptor_terms(descriptor, cosine[kept], frozen[kept], labels[kept], config)[term]
    masked = descriptor_terms(descriptor, cosine, frozen, labels, config, descriptor_classes=3)[term]
    torch.testing.assert_close(masked, alone)
    assert not torch.isclose(descriptor_terms(descriptor, cosine, frozen, labels, config)[term], alone)
    cosine.requires_grad_(True)
    none_kept = descriptor_terms(descriptor, cosine, frozen, labels, config, descriptor_classes=0)[term]
    none_kept.backward()
    assert none_kept.item() == 0.0 and torch.equal(cosine.grad, torch.zeros_like(cosine))
