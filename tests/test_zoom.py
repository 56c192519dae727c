"""Zooming in on small birds (phpq.zoom): where the bird is, which box of the photo is encoded again, the
two-scale average, the whole path through an exported model, and the small-birds copy of a photo set."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phpq.eval.small_birds import write_small_birds
from phpq.imaging import Preprocessing, load_image, preprocess
from phpq.model import Encoding, ModelError, PHPQModel, parse_metadata
from phpq.zoom import Region, Zoom, bird_cells, crop_box

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "phpq-cub200-lite0-64bit.onnx"


def attention_with_blob(rows: slice, columns: slice, grid: int = 9) -> np.ndarray:
    attention = np.full((grid, grid), 0.1, np.float32)
    attention[rows, columns] = 5.0
    return attention


def test_the_bird_is_the_largest_region_above_the_mean():
    attention = attention_with_blob(slice(2, 4), slice(5, 8))
    attention[8, 0] = 4.0  # a lone bright cell elsewhere: smaller, so not the bird
    assert bird_cells(attention) == (slice(2, 4), slice(5, 8))
    diagonal = np.zeros((3, 3), np.float32)
    diagonal[0, 0] = diagonal[1, 1] = 1.0  # touching at a corner only: two regions of one cell, the first wins
    assert bird_cells(diagonal) == (slice(0, 1), slice(0, 1))
    assert bird_cells(np.ones((9, 9), np.float32)) is None  # a flat map has nothing above its mean


def test_only_a_small_bird_is_zoomed_and_the_square_follows_it():
    zoom = Zoom(max_side=0.56, margin=1.3)
    region = zoom.region(attention_with_blob(slice(2, 4), slice(5, 8)))  # 3 of 9 cells wide
    assert region == Region(centre_x=6.5 / 9, centre_y=3 / 9, side=pytest.approx(3 / 9 * 1.3))
    assert zoom.region(attention_with_blob(slice(1, 7), slice(1, 8))) is None  # 7 of 9 cells: large enough
    assert Zoom.from_json("{}") is None
    assert Zoom.from_json('{"max_side": 0.5, "margin": 1.0}') == Zoom(0.5, 1.0, "average")
    for bad in ('{"max_side": 0.5}', '{"max_side": 0, "margin": 1}', '{"max_side": 0.5, "margin": 1, "combine": "x"}'):
        with pytest.raises(ValueError):
            Zoom.from_json(bad)


def test_the_crop_box_maps_the_encoded_square_onto_the_photo():
    spec = Preprocessing(288, 329 / 288)  # short side 329, centre crop 288, as the default model
    # a 658 x 500 photo: the encoded square is 288 / 329 of the short side (437.7 px), centred
    square = 288 * 500 / 329
    box = crop_box((658, 500), Region(0.5, 0.5, 0.5), spec)
    expected = (329 - square / 4, 250 - square / 4, 329 + square / 4, 250 + square / 4)
    assert box == tuple(round(v) for v in expected)
    # near the edge the box moves inside the photo, and it is never larger than the short side
    assert crop_box((658, 500), Region(0.95, 0.05, 0.5), spec)[1] == 0
    assert crop_box((658, 500), Region(0.5, 0.5, 3.0), spec) == (79, 0, 579, 500)


def test_two_scales_average_sub_vectors_and_descriptors_and_assign_the_code_again():
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(4, 16, 8)).astype(np.float32)
    codebooks /= np.linalg.norm(codebooks, axis=-1, keepdims=True)

    def random_encoding() -> Encoding:
        subvectors = rng.normal(size=(3, 4, 8)).astype(np.float32)
        subvectors /= np.linalg.norm(subvectors, axis=-1, keepdims=True)
        descriptors = rng.normal(size=(3, 12)).astype(np.float32)
        descriptors /= np.linalg.norm(descriptors, axis=-1, keepdims=True)
        return Encoding(subvectors, np.zeros((3, 4), np.uint8), descriptors)

    first, second = random_encoding(), random_encoding()
    averaged = first.averaged(second, codebooks, [(slice(0, 12), 1.0)])
    for b in range(3):
        for m in range(4):
            mean = first.subvectors[b, m] + second.subvectors[b, m]
            mean /= np.linalg.norm(mean)
            np.testing.assert_allclose(averaged.subvectors[b, m], mean, atol=1e-6)
            assert averaged.codes[b, m] == int(np.argmax([c @ mean for c in codebooks[m]]))
        descriptor = first.descriptors[b] + second.descriptors[b]
        np.testing.assert_allclose(averaged.descriptors[b], descriptor / np.linalg.norm(descriptor), atol=1e-6)
    # a descriptor of two weighted parts (the general descriptor's form) is averaged part by part
    parts = [(slice(0, 8), 0.4), (slice(8, 12), 0.6)]
    weighted = [replace(e, descriptors=e.descriptors.copy()) for e in (first, second)]
    for encoding in weighted:
        for part, weight in parts:
            norms = np.linalg.norm(encoding.descriptors[:, part], axis=1, keepdims=True)
            encoding.descriptors[:, part] *= np.sqrt(weight) / norms
    mixed = weighted[0].averaged(weighted[1], codebooks, parts).descriptors
    for part, weight in parts:
        summed = weighted[0].descriptors[:, part] + weighted[1].descriptors[:, part]
        expected = np.sqrt(weight) * summed / np.linalg.norm(summed, axis=1, keepdims=True)
        np.testing.assert_allclose(mixed[:, part], expected, atol=1e-6)
    replaced = first.replaced([2], averaged.rows([1]))
    np.testing.assert_array_equal(replaced.subvectors[:2], first.subvectors[:2])
    np.testing.assert_array_equal(replaced.subvectors[2], averaged.subvectors[1])
    np.testing.assert_array_equal(replaced.codes[2], averaged.codes[1])


def small_bird_photo(path: Path) -> Path:
    """A 240 x 180 photo: grey ground with a small bright textured 'bird' off the centre."""
    rng = np.random.default_rng(1)
    pixels = np.full((180, 240, 3), 90, np.uint8)
    pixels[60:100, 130:170] = rng.integers(150, 255, size=(40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_a_model_that_zooms_encodes_the_crop_as_a_numpy_reference_does(tiny_model, tmp_path):
    model = PHPQModel(tiny_model, prefer_cuda=False)
    assert model.info.metadata["format_version"] == "3" and model.info.zoom is not None
    photo = small_bird_photo(tmp_path / "bird.png")
    spec = model.info.preprocessing
    whole = model.encode(preprocess(load_image(photo), spec)[None])
    assert whole.attention.shape[0] == 1 and whole.attention.ndim == 3
    for combine in ("average", "replace"):
        model.info = replace(model.info, zoom=Zoom(max_side=1.0, margin=1.2, combine=combine))
        ours = model.encode_paths([photo])
        rows, columns = bird_cells(whole.attention[0])
        grid = whole.attention.shape[-1]
        region = Region(
            (columns.start + columns.stop) / 2 / grid,
            (rows.start + rows.stop) / 2 / grid,
            max(rows.stop - rows.start, columns.stop - columns.start) / grid * 1.2,
        )
        crop = load_image(photo).crop(crop_box((240, 180), region, spec))
        zoomed = model.encode(preprocess(crop, spec)[None])
        if combine == "replace":
            expected_subvectors, expected_descriptor = zoomed.subvectors[0], zoomed.descriptors[0]
        else:
            expected_subvectors = whole.subvectors[0] + zoomed.subvectors[0]
            expected_subvectors /= np.linalg.norm(expected_subvectors, axis=-1, keepdims=True)
            expected_descriptor = whole.descriptors[0] + zoomed.descriptors[0]
            expected_descriptor /= np.linalg.norm(expected_descriptor)
        np.testing.assert_allclose(ours.subvectors[0], expected_subvectors, atol=1e-5)
        np.testing.assert_allclose(ours.descriptors[0], expected_descriptor, atol=1e-5)
        assert not np.allclose(ours.descriptors[0], whole.descriptors[0], atol=1e-3)  # the zoom changed it
    model.info = replace(model.info, zoom=None)
    np.testing.assert_allclose(model.encode_paths([photo]).descriptors, whole.descriptors, atol=1e-5)


def test_a_photo_that_cannot_be_decoded_again_keeps_its_whole_frame_encoding(tiny_model, tmp_path):
    model = PHPQModel(tiny_model, prefer_cuda=False)
    model.info = replace(model.info, zoom=Zoom(max_side=1.0, margin=1.0))
    photo = small_bird_photo(tmp_path / "bird.png")
    image = preprocess(load_image(photo), model.info.preprocessing)[None]

    def vanished(_: int) -> Image.Image:
        raise FileNotFoundError("moved away")

    encoded = model.encode_photos(image, [vanished], [(240, 180)])
    np.testing.assert_allclose(encoded.descriptors, model.encode(image).descriptors, atol=1e-6)


def test_models_of_format_2_never_zoom_and_a_bad_zoom_is_refused():
    model = PHPQModel(DEFAULT_MODEL, prefer_cuda=False)
    metadata = {f"phpq.{k}": v for k, v in model.info.metadata.items()}
    assert parse_metadata({**metadata, "phpq.format_version": "2", "phpq.zoom": '{"max_side": 1}'}, "m").zoom is None
    with pytest.raises(ModelError, match="malformed"):
        parse_metadata({**metadata, "phpq.format_version": "3", "phpq.zoom": '{"max_side": 1}'}, "m")


def test_the_zoom_setting_is_part_of_the_model_id(tmp_path):
    import onnx

    from phpq_train.export.onnx_export import model_identity

    graph = onnx.load(DEFAULT_MODEL)
    plain = hashlib.sha256(graph.graph.SerializeToString()).hexdigest()
    assert model_identity(graph, "{}") == plain  # models that never zoom keep their ids
    zooming = model_identity(graph, '{"max_side": 0.56, "margin": 1.3}')
    assert zooming != plain != model_identity(graph, '{"max_side": 0.56, "margin": 1.0}')
    assert model_identity(graph, '{"margin": 1.3, "max_side": 0.56}') == zooming


def test_the_small_birds_copy_is_deterministic_and_leaves_the_source_alone(synthetic_folder, tmp_path):
    before = {p: p.read_bytes() for p in synthetic_folder.rglob("*.jpg")}
    assert write_small_birds(synthetic_folder, synthetic_folder, tmp_path / "a", share=0.35) == len(before)
    write_small_birds(synthetic_folder, synthetic_folder, tmp_path / "b", share=0.35)
    written = sorted((tmp_path / "a").rglob("*.jpg"))
    assert [p.relative_to(tmp_path / "a") for p in written] == sorted(p.relative_to(synthetic_folder) for p in before)
    assert all(p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() for p in written)
    with Image.open(written[0]) as frame:
        assert frame.size == (365, 274)  # a 96 px photo at 35 % of the frame's height, 4:3
    assert {p: p.read_bytes() for p in synthetic_folder.rglob("*.jpg")} == before
    with pytest.raises(ValueError, match="share"):
        write_small_birds(synthetic_folder, synthetic_folder, tmp_path / "c", share=0.0)


def test_export_sets_the_zoom_and_a_new_zoom_is_a_new_model(tiny_model, synthetic_folder, tmp_path, capsys):
    from phpq_train.export.cli import export_main

    common = ["--photos", str(synthetic_folder), "--parity-photos", "4"]
    never, every = tmp_path / "never.onnx", tmp_path / "every.onnx"
    assert export_main([str(tiny_model), "-o", str(never), "--zoom", "{}", *common]) == 0
    assert export_main([str(tiny_model), "-o", str(every), "--zoom", '{"max_side": 1.0, "margin": 1.0}', *common]) == 0
    never_info, every_info = PHPQModel(never, prefer_cuda=False).info, PHPQModel(every, prefer_cuda=False).info
    assert never_info.zoom is None and every_info.zoom == Zoom(1.0, 1.0, "average")
    assert len({never_info.model_id, every_info.model_id, PHPQModel(tiny_model).info.model_id}) == 3
    assert export_main([str(tiny_model), "-o", str(tmp_path / "bad.onnx"), "--zoom", '{"margin": 1}', *common]) == 2
    assert "--zoom" in capsys.readouterr().err and not (tmp_path / "bad.onnx").exists()


def test_the_index_and_the_query_zoom_as_the_model_does(tiny_model, synthetic_folder, tmp_path, monkeypatch):
    from phpq.descriptor import to_blobs
    from phpq.library import Library
    from phpq_train.export.cli import export_main

    every = tmp_path / "every.onnx"
    zoom = '{"max_side": 1.0, "margin": 1.0}'
    assert export_main([str(tiny_model), "-o", str(every), "--photos", str(synthetic_folder), "--zoom", zoom]) == 0
    photos = tmp_path / "photos" / "birds"
    photos.mkdir(parents=True)
    bird = small_bird_photo(photos / "bird.png")
    model = PHPQModel(every, prefer_cuda=False)
    expected = model.encode_paths([bird])
    unzoomed = model.encode(preprocess(load_image(bird), model.info.preprocessing)[None])
    assert to_blobs(expected.descriptors)[0] != to_blobs(unzoomed.descriptors)[0]  # as stored, too
    encoded: list[Encoding] = []
    original = PHPQModel.encode_photos
    monkeypatch.setattr(PHPQModel, "encode_photos", lambda *a: encoded.append(original(*a)) or encoded[-1])
    with Library(tmp_path / "index.sqlite3", prefer_cuda=False) as library:
        library.activate_model(library.import_model(every).id)
        library.add_folder(photos.parent)
        assert library.index().encoded == 1
        stored = library.db.load_encodings(library.active_model_id)
        np.testing.assert_array_equal(stored.codes[0], expected.codes[0])
        assert stored.descriptors[0] == to_blobs(expected.descriptors)[0]
        # a query photo (the same pixels in another file) is zoomed the same way
        query = tmp_path / "query.bmp"
        Image.open(bird).save(query)
        library.search(query, top_k=1)
    np.testing.assert_allclose(encoded[-1].descriptors, expected.descriptors, atol=1e-5)
    np.testing.assert_array_equal(encoded[-1].codes, expected.codes)


def test_the_crop_box_of_a_very_elongated_photo_is_in_its_encoded_square():
    spec = Preprocessing(288, 329 / 288)
    # a 2000 x 100 strip: preprocess cuts its central 100 x 100 square, then encodes 288/329 of it
    side = 100 * 288 / 329
    assert crop_box((2000, 100), Region(0.5, 0.5, 1.0), spec) == (
        round(1000 - side / 2),
        round(50 - side / 2),
        round(1000 + side / 2),
        round(50 + side / 2),
    )


def test_a_photo_turned_by_its_exif_orientation_zooms_on_the_bird_as_shown(tiny_model, tmp_path):
    model = PHPQModel(tiny_model, prefer_cuda=False)
    model.info = replace(model.info, zoom=Zoom(max_side=1.0, margin=1.0))
    upright = small_bird_photo(tmp_path / "upright.png")
    stored = tmp_path / "stored.jpg"  # the same photo stored turned, with orientation 6 to show it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(upright).transpose(Image.Transpose.ROTATE_90).save(stored, quality=100, exif=exif)
    reference = tmp_path / "reference.jpg"  # what is shown, stored upright at the same quality
    Image.open(stored).transpose(Image.Transpose.ROTATE_270).save(reference, quality=100)
    turned, shown = model.encode_paths([stored]), model.encode_paths([reference])
    np.testing.assert_allclose(turned.descriptors, shown.descriptors, atol=0.05)  # JPEG noise only


def test_the_zoom_reuses_the_first_decode_unless_the_crop_needs_more_pixels(tmp_path):
    from phpq.imaging import decode_for_network
    from phpq.model import photo_source

    spec = Preprocessing(288, 329 / 288)
    small = small_bird_photo(tmp_path / "small.png")  # decoded at full size: always reused
    decoded = decode_for_network(small, spec)
    assert photo_source(small, decoded)(5000) is decoded.image
    large = tmp_path / "large.jpg"  # a JPEG decoded at a reduced scale (1/2: 800 x 600) for the network
    Image.open(small).resize((1600, 1200)).save(large, quality=90)
    decoded = decode_for_network(large, spec)
    assert decoded.image.size == (800, 600) and decoded.full_size == (1600, 1200)
    source = photo_source(large, decoded)
    assert source(600) is decoded.image
    assert source(1000).size == (1600, 1200)  # decoded again, at the scale the crop needs
