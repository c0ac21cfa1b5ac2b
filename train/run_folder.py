"""A run folder's identity: a new run never writes into another run's folder, and ``--resume``
only continues a checkpoint written by the same run, on the same classes (DESIGN.md section 2).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from symnets_deploy.atomic import atomic_write, exclusive
from symnets_deploy.errors import UsageError
from symnets_deploy.run_files import CHECKPOINT, CONFIG, FILES, KEPT_DIR, REPORT_DIR, REPORT_FILES, SPLIT, TRAIN_LOCK
from symnets_deploy.run_reading import read_metrics
from symnets_deploy.train.config import DEFAULTS, LEGACY, SPEED_ONLY, same_setting

#: Config fields that may differ between a checkpoint and the run continuing it.
_MAY_CHANGE = {"out", "iterations", *SPEED_ONLY}


def claim_new_run(out: Path, *, overwrite: bool = False) -> str:
    """A fresh run id for ``out``, after making sure the folder holds no other run.

    A run is recognised by our own record only: a ``config.json`` with a ``run_id`` (or a ``last.pt``).
    ``overwrite`` then removes exactly the files a run writes, by name, and the sub-folders we made
    when nothing else is left in them; a user's own files stay. A start that never reached its first
    checkpoint (killed while decoding, say) is no run to continue: it is replaced without ``overwrite``.

    Raises:
        UsageError: ``out`` holds a run and ``overwrite`` is off (the message names the three ways
            out), or a ``config.json`` that is not a run's (never replaced).
    """
    held = [name for name in (CONFIG, CHECKPOINT) if (out / name).exists()]
    if not held:
        return uuid.uuid4().hex[:12]
    if (out / CONFIG).exists() and not is_run_config(out / CONFIG):
        raise UsageError(f"{out}: holds a config.json that is not a symnets run's; choose another --out (nothing was changed)")
    if not overwrite and not unfinished_start(out):
        raise UsageError(
            f"{out}: holds another run ({', '.join(held)}); continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    remove_run_files(out)
    return uuid.uuid4().hex[:12]


def unfinished_start(out: Path) -> bool:
    """Whether ``out`` holds a run that stopped before its first checkpoint (nothing to resume)."""
    return is_run_config(out / CONFIG) and not (out / CHECKPOINT).exists()


def remove_run_files(out: Path) -> None:
    """Delete every file a run writes in ``out``, by name (and the sub-folders we made, once empty of ours)."""
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    _remove_ours(out / REPORT_DIR, lambda p: p.name in REPORT_FILES)
    _remove_ours(out / KEPT_DIR, lambda p: KEPT_NAME.match(p.name) is not None)


def undo_start(out: Path, *, claimed: bool, was_empty: bool) -> None:
    """Leave ``out`` as it was after a new run failed or was interrupted before its first checkpoint.

    Args:
        claimed: the start had claimed the folder (``claim_new_run``), so the run files in it are its own.
        was_empty: the folder was empty or absent when the start began; it goes if nothing else came in,
            and a ``latest`` link to it points back to the newest run left beside it (or goes).
    """
    if claimed:
        remove_run_files(out)
    if not was_empty:
        return
    try:
        out.rmdir()
    except OSError:
        return  # something else is in it
    link = out.parent / "latest"
    if link.is_symlink() and os.path.normpath(out.parent / os.readlink(link)) == os.path.normpath(out):
        runs = sorted(p for p in out.parent.iterdir() if not p.is_symlink() and (p / CHECKPOINT).is_file())
        if not (runs and point_latest(runs[-1])):
            link.unlink(missing_ok=True)


def run_lock(out: Path, main: bool):
    """Held by the process that trains in ``out`` (rank 0 of several): a second writer is refused, a dead one's
    lock is taken over. The other ranks hold nothing; they follow rank 0."""
    if not main:
        return contextlib.nullcontext()
    return exclusive(out, "training in", lock=out / TRAIN_LOCK)


#: Names of kept checkpoints (``kept_path``).
KEPT_NAME = re.compile(r"^iter_\d{6,}\.pt$")


def is_run_config(path: Path) -> bool:
    """Whether ``path`` is a ``config.json`` written by ``symnets train`` (a JSON object with a run id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("run_id"), str) and "source" in data


def _remove_ours(folder: Path, ours) -> None:
    """Delete the files of ``folder`` that ``ours`` recognises, then the folder if that left it empty."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink() and ours(path):
            path.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass  # something of the user's is still in it


def check_resume(out: Path, ckpt: dict[str, Any], config: dict[str, Any], class_names: Sequence[str]) -> str:
    """The run id to continue, after checking that ``last.pt`` belongs to this run and data.

    Args:
        out: the run folder (its ``config.json`` names the run).
        ckpt: the loaded ``last.pt``.
        config: the config the run continues with (``TrainConfig.to_dict()``).
        class_names: the class folders found in the data now.

    Raises:
        UsageError: the checkpoint was written by another run or config, or the class folders
            changed since (each difference named).
    """
    saved_id = json.loads((out / CONFIG).read_text(encoding="utf-8")).get("run_id")
    if saved_id and ckpt.get("run_id") and saved_id != ckpt["run_id"]:
        raise UsageError(f"{out}: last.pt was written by run {ckpt['run_id']} but config.json is run {saved_id}'s; start a new run with another --out")
    saved_config = {**DEFAULTS, **LEGACY, **ckpt["config"]}  # a field added since the checkpoint was written: what its version did
    differences = [
        f"{name} {saved_config.get(name)!r} in last.pt, {value!r} now"
        for name, value in config.items() if name not in _MAY_CHANGE and not same_setting(name, value, saved_config.get(name))
    ]
    if differences:
        raise UsageError(f"{out}: last.pt belongs to another configuration ({'; '.join(differences)}); start a new run with another --out")
    saved = list(ckpt["card"]["class_names"])
    if list(class_names) != saved:
        missing, new = sorted(set(saved) - set(class_names)), sorted(set(class_names) - set(saved))
        detail = "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "", f"new: {', '.join(new)}" if new else "") if part) or "order changed"
        raise UsageError(f"{config['data_root']}: the class folders differ from the checkpoint's ({detail}); resume needs the data it was trained on")
    return saved_id or ckpt.get("run_id") or uuid.uuid4().hex[:12]


def new_run_folder(root: Path = Path("runs")) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken): the default ``--out`` of a new run."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def make_run_folder(run: Path) -> Path:
    """Create a new default run folder and link ``runs/latest`` to it, so that ``--resume runs/latest``
    finds the run even when it is interrupted before it ends."""
    run.mkdir(parents=True)
    point_latest(run)
    return run


def point_latest(run: Path) -> Path | None:
    """Make ``<runs>/latest`` a symlink to ``run`` (atomically); a real folder named latest is left alone.

    Returns:
        The link, or None where it could not be made (no symlinks, or a real ``latest`` folder).
    """
    link = run.parent / "latest"
    if link.exists() and not link.is_symlink():
        return None
    tmp = run.parent / f".latest.{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(run.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return link


def kept_path(run: Path, iteration: int) -> Path:
    """``RUN/checkpoints/iter_000500.pt``: the weights kept at ``iteration`` (``--keep-every``)."""
    return Path(run) / KEPT_DIR / f"iter_{iteration:06d}.pt"


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Indented JSON, written atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def check_split(run: Path, source, held_out, *, record: bool = False) -> None:
    """Record the held-out source images of a new run, or check that a resumed run still has the same split.

    Args:
        source: the whole source ``Domain``; held_out: its held-out part (``data.split_source``).
        record: write ``source_split.json`` (a new run) instead of checking it.

    Raises:
        UsageError: the source folder changed since the run started, so the held-out images differ.
    """
    held = [path.relative_to(source.root).as_posix() for path, _ in held_out.samples]
    path = Path(run) / SPLIT
    if record:
        write_json(path, {"source": str(source.root), "source_images": len(source.samples), "held_out": held})
        return
    if not path.is_file():  # a run made before the split existed held nothing out
        if held:
            raise UsageError(f"{run}: no {SPLIT}; the run holds no source images out, but its config asks for some")
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("held_out") != held or saved.get("source_images") != len(source.samples):
        raise UsageError(
            f"{source.root}: the source images changed since the run started ({saved.get('source_images')} then, {len(source.samples)} now), "
            "so its held-out split differs; resume needs the data it was trained on"
        )


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, truncated to the resume point on resume.

    ``evaluations`` holds the evaluation records (those with ``label_free``) written so far,
    those before the resume point included, for the end-of-run warnings.
    """

    def __init__(self, path: Optional[Path], resume_at: int) -> None:
        self.path = path
        self.evaluations: list[dict[str, Any]] = []
        if path is None:
            return
        # a line torn by a kill in the middle of its write, or garbage, is dropped with the records past the resume point
        kept = [r for r in read_metrics(path).records if r["iteration"] <= resume_at] if resume_at and path.exists() else []
        self.evaluations = [r for r in kept if "label_free" in r]
        atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8"))

    @classmethod
    def discard(cls) -> "MetricsLog":
        """The log of ranks other than 0: they compute the same records, rank 0 writes them."""
        return cls(None, 0)

    def write(self, record: dict[str, Any]) -> None:
        if "label_free" in record:
            self.evaluations.append(record)
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
