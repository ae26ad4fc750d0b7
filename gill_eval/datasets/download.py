"""Image downloads through img2dataset: resumable runs, conversion to image shards, coverage, retries.

img2dataset does the downloading (threads, processes or Spark, resizing, hashing). gill-eval gives it a
Parquet URL list with its own stable key per row (``gkey``), lets it write Parquet shards into
``download/raw/``, and converts each finished shard (img2dataset writes ``{shard}_stats.json`` last) into
an ``images/`` shard with the common schema, sorted by key, the failure reason classified. Resume is
img2dataset's ``incremental`` mode (same input, same shard size) plus the store's done markers for the
conversion. ``retry_failed`` downloads the rows whose status is not 'success' again into
``download/retry-NNN/`` and merges the new results in, so every key stays exactly once.

Keys must be unique and sorted in the URL list: image shards are then sorted key ranges, which lets a
retry merge stream through the shards in order.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gill_eval.console import err_console, info, is_verbose, make_progress, track
from gill_eval.datasets.archive import MAX_IMAGE_PIXELS
from gill_eval.datasets.image_store import IMG2DATASET, STORE_MODES, store_images
from gill_eval.datasets.img2dataset_run import PARENT_ENV, ROW_TICKS_ENV, STORE_ENV
from gill_eval.datasets.output import IMAGE_SCHEMA
from gill_eval.errors import ConfigError, GillEvalError, InputError
from gill_eval.store import UnitOfWork, WorkPlan, atomic_write_json, iter_batches, list_shards, write_shard
from gill_eval.store.shards import shard_name

RESIZE_MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")
DISTRIBUTORS = ("multiprocessing", "pyspark")
KEY_COLUMN = "gkey"
AUTO = "auto"
LOG_NAME = "img2dataset.log"  # img2dataset's messages, beside its raw/ folder (docs/troubleshooting.md)
ROW_TICKS_NAME = ".img2dataset-rows"  # one byte per finished row while img2dataset runs
LOG_TAIL_LINES = 20  # shown when img2dataset fails
POLL_S = 0.5


@dataclass(frozen=True)
class DownloadOptions:
    """The img2dataset options users need; ``content()`` are those that change what the shards hold."""

    processes: int = 1
    threads: int = 64
    image_size: int = 256
    resize_mode: str = "border"
    timeout: float = 10.0
    retries: int = 0
    distributor: str = "multiprocessing"
    shard_size: int = 10_000
    store: str = AUTO  # what is stored per image: image_store.STORE_MODES, or the dataset's default
    spark_master: str | None = None  # pyspark only: the cluster's master URL (default local[processes])

    def __post_init__(self) -> None:
        if self.store != AUTO and self.store not in STORE_MODES:
            raise ConfigError(f"--store {self.store!r}: choose one of {AUTO}, {', '.join(STORE_MODES)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"--resize-mode {self.resize_mode!r}: choose one of {', '.join(RESIZE_MODES)}")
        if self.distributor not in DISTRIBUTORS:
            raise ConfigError(f"--distributor {self.distributor!r}: choose one of {', '.join(DISTRIBUTORS)}")
        if self.distributor == "pyspark" and importlib.util.find_spec("pyspark") is None:
            raise ConfigError("--distributor pyspark: pyspark is not installed (pip install 'gill-eval[spark]')")
        if self.spark_master is not None and self.distributor != "pyspark":
            raise ConfigError(f"--spark-master {self.spark_master!r} needs --distributor pyspark")
        for name in ("processes", "threads", "image_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.timeout <= 0 or self.retries < 0:
            raise ConfigError("--timeout must be positive and --retries non-negative")

    def with_default_store(self, store: str) -> DownloadOptions:
        """These options with ``--store auto`` replaced by the dataset's default ``store``."""
        return replace(self, store=store) if self.store == AUTO else self

    def content(self) -> dict[str, Any]:
        """Options that determine the shards' content (a resume must use the same ones)."""
        if self.store == "gill-224":  # a fixed size: --image-size and --resize-mode play no part
            return {"store": self.store, "shard_size": self.shard_size}
        if self.store == "center-crop":  # Pillow's crop and resize: --resize-mode plays no part
            return {"store": self.store, "image_size": self.image_size, "shard_size": self.shard_size}
        return {"store": self.store, "image_size": self.image_size, "resize_mode": self.resize_mode,
                "shard_size": self.shard_size}

    def record(self) -> dict[str, Any]:
        keep = self.content()
        return {k: v for k, v in asdict(self).items() if k in keep or k not in ("image_size", "resize_mode")}


_HTTP = re.compile(r"http error (\d{3})")
_FIXED_REASONS = (
    ("timed out", "timeout"),
    ("image decoding error", "decode_error"),
    ("x-robots-tag", "disallowed_by_robots"),
    ("image area too large", "too_many_pixels"),
    ("image too small", "too_small"),
    ("aspect ratio too large", "aspect_ratio"),
    ("hash mismatch", "hash_mismatch"),
    ("urlopen error", "connection_error"),
    ("connection", "connection_error"),
)


def classify(status: str | None, error_message: str | None) -> str:
    """img2dataset's status and error message as one failure reason ('success' when it worked)."""
    if status == "success":
        return "success"
    message = (error_message or "").lower()
    if match := _HTTP.search(message):
        return f"http_{match.group(1)}"
    for needle, reason in _FIXED_REASONS:
        if needle in message:
            return reason
    return "resize_error" if status == "failed_to_resize" else "download_error"


def _stats_path(raw: Path, index: int) -> Path:
    return raw / f"{index:05d}_stats.json"


def _n_shards(n_rows: int, shard_size: int) -> int:
    return -(-n_rows // shard_size)


@dataclass
class _RowsDone:
    """What img2dataset has finished, read while it runs: whole shards from its ``NNNNN_stats.json`` files
    (written when a shard ends, possibly half-written when read), and row by row from the ticks file to
    which ``img2dataset_run``'s pool workers append one byte per finished row (multiprocessing only: Spark's
    executors may run on other machines, and a Python worker of Spark shares its descriptors with Spark's
    own protocol)."""

    raw: Path
    ticks: Path | None
    total: int
    counted: dict[str, int] = field(default_factory=dict)
    before: int = 0  # rows of the shards finished by earlier runs

    def in_shards(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.raw):
                if entry.name.endswith("_stats.json") and entry.name not in self.counted:
                    with contextlib.suppress(OSError, ValueError, KeyError):  # half-written: the next poll reads it
                        self.counted[entry.name] = int(json.loads(Path(entry.path).read_bytes())["count"])
        return sum(self.counted.values())

    def now(self) -> int:
        ticked = self.ticks.stat().st_size if self.ticks is not None and self.ticks.is_file() else 0
        return min(self.total, max(self.in_shards(), self.before + ticked))


def _log_tail(log: Path, start: int, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines written to ``log`` after offset ``start`` (this run's part)."""
    with log.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(start, size - 64 * 1024))
        return f.read().decode("utf-8", errors="replace").splitlines()[-lines:]


def _run_logged(command: list[str], env: dict[str, str], log: Path, rows: _RowsDone) -> tuple[int, int]:
    """Run img2dataset with its stdout and stderr appended to ``log`` under a header line, while gill-eval
    shows its own progress bar; returns the exit status and the offset in ``log`` where this run starts."""
    rows.before = rows.in_shards()
    env = {**env, "PYTHONUNBUFFERED": "1"}  # a live log, complete if killed
    if rows.ticks is not None:
        rows.ticks.unlink(missing_ok=True)
        env[ROW_TICKS_ENV] = str(rows.ticks)
    with log.open("ab") as out, make_progress() as progress:
        start = out.tell()
        out.write(f"=== {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC: {shlex.join(command)}\n".encode())
        out.flush()
        task = progress.add_task("downloading images", total=rows.total, completed=rows.before)
        try:
            returncode = run_in_own_group(command, env, out, lambda: progress.update(task, completed=rows.now()))
            progress.update(task, completed=rows.now())
        finally:
            if rows.ticks is not None:
                rows.ticks.unlink(missing_ok=True)
    return returncode, start


def _img2dataset_command(input_path: Path, raw: Path, options: DownloadOptions) -> list[str]:
    kwargs = {
        "url_list": str(input_path),
        "input_format": "parquet",
        "url_col": "url",
        "save_additional_columns": [KEY_COLUMN],
        "output_format": "parquet",
        "output_folder": str(raw),
        "processes_count": options.processes,
        "thread_count": options.threads,
        "image_size": options.image_size,
        "resize_mode": options.resize_mode,
        "timeout": options.timeout,  # urllib takes float seconds
        "retries": options.retries,
        "distributor": options.distributor,
        "number_sample_per_shard": options.shard_size,
        "incremental_mode": "incremental",
        "max_image_area": MAX_IMAGE_PIXELS,
        "extract_exif": False,
        "compute_hash": "sha256",
        "enable_wandb": False,
    }
    if options.store != IMG2DATASET:  # the original bytes, untouched: image_store decodes them as the protocol does
        kwargs.update(resize_mode="no", disable_all_reencoding=True)
    command = [sys.executable, "-m", "gill_eval.datasets.img2dataset_run", json.dumps(kwargs)]
    if options.distributor == "pyspark":  # the child starts the Spark session img2dataset then uses
        command.append(options.spark_master or f"local[{options.processes}]")
    return command


def _run_img2dataset(input_path: Path, raw: Path, n_rows: int, options: DownloadOptions) -> None:
    n_shards = _n_shards(n_rows, options.shard_size)
    if all(_stats_path(raw, i).is_file() for i in range(n_shards)):
        return
    done = sum(_stats_path(raw, i).is_file() for i in range(n_shards))
    log = raw.parent / LOG_NAME  # beside raw/: img2dataset owns raw/ and reads what it finds there
    info(f"img2dataset: {n_shards - done} of {n_shards} shard(s) to download into {raw}"
         + ("" if is_verbose() else f" (its messages: {log})"))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # albumentations would check PyPI on import
    if options.store != IMG2DATASET:  # img2dataset's workers store what the mode stores (img2dataset_run)
        env[STORE_ENV] = f"{options.store}:{options.image_size}"
    command = _img2dataset_command(input_path, raw, options)
    if is_verbose():  # img2dataset's own messages on our stderr: stdout is the command's result (--json)
        returncode, start = run_in_own_group(command, env), 0
    else:
        raw.parent.mkdir(parents=True, exist_ok=True)
        ticks = raw.parent / ROW_TICKS_NAME if options.distributor == "multiprocessing" else None
        returncode, start = _run_logged(command, env, log, _RowsDone(raw, ticks, n_rows))
    missing = [i for i in range(n_shards) if not _stats_path(raw, i).is_file()]
    if returncode == 0 and not missing:
        return
    where = "see its messages above"
    if not is_verbose():  # nothing hidden on failure: img2dataset's last lines, then the one-line error
        for line in _log_tail(log, start):
            err_console.print(f"  | {line}", markup=False, highlight=False, soft_wrap=True)
        where = f"its last lines are above, all of its messages in {log}"
    if returncode != 0:
        raise GillEvalError(f"{raw}: img2dataset exited with status {returncode} ({where})")
    raise GillEvalError(
        f"{raw}: img2dataset did not finish {len(missing)} of {n_shards} shard(s) ({where}); "
        "rerun the same command to resume"
    )


def run_in_own_group(command: list[str], env: dict[str, str], log: IO[bytes] | None = None,
                     poll: Callable[[], None] | None = None) -> int:
    """Run ``command`` as the leader of a new process group and wait, calling ``poll`` every ``POLL_S``
    seconds; its stdout and stderr go to ``log``, or without one its stdout to our stderr (our stdout is the
    command's result). However this process leaves (exception, SIGTERM, Ctrl-C), the whole group
    (img2dataset and its pool workers) is killed with it. A ``kill -9`` of this process cannot run this:
    the child then notices and ends its group itself (``img2dataset_run``). See docs/reliability.md."""
    env = {**env, PARENT_ENV: str(os.getpid())}  # what the child's watchdog watches
    stdout, stderr = (2, None) if log is None else (log, subprocess.STDOUT)
    proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if poll is not None:
                    poll()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):  # the leader is not reaped yet: its group id is still its own
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _to_image_table(raw_table: pa.Table) -> pa.Table:
    statuses = raw_table.column("status").to_pylist()
    messages = raw_table.column("error_message").to_pylist()
    table = pa.table(
        {
            "key": raw_table.column(KEY_COLUMN).cast(pa.string()),
            "image": raw_table.column("jpg"),
            "status": pa.array([classify(s, m) for s, m in zip(statuses, messages)], pa.string()),
            "error_message": raw_table.column("error_message"),
            "width": raw_table.column("width"),
            "height": raw_table.column("height"),
            "original_width": raw_table.column("original_width"),
            "original_height": raw_table.column("original_height"),
            "sha256": raw_table.column("sha256"),
            "url": raw_table.column("url"),
        },
        schema=IMAGE_SCHEMA,
    )
    return table.sort_by("key")


def _holds_originals(table: pa.Table) -> bool:
    """Whether a converted raw shard's successes are original bytes rather than stored images: img2dataset's
    workers normally store them (``img2dataset_run.STORE_ENV``), but a raw shard left by an older gill-eval, or
    written by a Spark executor on another machine (without the parent's environment), holds the originals
    with no width."""
    ok = pc.equal(table.column("status"), "success")
    return bool(pc.any(pc.and_(ok, pc.is_null(table.column("width")))).as_py())


def _images_plan(images_dir: Path, n_shards: int) -> WorkPlan:
    return WorkPlan(images_dir, [UnitOfWork(f"{i:05d}", i) for i in range(n_shards)])


def _convert(raw: Path, plan: WorkPlan, pending: list[UnitOfWork], options: DownloadOptions) -> None:
    images_dir = plan.out_dir
    for unit in track(pending, "converting image shards"):
        source = raw / shard_name(unit.index)
        if not source.is_file():
            raise InputError(f"{source}: missing although its _stats.json exists; pass --overwrite to start again")
        stats = json.loads(_stats_path(raw, unit.index).read_text(encoding="utf-8"))
        table = _to_image_table(pq.read_table(source))
        if table.num_rows != stats["count"]:
            raise InputError(f"{source}: {table.num_rows} rows but its stats say {stats['count']}; pass --overwrite")
        if options.store != IMG2DATASET and _holds_originals(table):  # workers that did not store (see _holds_originals)
            table = store_images(table, options.store, options.image_size, workers=len(os.sched_getaffinity(0)))
        path = write_shard(table, images_dir / shard_name(unit.index))
        plan.mark_done(unit, {"rows": table.num_rows}, [path])
    for index in range(len(plan.units)):  # converted: the raw copy of the bytes is no longer needed
        (raw / shard_name(index)).unlink(missing_ok=True)


def download_images(urls: pa.Table, work_dir: Path, images_dir: Path, options: DownloadOptions) -> None:
    """Download ``urls`` (columns ``key``, ``url``) into ``images_dir``; resumes whatever is unfinished."""
    if options.store == AUTO:
        raise ValueError("resolve --store auto with DownloadOptions.with_default_store before downloading")
    keys = urls.column("key")
    if urls.num_rows > 1:
        if not pc.all(pc.less(keys.slice(0, urls.num_rows - 1), keys.slice(1))).as_py():
            raise ValueError("download keys must be unique and sorted")
    n_shards = _n_shards(urls.num_rows, options.shard_size)
    if n_shards == 0:
        return
    input_path = work_dir / "input.parquet"
    if not input_path.is_file():
        write_shard(pa.table({KEY_COLUMN: keys, "url": urls.column("url")}), input_path)
    raw = work_dir / "raw"
    plan = _images_plan(images_dir, n_shards)
    pending = plan.pending()  # also the shards found broken since they were converted
    for unit in pending:
        if not (raw / shard_name(unit.index)).is_file():  # its raw copy is gone: img2dataset downloads it again
            _stats_path(raw, unit.index).unlink(missing_ok=True)
    _run_img2dataset(input_path, raw, urls.num_rows, options)
    _convert(raw, plan, pending, options)


def _failed_rows(images_dir: Path) -> pa.Table:
    keys: list[str] = []
    urls: list[str] = []
    for batch in iter_batches(images_dir, columns=["key", "status", "url"]):
        for key, status, url in zip(*(c.to_pylist() for c in batch.columns)):
            if status != "success" and url is not None:
                keys.append(key)
                urls.append(url)
    return pa.table({"key": pa.array(keys, pa.string()), "url": pa.array(urls, pa.string())})


def _iter_retry_rows(retry_images: Path) -> Iterator[pa.Table]:
    for path in list_shards(retry_images):
        yield pq.read_table(path)


def _merge(images_dir: Path, retry_images: Path, attempt_dir: Path) -> int:
    """Replace the retried rows of each image shard by their new result; returns rows now 'success'."""
    shards = list_shards(images_dir)
    plan = WorkPlan(attempt_dir / "merge", [UnitOfWork(p.stem, i) for i, p in enumerate(shards)])
    images_plan = WorkPlan(images_dir, plan.units)
    pending = {u.uid for u in plan.pending()}
    retry_tables = _iter_retry_rows(retry_images)
    buffer = IMAGE_SCHEMA.empty_table()
    recovered = 0
    for unit, path in zip(plan.units, track(shards, "merging retried rows")):
        main = pq.read_table(path)
        last_key = main.column("key")[-1].as_py() if main.num_rows else ""
        while True:  # pull retry rows up to this shard's last key (both sides are sorted by key)
            if buffer.num_rows and buffer.column("key")[-1].as_py() > last_key:
                break
            nxt = next(retry_tables, None)
            if nxt is None:
                break
            buffer = pa.concat_tables([buffer, nxt])
        mine_mask = pc.less_equal(buffer.column("key"), last_key)
        mine, buffer = buffer.filter(mine_mask), buffer.filter(pc.invert(mine_mask))
        recovered += pc.sum(pc.equal(mine.column("status"), "success")).as_py() or 0
        if unit.uid not in pending or mine.num_rows == 0:
            continue
        replaced = pc.is_in(main.column("key"), value_set=mine.column("key"))
        merged = pa.concat_tables([main.filter(pc.invert(replaced)), mine]).sort_by("key")
        if merged.num_rows != main.num_rows or pc.sum(replaced).as_py() != mine.num_rows:
            raise InputError(f"{path}: retried rows do not match this shard's keys; pass --overwrite to start again")
        write_shard(merged, path)
        images_plan.mark_done(unit, {"rows": merged.num_rows}, [path])  # the image shard's record follows it
        plan.mark_done(unit, {"replaced": mine.num_rows})
    if buffer.num_rows:
        raise InputError(f"{retry_images}: {buffer.num_rows} retried row(s) have no place in {images_dir}")
    return recovered


def retry_failed(work_dir: Path, images_dir: Path, options: DownloadOptions) -> dict[str, Any]:
    """Download every row whose status is not 'success' again and merge the results in.

    Each attempt lives in ``download/retry-NNN/``; an interrupted attempt is resumed by the next call.
    """
    attempts = sorted(p for p in work_dir.glob("retry-*") if p.is_dir())
    unfinished = attempts and not (attempts[-1] / "_complete.json").is_file()
    if unfinished and (attempts[-1] / "input.parquet").is_file():
        attempt = attempts[-1]
        failed = pq.read_table(attempt / "input.parquet").rename_columns(["key", "url"])
    else:
        attempt = attempts[-1] if unfinished else work_dir / f"retry-{len(attempts) + 1:03d}"
        failed = _failed_rows(images_dir)
        if failed.num_rows == 0:
            return {"attempt": None, "retried": 0, "recovered": 0}
    info(f"retrying {failed.num_rows} failed download(s) in {attempt}")
    download_images(failed, attempt, attempt / "images", options)
    recovered = _merge(images_dir, attempt / "images", attempt)
    summary = {"attempt": attempt.name, "retried": failed.num_rows, "recovered": recovered}
    atomic_write_json(attempt / "_complete.json", summary)
    for path in list_shards(attempt / "images"):  # merged: drop the second copy of the bytes
        path.unlink()
    return summary


def retry_history(work_dir: Path) -> list[dict[str, Any]]:
    """The summaries of the completed retry attempts, oldest first (for the manifest)."""
    out = []
    for marker in sorted(work_dir.glob("retry-*/_complete.json")):
        out.append(json.loads(marker.read_text(encoding="utf-8")))
    return out
