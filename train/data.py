"""Training data: domain folders, decoded-once image tensors, and stateless batch sampling.

Each domain is decoded once into a uint8 tensor at the resize size (shorter side R), so an
iteration only gathers a random S x S crop (and a flip) per image: the same code runs on a
CPU tensor or on one resident on the GPU. Sampling is a pure function of (seed, iteration),
which makes resume exact without saving sampler state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from symnets_deploy.errors import ImageError, UsageError
from symnets_deploy.host import usable_cpus
from symnets_deploy.inputs import scan_folder
from symnets_deploy.preprocess import IMAGE_EXTENSIONS, PreprocessConfig, open_image, preprocess_image, resize_shorter
from symnets_deploy.train.presets import PRESETS

#: Longer sides beyond this multiple of the resize side are center-cropped in the cache,
#: bounding memory for panoramas while keeping every crop position of ordinary photos.
MAX_ASPECT = 2.0


#: The label of every image of an unlabeled domain.
UNLABELED = -1


@dataclass(frozen=True)
class Domain:
    """One domain on disk: its folder, class list and (path, label) samples in sorted order.

    An unlabeled domain (a target without class folders, or with ``--target-labels ignore``) has
    the source's class list and ``UNLABELED`` as every label.
    """

    name: str
    root: Path
    class_names: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]
    labeled: bool = True

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def subset(self, index: Sequence[int]) -> "Domain":
        """The same domain restricted to ``samples[i]`` for each ``i`` in ``index`` (in that order)."""
        return replace(self, samples=tuple(self.samples[i] for i in index))


def domain_dir(data_root: Path, domain: str) -> Path:
    """``root/<domain>``, or ``root/<domain>/images`` as in the Office-31 archive."""
    path = Path(data_root) / domain
    nested = path / "images"
    return nested if nested.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()) and _has_class_dirs(nested) else path


def _has_class_dirs(path: Path) -> bool:
    return any(p.is_dir() for p in path.iterdir())


def scan_domain(data_root: Path, name: str) -> Domain:
    """List a domain's class folders (sorted) and images (sorted per class).

    Raises:
        UsageError: the folder is missing or holds no class folder with images.
    """
    root = domain_dir(data_root, name)
    if not root.is_dir():
        available = sorted(p.name for p in Path(data_root).iterdir() if p.is_dir()) if Path(data_root).is_dir() else []
        raise UsageError(f"{root}: domain folder not found (domains under {data_root}: {', '.join(available) or 'none'})")
    class_names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    samples = [(path, label) for label, cls in enumerate(class_names) for path in scan_folder(root / cls)]
    if not samples:
        raise UsageError(f"{root}: domain '{name}' has no images in <class>/<image> folders")
    return Domain(name, root, class_names, tuple(samples))


def scan_target(data_root: Path, name: str, class_names: Sequence[str], *, ignore_labels: bool = False, source_name: str = "source") -> Domain:
    """The target domain: labeled when its class folders are the source's, else unlabeled.

    Unlabeled means every image under the folder, found recursively (hidden files skipped,
    sorted by path): loose images, or sub-folders that are not classes (dates, cameras). Class
    folders that are the source's are labels, used for evaluation only; ``ignore_labels`` treats
    them as plain sub-folders. Labeled and ignored scans list the images in the same order.

    Raises:
        UsageError: the folder is missing or holds no image; or some sub-folders are source
            classes and others are not, or images lie beside class folders (another label set).
    """
    root = domain_dir(data_root, name)
    if not root.is_dir():
        available = sorted(p.name for p in Path(data_root).iterdir() if p.is_dir()) if Path(data_root).is_dir() else []
        raise UsageError(f"{root}: domain folder not found (domains under {data_root}: {', '.join(available) or 'none'})")
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    classes = folders & set(class_names)
    if classes and not ignore_labels:
        loose = scan_folder(root, recursive=False)
        if folders != set(class_names) or loose:
            detail = _difference(tuple(class_names), tuple(sorted(folders)), source_name, name) or f"{len(loose)} images beside the class folders"
            raise UsageError(
                f"{root}: target sub-folders are partly the source's classes ({detail}); give it the source's class folders exactly, "
                "or --target-labels ignore to use its images without labels"
            )
        return scan_domain(data_root, name)
    samples = tuple((path, UNLABELED) for path in scan_folder(root))
    if not samples:
        raise UsageError(f"{root}: domain '{name}' has no images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return Domain(name, root, tuple(class_names), samples, labeled=False)


def load_domains(data_root: Path, source: str, target: str, preset: Optional[str] = None, *, ignore_target_labels: bool = False) -> tuple[Domain, Domain]:
    """Scan the labeled source and the target (labeled or not; see ``scan_target``), checking a preset.

    Raises:
        UsageError: missing/empty domain, a target labeled with other classes, or a preset
            mismatch, with the difference spelled out.
    """
    if not Path(data_root).is_dir():
        raise UsageError(f"{data_root}: data root not found")
    if source == target:
        raise UsageError(f"source and target are the same domain ({source!r})")
    spec = None
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown dataset preset {preset!r} (valid: {', '.join(sorted(PRESETS))})")
        spec = PRESETS[preset]
        for d in (source, target):
            if d not in spec.domains:
                raise UsageError(f"domain {d!r} is not part of {preset} (domains: {', '.join(spec.domains)})")
    src = scan_domain(data_root, source)
    tgt = scan_target(data_root, target, src.class_names, ignore_labels=ignore_target_labels, source_name=source)
    if spec is not None and spec.classes is not None and set(src.class_names) != set(spec.classes):
        raise UsageError(f"{src.root}: class folders do not match preset {preset}: " + _difference(src.class_names, spec.classes, source, preset))
    return src, tgt


def split_source(domain: Domain, fraction: float, seed: int) -> tuple[Domain, Domain]:
    """``(train, val)``: a stratified held-out split of a labeled domain, a function of the seed only.

    Each class with n >= 2 images gives round(fraction * n) of them, at least 1 and at most n - 1,
    to ``val``; a class of one image stays in ``train``. ``fraction`` 0 keeps every image for
    training (the paper's protocol). Both parts keep the sorted sample order.
    """
    if not 0 <= fraction < 1:
        raise UsageError(f"--source-val must be in [0, 1), got {fraction}")
    labels = domain.labels
    held: list[int] = []
    if fraction > 0:
        for k in range(len(domain.class_names)):
            members = np.flatnonzero(labels == k)
            if len(members) < 2:
                continue
            take = min(len(members) - 1, max(1, round(fraction * len(members))))
            rng = np.random.default_rng([seed, 0x5EED, k])  # per class: adding a class leaves the others' split alone
            held.extend(members[rng.permutation(len(members))[:take]].tolist())
    val = sorted(held)
    keep = sorted(set(range(len(domain.samples))) - set(val))
    return domain.subset(keep), domain.subset(val)


def _difference(a: Sequence[str], b: Sequence[str], name_a: str, name_b: str) -> str:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    parts = [f"only in {name_a}: {', '.join(only_a)}" if only_a else "", f"only in {name_b}: {', '.join(only_b)}" if only_b else ""]
    return "; ".join(p for p in parts if p)


def train_resize(image_size: int) -> int:
    """Resize side for a crop of ``image_size``: round(S * 256 / 224)."""
    return round(image_size * 256 / 224)


@dataclass
class DecodedDomain:
    """A domain decoded once: uint8 images [N,3,Hmax,Wmax] (top-left aligned), their (h, w), labels."""

    images: torch.Tensor
    sizes: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "DecodedDomain":
        """Images and labels to ``device``; sizes stay on the CPU (read per batch without a sync)."""
        return DecodedDomain(self.images.to(device), self.sizes, self.labels.to(device))


def _decode_resized(path: Path, resize: int) -> np.ndarray:
    try:
        img = resize_shorter(open_image(path, draft_size=resize), resize)
    except ImageError as exc:
        raise UsageError(f"cannot train on {exc}") from None
    arr = np.array(img, dtype=np.uint8)
    limit = int(resize * MAX_ASPECT)
    h, w = arr.shape[:2]
    top, left = max(0, (h - limit) // 2), max(0, (w - limit) // 2)
    return arr[top : top + limit, left : left + limit]


def decode_domain(domain: Domain, resize: int, threads: int = 0) -> DecodedDomain:
    """Decode every image of ``domain`` with the shorter side resized to ``resize``.

    Args:
        threads: decoder threads (0: one per CPU core; Pillow releases the GIL while decoding).
    """
    with ThreadPoolExecutor(max_workers=threads or usable_cpus()) as pool:
        arrays = list(pool.map(lambda s: _decode_resized(s[0], resize), domain.samples))
    hmax, wmax = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
    images = torch.zeros((len(arrays), 3, hmax, wmax), dtype=torch.uint8)
    for i, arr in enumerate(arrays):
        images[i, :, : arr.shape[0], : arr.shape[1]] = torch.from_numpy(arr).permute(2, 0, 1)
    sizes = torch.tensor([a.shape[:2] for a in arrays], dtype=torch.int64)
    return DecodedDomain(images, sizes, torch.from_numpy(domain.labels))


def decode_eval(domain: Domain, cfg: PreprocessConfig, threads: int = 0) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The whole domain through the runtime's evaluation preprocessing: uint8 [N,3,S,S], labels [N] (None: unlabeled)."""
    workers = threads or usable_cpus()

    def one(sample: tuple[Path, int]) -> np.ndarray:
        try:
            return preprocess_image(sample[0], cfg)
        except ImageError as exc:
            raise UsageError(f"cannot evaluate on {exc}") from None

    if not domain.samples:
        return torch.zeros((0, 3, cfg.crop, cfg.crop), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        crops = list(pool.map(one, domain.samples))
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(domain.labels) if domain.labeled else None


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + int(k)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class BatchSampler:
    """Independent shuffled streams of indices for one domain, as a pure function of the step.

    Each pass over the domain is a fresh permutation (seeded by seed, stream, pass); the batch
    of iteration i is positions [i*B, (i+1)*B) of the concatenated passes.
    """

    def __init__(self, size: int, batch_size: int, seed: int, stream: int) -> None:
        self.size, self.batch_size, self.seed, self.stream = size, batch_size, seed, stream
        self._cache: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[epoch] = torch.randperm(self.size, generator=_generator(self.seed, self.stream, epoch))
        return self._cache[epoch]

    def indices(self, iteration: int) -> torch.Tensor:
        """[B] int64 CPU indices of iteration ``iteration``."""
        positions = torch.arange(iteration * self.batch_size, (iteration + 1) * self.batch_size)
        epochs, offsets = positions // self.size, positions % self.size
        out = torch.empty_like(positions)
        for epoch in torch.unique(epochs).tolist():
            mask = epochs == epoch
            out[mask] = self._permutation(epoch)[offsets[mask]]
        return out


def random_crop_flip(
    images: torch.Tensor, sizes: torch.Tensor, index: torch.Tensor, crop: int, generator: torch.Generator, part: slice = slice(None),
    *, flip: bool = True, zoom: float = 1.0,
) -> torch.Tensor:
    """Training augmentation on a decoded domain: a random crop x crop window, a coin-flip mirror and a random zoom-in.

    Args:
        images: uint8 [N,3,Hmax,Wmax] on any device (images top-left aligned).
        sizes: [N,2] valid (h, w) of each image on the CPU; every side must be >= crop.
        index: [B] images to take (CPU, int64).
        crop: output side S.
        generator: CPU generator for offsets, flips and zooms (so results do not depend on the device).
        part: the rows of the batch to make (one rank's share); the draws are those of the whole
            batch, so the shares of all ranks together are the single-process batch.
        flip: mirror half of the crops (off for glyphs such as digits, whose mirror images are other glyphs).
        zoom: largest magnification: each crop shows a window of side S / z, z uniform in [1, zoom], enlarged
            to S by nearest-neighbour sampling (so digits that fill their frame in another domain are seen
            in training); 1 draws nothing and keeps the plain crop.

    Returns:
        uint8 [len(index[part]),3,S,S] on ``images``' device, channels-last strided (the gather's natural layout).
    """
    device = images.device
    u = torch.rand((3, len(index)), generator=generator)[:, part]
    window = torch.full((len(index),), crop, dtype=torch.long)[part]
    if zoom > 1:  # drawn after the crop's draws: runs without a zoom keep their exact batches
        z = 1 + torch.rand(len(index), generator=generator)[part] * (zoom - 1)
        window = torch.clamp((crop / z).round().long(), 1, crop)
    index = index[part]
    h, w = sizes[index].unbind(1)
    top = (u[0] * (h - window + 1)).long()
    left = (u[1] * (w - window + 1)).long()
    steps = torch.arange(crop)
    # Output pixel i samples window pixel floor(i * window / S): the plain crop when window == S.
    offsets = (steps[None, :] * window[:, None]) // crop
    rows = top[:, None] + offsets
    cols = left[:, None] + offsets
    if flip:
        cols = torch.where((u[2] < 0.5)[:, None], cols.flip(1), cols)
    idx, rows, cols = (upload(t, device) for t in (index, rows, cols))
    # Advanced indexing with a slice in the middle yields [B, S, S, 3].
    out = images[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device`` without stalling the GPU.

    A copy from pageable memory makes CUDA wait for the stream to drain, which would serialise
    every iteration's Python work with the previous iteration's kernels; from pinned memory the
    copy is queued like a kernel.
    """
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def augmentation_generator(seed: int, iteration: int, stream: int) -> torch.Generator:
    """The generator for one iteration's crops and flips of one domain."""
    return _generator(seed, 1000 + stream, iteration)
