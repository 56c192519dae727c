from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phpq.eval.datasets import (
    extra_training_species,
    load_photo_set,
    scan_image_folder,
    species_key,
    split_protocol,
)
from phpq.imaging import Preprocessing, load_and_preprocess, load_image, preprocess
from phpq_train.compact import compact_copy
from phpq_train.config import apply_overrides, load_config
from phpq_train.data import PhotoDataset
from tests.conftest import EXTRA_SPECIES, SHARED_CUB, synthetic_photo, write_extra_set


def test_image_folder_ignores_stray_files_and_hidden_entries(synthetic_folder, tmp_path):
    root = tmp_path / "tree"
    (root / "b_species").mkdir(parents=True)
    (root / "a_species").mkdir()
    (root / ".hidden").mkdir()
    (root / ".DS_Store").write_bytes(b"junk")
    synthetic_photo(0, 0).save(root / "a_species" / "x.jpg")
    synthetic_photo(1, 0).save(root / "b_species" / "y.png")
    (root / "b_species" / "notes.txt").write_text("not a photo")
    photo_set = scan_image_folder(root)
    assert photo_set.class_names == ["a_species", "b_species"]
    assert [(p.path.name, p.label) for p in photo_set.photos] == [("x.jpg", 0), ("y.png", 1)]
    with pytest.raises(ValueError, match="no class sub-directories"):
        scan_image_folder(root / "a_species")


def test_official_cub_layout_is_read_with_its_split(tmp_path):
    root = tmp_path / "CUB_200_2011"
    (root / "images" / "001.A").mkdir(parents=True)
    (root / "images" / "002.B").mkdir(parents=True)
    names = ["001.A/a1.jpg", "001.A/a2.jpg", "002.B/b1.jpg", "002.B/b2.jpg"]
    for name in names:
        synthetic_photo(0, 0, 32).save(root / "images" / name)
    (root / "images.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n4 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 0\n")
    (root / "classes.txt").write_text("1 001.A\n2 002.B\n")
    train, test = load_photo_set(root, "train"), load_photo_set(root, "test")
    assert [(p.path.name, p.label) for p in train.photos] == [("a1.jpg", 0), ("b1.jpg", 1)]
    assert [(p.path.name, p.label) for p in test.photos] == [("a2.jpg", 0), ("b2.jpg", 1)]
    assert train.class_names == ["001.A", "002.B"]


def test_protocols_are_deterministic_and_disjoint(synthetic_folder_6):
    photo_set = load_photo_set(synthetic_folder_6)
    val = split_protocol(photo_set, "val")
    assert len(val.query) == 6 * 2 and len(val.database) == 6 * 8
    assert {p.path for p in val.query}.isdisjoint(p.path for p in val.database)
    assert val.train == val.database and val.train_classes == 6
    assert all(int(p.path.stem.split("_")[1]) % 5 == 0 for p in val.query)
    unseen = split_protocol(photo_set, "unseen")
    assert {p.label for p in unseen.train} == {0, 1, 2} and len(unseen.train) == 30
    assert unseen.leave_one_out and unseen.query == unseen.database and len(unseen.query) == 30
    assert {p.label for p in unseen.query} == {3, 4, 5}
    fresh = split_protocol(photo_set, "fresh")
    assert fresh.leave_one_out and fresh.query == fresh.database and fresh.train_classes == 6
    assert len(fresh.query) == 6 * 4 and len(fresh.train) == 6 * 6  # photos 0, 3, 6, 9 of each class held out
    assert all(int(p.path.stem.split("_")[1]) % 3 == 0 for p in fresh.query)
    for split in (val, fresh, unseen):  # no photo is both trained on and searched for
        assert {p.path for p in split.train}.isdisjoint(p.path for p in split.query)
    assert not {p.path for p in fresh.train} & {p.path for p in fresh.database}
    assert not {p.path for p in unseen.train} & {p.path for p in unseen.database}
    for protocol, split in (("val", val), ("fresh", fresh), ("unseen", unseen)):
        again = split_protocol(load_photo_set(synthetic_folder_6), protocol)
        assert (again.train, again.query, again.database) == (split.train, split.query, split.database)
    everything = split_protocol(photo_set, "all")
    assert len(everything.train) == 60 and not everything.held_out and val.held_out and unseen.held_out
    assert not val.leave_one_out and not everything.leave_one_out
    with pytest.raises(ValueError):
        split_protocol(photo_set, "test")


def test_other_protocol_is_every_photo_leave_one_out_and_deterministic(synthetic_folder_6):
    photo_set = load_photo_set(synthetic_folder_6)
    other = split_protocol(photo_set, "other")
    assert other.train == [] and other.train_classes == 0 and other.held_out and other.leave_one_out
    assert other.query == other.database and len(other.query) == 60
    assert [p.label for p in other.query] == sorted(p.label for p in other.query)  # class by class
    for label in range(6):  # within a class, by path
        paths = [p.path for p in other.query if p.label == label]
        assert paths == sorted(paths) and len(paths) == 10
    shuffled = type(photo_set)(list(reversed(photo_set.photos)), photo_set.class_names)
    assert split_protocol(shuffled, "other").query == other.query
    for protocol in ("other", "other-held"):  # they train nothing
        with pytest.raises(ValueError, match="protocol must be one of"):
            load_config(None, [f'protocol="{protocol}"'])


def test_other_held_measures_the_species_extra_training_leaves_out(synthetic_folder_6, tmp_path):
    extra = load_photo_set(write_extra_set(tmp_path / "extra"))
    assert extra.class_names == EXTRA_SPECIES
    held = split_protocol(extra, "other-held")
    assert held.leave_one_out and held.train == [] and held.query == held.database
    assert [p.label for p in held.query] == [1, 1, 1, 3, 3, 3]  # the odd species only
    base = load_photo_set(synthetic_folder_6)

    def labels(protocol: str, species: str) -> tuple[dict[str, set[int]], list[str]]:
        photos, added = extra_training_species(extra, split_protocol(base, protocol), base.class_names, species)
        by_species: dict[str, set[int]] = {}
        for photo in photos:
            by_species.setdefault(photo.path.parent.name, set()).add(photo.label)
        assert all(len(photos_of) == 1 for photos_of in by_species.values())
        return by_species, added

    # Fresh trains all six classes: CLASS_4 joins class_4, the new species follow them.
    assert labels("fresh", "even") == (
        {"Alpha Bird": {6}, "CLASS_4": {4}, "Echo Bird": {7}},
        ["Alpha Bird", "Echo Bird"],
    )
    # Unseen trains classes 0-2: CLASS_4 would leak a held-out species into training, so it stays out.
    assert labels("unseen", "even") == ({"Alpha Bird": {3}, "Echo Bird": {4}}, ["Alpha Bird", "Echo Bird"])
    assert labels("unseen", "all") == (
        {"Alpha Bird": {3}, "CLASS_1": {1}, "Delta Bird": {4}, "Echo Bird": {5}},
        ["Alpha Bird", "Delta Bird", "Echo Bird"],
    )
    assert not {p.path for p in held.query} & {
        p.path for p in extra_training_species(extra, split_protocol(base, "val"), base.class_names, "even")[0]
    }
    with pytest.raises(ValueError, match="even"):
        extra_training_species(extra, split_protocol(base, "val"), base.class_names, "odd")


def test_species_key_matches_names_across_photo_sets():
    assert species_key("017.Cardinal") == species_key("CARDINAL") == "cardinal"
    assert species_key("158.Bay_breasted_Warbler") == species_key("BAY-BREASTED WARBLER") == "baybreastedwarbler"
    assert species_key("Painted_Bunting") != species_key("Indigo_Bunting")


def test_preprocessing_geometry_and_scaling(tmp_path):
    image = Image.new("RGB", (400, 300), (255, 127, 0))
    array = preprocess(image, Preprocessing(224))
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 100, 100], [(255 - 127) / 128, 0.0, -127 / 128])
    path = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(path, quality=95)
    assert load_image(path, min_side=256).size == (750, 500)  # libjpeg decoded at 1/4 scale
    assert load_and_preprocess(path, Preprocessing(224)).shape == (3, 224, 224)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (200, 100), (0, 0, 255)).save(path, exif=exif)
    assert load_image(path).size == (100, 200)


def test_augmented_views_are_reproducible_and_differ_from_the_centre_crop(synthetic_folder):
    photos = load_photo_set(synthetic_folder).photos[:2]
    centre = PhotoDataset(photos, 64, view=0)[0][0]
    view1, again = PhotoDataset(photos, 64, view=1, seed=3)[0][0], PhotoDataset(photos, 64, view=1, seed=3)[0][0]
    assert view1.shape == centre.shape == (3, 64, 64)
    assert np.array_equal(view1.numpy(), again.numpy())
    assert not np.array_equal(view1.numpy(), centre.numpy())


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 3\npartial_epochs = 2\n[model]\nn_subspaces = 4\n")
    config = load_config(path, ["model.topk=16", 'protocol="unseen"'])
    assert (config.epochs, config.model.n_subspaces, config.model.topk, config.protocol) == (3, 4, 16, "unseen")
    assert config.model.bits == 32
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides({}, ["epoch=3"])
    with pytest.raises(ValueError, match="mode"):
        load_config(None, ['mode="gpu"'])
    with pytest.raises(ValueError, match="set partial_epochs"):  # a shorter run says what else to change
        load_config(None, ["epochs=3"])


def test_compact_copy_keeps_the_tree_and_never_touches_the_source(synthetic_folder, tmp_path):
    before = {p: p.read_bytes() for p in synthetic_folder.rglob("*.jpg")}
    count, size = compact_copy(synthetic_folder, tmp_path / "compact", short_side=48)
    assert count == len(before) and size > 0
    copied = sorted((tmp_path / "compact").rglob("*.jpg"))
    assert len(copied) == count and min(Image.open(copied[0]).size) == 48
    assert {p: p.read_bytes() for p in synthetic_folder.rglob("*.jpg")} == before
    with pytest.raises(ValueError):
        compact_copy(synthetic_folder, synthetic_folder / "inside")


def test_compact_webp_copy_is_smaller_and_decodes(synthetic_folder, tmp_path):
    jpeg_count, jpeg_size = compact_copy(synthetic_folder, tmp_path / "jpeg", short_side=48, quality=70)
    webp_count, webp_size = compact_copy(synthetic_folder, tmp_path / "webp", short_side=48, image_format="webp")
    copied = sorted((tmp_path / "webp").rglob("*.webp"))
    assert webp_count == jpeg_count == len(copied) and webp_size < jpeg_size
    assert load_photo_set(tmp_path / "webp").class_names == load_photo_set(synthetic_folder).class_names
    assert min(load_image(copied[0]).size) == 48
    with pytest.raises(ValueError, match="format"):
        compact_copy(synthetic_folder, tmp_path / "gif", image_format="gif")


@pytest.mark.skipif(not SHARED_CUB.is_dir(), reason="../shared CUB photos are not present")
def test_real_cub_photos_decode_and_preprocess():
    photo_set = load_photo_set(SHARED_CUB)
    assert len(photo_set.class_names) == 200 and len(photo_set.photos) == 5994
    for photo in photo_set.photos[::1500]:
        array = load_and_preprocess(Path(photo.path), Preprocessing(224))
        assert array.shape == (3, 224, 224) and array.min() >= -1.0 and array.max() <= 1.0
