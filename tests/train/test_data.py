"""Training data: domain scanning errors, decode-once caches, stateless sampling, crops and flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from symnets_deploy.errors import UsageError  # noqa: E402
from symnets_deploy.train import data as D  # noqa: E402


def _write(root: Path, domain: str, classes, per_class: int = 2, size=(20, 16), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls in classes:
        folder = root / domain / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"{cls}_{i}.png")


def _usage_error(fn, *args) -> str:
    with pytest.raises(UsageError) as info:
        fn(*args)
    assert info.value.exit_code == 2
    return str(info.value)


# -- load_domains ------------------------------------------------------------------------------
def test_load_domains_ok(tmp_path):
    _write(tmp_path, "src", ["b", "a", "c"], per_class=2)
    _write(tmp_path, "tgt", ["c", "a", "b"], per_class=1)
    (tmp_path / "src" / "a" / "notes.txt").write_text("not an image")
    src, tgt = D.load_domains(tmp_path, "src", "tgt")
    assert src.class_names == tgt.class_names == ("a", "b", "c")
    assert len(src.samples) == 6 and len(tgt.samples) == 3
    assert src.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for path, label in src.samples:
        assert path.parent.name == src.class_names[label]
        assert path.suffix == ".png"


def test_mismatched_class_folders_lists_the_difference(tmp_path):
    _write(tmp_path, "src", ["cat", "dog", "eel"])
    _write(tmp_path, "tgt", ["cat", "dog", "fox"])
    msg = _usage_error(D.load_domains, tmp_path, "src", "tgt")
    assert "only in src: eel" in msg
    assert "only in tgt: fox" in msg
    assert "cat" not in msg.split("class folders")[-1]


def test_empty_domain(tmp_path):
    _write(tmp_path, "src", ["a", "b"])
    for cls in ("a", "b"):
        (tmp_path / "tgt" / cls).mkdir(parents=True)
    msg = _usage_error(D.load_domains, tmp_path, "src", "tgt")
    assert "tgt" in msg and "no images" in msg


def test_missing_domain_lists_available(tmp_path):
    _write(tmp_path, "src", ["a"])
    _write(tmp_path, "other", ["a"])
    msg = _usage_error(D.load_domains, tmp_path, "src", "tgt")
    assert "tgt" in msg and "other" in msg and "src" in msg


def test_missing_data_root(tmp_path):
    msg = _usage_error(D.load_domains, tmp_path / "nowhere", "src", "tgt")
    assert "nowhere" in msg


def test_same_source_and_target(tmp_path):
    _write(tmp_path, "src", ["a"])
    msg = _usage_error(D.load_domains, tmp_path, "src", "src")
    assert "same" in msg


def test_unknown_preset_lists_valid(tmp_path):
    _write(tmp_path, "amazon", ["a"])
    _write(tmp_path, "webcam", ["a"])
    msg = _usage_error(D.load_domains, tmp_path, "amazon", "webcam", "office-32")
    assert "office-32" in msg and "office31" in msg and "office_home" in msg


def test_preset_class_mismatch(tmp_path):
    _write(tmp_path, "amazon", ["backpack", "bike", "teapot"])
    _write(tmp_path, "webcam", ["backpack", "bike", "teapot"])
    msg = _usage_error(D.load_domains, tmp_path, "amazon", "webcam", "office_caltech10")
    assert "office_caltech10" in msg
    assert "teapot" in msg and "calculator" in msg  # extra folder and a missing preset class


def test_preset_unknown_domain(tmp_path):
    _write(tmp_path, "amazon", ["a"])
    _write(tmp_path, "sketch", ["a"])
    msg = _usage_error(D.load_domains, tmp_path, "amazon", "sketch", "office31")
    assert "sketch" in msg and "webcam" in msg


def test_office31_nested_images_folder(tmp_path):
    # The Office-31 archive holds <domain>/images/<class>/.
    _write(tmp_path / "amazon", "images", ["a", "b"])
    _write(tmp_path / "webcam", "images", ["a", "b"])
    src, tgt = D.load_domains(tmp_path, "amazon", "webcam")
    assert src.class_names == ("a", "b")
    assert src.root == tmp_path / "amazon" / "images"


# -- decode_domain -----------------------------------------------------------------------------
def test_decode_domain_shapes_and_sizes(tmp_path):
    # (w, h) -> shorter side 36, the other side scaled and rounded, capped at 2 * 36 = 72.
    cases = {(40, 60): (54, 36), (64, 48): (36, 48), (36, 36): (36, 36), (200, 40): (36, 72)}
    for i, (w, h) in enumerate(cases):
        folder = tmp_path / "d" / f"c{i}"
        folder.mkdir(parents=True)
        arr = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / "img.png")
    domain = D.scan_domain(tmp_path, "d")
    decoded = D.decode_domain(domain, 36, threads=2)
    assert len(decoded) == 4
    assert decoded.images.dtype == torch.uint8
    expected_hw = [cases[wh] for wh in cases]
    assert decoded.sizes.tolist() == [list(hw) for hw in expected_hw]
    assert decoded.images.shape == (4, 3, max(h for h, _ in expected_hw), max(w for _, w in expected_hw))
    assert decoded.labels.tolist() == [0, 1, 2, 3]
    # Images are top-left aligned; beyond their valid size the cache is zero padding.
    for i, (h, w) in enumerate(expected_hw):
        assert decoded.images[i, :, :h, :w].float().mean() > 0
        assert not decoded.images[i, :, h:, :].any() and not decoded.images[i, :, :, w:].any()
    # An image already at the resize size is stored exactly (CHW).
    original = np.asarray(Image.open(domain.samples[2][0]).convert("RGB"))
    assert np.array_equal(decoded.images[2, :, :36, :36].permute(1, 2, 0).numpy(), original)


def test_decode_domain_unreadable_image_is_a_usage_error(tmp_path):
    _write(tmp_path, "d", ["a"])
    (tmp_path / "d" / "a" / "broken.jpg").write_bytes(b"")
    domain = D.scan_domain(tmp_path, "d")
    msg = _usage_error(D.decode_domain, domain, 16)
    assert "broken.jpg" in msg


def test_train_resize():
    assert D.train_resize(224) == 256
    assert D.train_resize(32) == round(32 * 256 / 224) == 37


# -- BatchSampler ------------------------------------------------------------------------------
def test_batch_sampler_is_a_pure_function_of_seed_and_iteration():
    a = D.BatchSampler(23, 5, seed=7, stream=0)
    b = D.BatchSampler(23, 5, seed=7, stream=0)
    order = [9, 0, 3, 17, 3, 1]
    got_a = {i: a.indices(i).tolist() for i in order}
    got_b = {i: b.indices(i).tolist() for i in reversed(order)}
    assert got_a == got_b
    fresh = D.BatchSampler(23, 5, seed=7, stream=0)
    assert fresh.indices(17).tolist() == got_a[17]
    assert D.BatchSampler(23, 5, seed=8, stream=0).indices(0).tolist() != got_a[0]
    assert D.BatchSampler(23, 5, seed=7, stream=1).indices(0).tolist() != got_a[0]
    assert a.indices(0).dtype == torch.int64


@pytest.mark.parametrize("size,batch", [(10, 5), (10, 3), (7, 4), (5, 8)])
def test_batch_sampler_covers_each_index_once_per_pass(size, batch):
    sampler = D.BatchSampler(size, batch, seed=0, stream=0)
    passes = 4
    n_iter = -(-passes * size // batch)
    stream = torch.cat([sampler.indices(i) for i in range(n_iter)]).tolist()
    assert all(len(sampler.indices(i)) == batch for i in range(3))
    chunks = [stream[p * size : (p + 1) * size] for p in range(passes)]
    for chunk in chunks:
        assert sorted(chunk) == list(range(size))
    assert len({tuple(c) for c in chunks}) > 1  # a fresh permutation per pass


# -- random_crop_flip --------------------------------------------------------------------------
def _find_window(src: np.ndarray, crop: np.ndarray) -> list[tuple[int, int, bool]]:
    """All (top, left, flipped) such that crop is that window of src (HWC), maybe mirrored."""
    hits = []
    h, w = src.shape[:2]
    s = crop.shape[0]
    for top in range(h - s + 1):
        for left in range(w - s + 1):
            window = src[top : top + s, left : left + s]
            if np.array_equal(window, crop):
                hits.append((top, left, False))
            if np.array_equal(window[:, ::-1], crop):
                hits.append((top, left, True))
    return hits


def test_random_crop_flip_gives_real_sub_windows_and_flips_half_the_time():
    rng = np.random.default_rng(0)
    sizes = torch.tensor([[8, 10], [9, 6], [6, 6]])  # (h, w), top-left aligned in an 9 x 10 cache
    images = torch.zeros((3, 3, 9, 10), dtype=torch.uint8)
    valid = []
    for i, (h, w) in enumerate(sizes.tolist()):
        arr = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)  # never 0: padding would show
        images[i, :, :h, :w] = torch.from_numpy(arr).permute(2, 0, 1)
        valid.append(arr)
    crop = 5
    draws = 600
    index = torch.arange(draws) % 3
    out = D.random_crop_flip(images, sizes, index, crop, torch.Generator().manual_seed(123))
    assert out.shape == (draws, 3, crop, crop) and out.dtype == torch.uint8
    flips, tops, lefts = 0, {0: set(), 1: set(), 2: set()}, {0: set(), 1: set(), 2: set()}
    for b in range(draws):
        i = int(index[b])
        hits = _find_window(valid[i], out[b].permute(1, 2, 0).numpy())
        assert len(hits) == 1, (b, hits)  # random content: exactly one window matches
        top, left, flipped = hits[0]
        flips += flipped
        tops[i].add(top)
        lefts[i].add(left)
    assert 0.4 < flips / draws < 0.6
    # Every offset of the valid region is reachable (5 x 5 choices over 600 draws).
    for i, (h, w) in enumerate(sizes.tolist()):
        assert tops[i] == set(range(h - crop + 1))
        assert lefts[i] == set(range(w - crop + 1))


def test_random_crop_flip_is_deterministic_per_generator():
    images = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    sizes = torch.full((4, 2), 12)
    index = torch.tensor([3, 1, 1, 0])
    a = D.random_crop_flip(images, sizes, index, 7, D.augmentation_generator(0, 5, 0))
    b = D.random_crop_flip(images, sizes, index, 7, D.augmentation_generator(0, 5, 0))
    c = D.random_crop_flip(images, sizes, index, 7, D.augmentation_generator(0, 6, 0))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_crop_flip_full_size_crop_is_the_image_or_its_mirror():
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    sizes = torch.full((2, 2), 6)
    out = D.random_crop_flip(images, sizes, torch.tensor([0, 1, 0, 1] * 10), 6, torch.Generator().manual_seed(0))
    for b in range(len(out)):
        src = images[b % 2]
        assert torch.equal(out[b], src) or torch.equal(out[b], src.flip(2))


def _position_image(h: int, w: int) -> torch.Tensor:
    """uint8 [3,h,w] whose pixel (r, c) holds r in channel 0 and c in channel 1: a crop says where it came from."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rows, cols, torch.full((h, w), 7)]).to(torch.uint8)


def test_without_flips_every_crop_is_an_unmirrored_window():
    images = _position_image(9, 9)[None].repeat(2, 1, 1, 1)
    out = D.random_crop_flip(images, torch.full((2, 2), 9), torch.zeros(200, dtype=torch.long), 5, torch.Generator().manual_seed(4), flip=False)
    cols = out[:, 1].long()
    assert (cols[:, :, 1:] - cols[:, :, :-1] == 1).all()  # left to right in every crop: never a mirror


def test_zoom_shows_windows_between_the_crop_and_the_crop_over_the_zoom_enlarged_by_nearest_neighbours():
    crop, zoom, draws = 12, 1.5, 400
    images = _position_image(20, 20)[None]
    out = D.random_crop_flip(images, torch.tensor([[20, 20]]), torch.zeros(draws, dtype=torch.long), crop,
                             torch.Generator().manual_seed(5), flip=False, zoom=zoom)
    assert out.shape == (draws, 3, crop, crop)
    windows = set()
    for b in range(draws):
        rows, cols = out[b, 0, :, 0].long(), out[b, 1, 0, :].long()
        assert torch.equal(out[b, 0], rows[:, None].expand(crop, crop)) and torch.equal(out[b, 1], cols[None, :].expand(crop, crop))
        window = int(rows[-1] - rows[0]) + 1  # the last output pixel samples the window's last row
        steps = torch.arange(crop)
        assert torch.equal(rows - rows[0], steps * window // crop), f"crop {b} is not a nearest-neighbour enlargement: {rows.tolist()}"
        assert torch.equal(cols - cols[0], steps * window // crop)  # the same window side across
        windows.add(window)
    assert min(windows) == round(crop / zoom) and max(windows) == crop  # the whole range of magnifications is drawn


def test_no_zoom_draws_nothing_more_so_earlier_runs_keep_their_batches():
    images = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    sizes, index = torch.full((4, 2), 12), torch.tensor([3, 1, 1, 0])
    generator = D.augmentation_generator(0, 5, 0)
    plain = D.random_crop_flip(images, sizes, index, 7, generator)
    after = torch.rand(1, generator=generator)
    generator = D.augmentation_generator(0, 5, 0)
    assert torch.equal(D.random_crop_flip(images, sizes, index, 7, generator, zoom=1.0), plain)
    assert torch.equal(torch.rand(1, generator=generator), after)


# -- unlabeled targets -------------------------------------------------------------------------
def _loose(root: Path, relative: str, seed: int = 0) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(path)


def test_a_flat_target_is_unlabeled_found_recursively_and_sorted(tmp_path):
    _write(tmp_path, "src", ["a", "b"])
    for name in ("cam/z.png", "cam/2026-11-01/b.png", "cam/2026-11-01/a.png", "cam/.hidden.png", "cam/.thumbs/x.png", "cam/notes.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            _loose(tmp_path, name)
    src, tgt = D.load_domains(tmp_path, "src", "cam")
    assert not tgt.labeled and src.labeled
    assert tgt.class_names == src.class_names  # K comes from the source
    assert [p.relative_to(tgt.root).as_posix() for p, _ in tgt.samples] == ["2026-11-01/a.png", "2026-11-01/b.png", "z.png"]
    assert set(tgt.labels.tolist()) == {D.UNLABELED}


def test_matching_class_folders_are_labels_and_ignore_keeps_the_same_order(tmp_path):
    _write(tmp_path, "src", ["a", "b", "c"])
    _write(tmp_path, "tgt", ["c", "a", "b"], per_class=2)
    _, labeled = D.load_domains(tmp_path, "src", "tgt")
    _, ignored = D.load_domains(tmp_path, "src", "tgt", ignore_target_labels=True)
    assert labeled.labeled and not ignored.labeled
    assert labeled.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p for p, _ in ignored.samples] == [p for p, _ in labeled.samples]  # same images, same order: the same run


def test_class_folders_beside_loose_images_or_other_folders_are_refused(tmp_path):
    _write(tmp_path, "src", ["a", "b"])
    _write(tmp_path, "tgt", ["a", "b"])
    _loose(tmp_path, "tgt/loose.png")
    msg = _usage_error(D.load_domains, tmp_path, "src", "tgt")
    assert "beside the class folders" in msg and "--target-labels ignore" in msg
    _, tgt = D.load_domains(tmp_path, "src", "tgt", ignore_target_labels=True)
    assert len(tgt.samples) == 5 and not tgt.labeled


def test_an_unlabeled_target_without_images(tmp_path):
    _write(tmp_path, "src", ["a"])
    (tmp_path / "cam" / "empty").mkdir(parents=True)
    msg = _usage_error(D.load_domains, tmp_path, "src", "cam")
    assert "cam" in msg and "no images" in msg


# -- held-out source split ---------------------------------------------------------------------
def test_split_is_stratified_deterministic_and_disjoint(tmp_path):
    _write(tmp_path, "src", ["a", "b", "c"], per_class=10)
    _write(tmp_path, "src", ["d"], per_class=1)
    _write(tmp_path, "src", ["e"], per_class=2)
    src = D.scan_domain(tmp_path, "src")
    train, val = D.split_source(src, 0.2, seed=4)
    again_train, again_val = D.split_source(src, 0.2, seed=4)
    assert val.samples == again_val.samples and train.samples == again_train.samples
    assert sorted(train.samples + val.samples) == sorted(src.samples) and not set(train.samples) & set(val.samples)
    held = np.bincount(val.labels, minlength=5).tolist()
    assert held == [2, 2, 2, 0, 1]  # 20 % of 10; a single image stays in training; at least one of two is held out
    assert list(val.samples) == sorted(val.samples, key=lambda s: (s[1], s[0].parts))  # sorted order kept
    _, other = D.split_source(src, 0.2, seed=5)
    assert other.samples != val.samples  # a function of the seed
    train_all, none = D.split_source(src, 0.0, seed=4)
    assert train_all.samples == src.samples and none.samples == ()
    with pytest.raises(UsageError):
        D.split_source(src, 1.0, seed=0)
