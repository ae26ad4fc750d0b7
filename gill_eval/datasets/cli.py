"""`gill-eval prepare ...`: each dataset module contributes its command (exports: ``gill_eval.exports.cli``).

This layer only turns options into library calls and prints the result; the work is in the dataset
modules (cc3m, vist, visdial, coco) and in download (img2dataset).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from gill_eval.datasets.download import DownloadOptions

app = typer.Typer(help="Turn raw files and image URLs into Parquet shards.", no_args_is_help=True)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the counts as JSON on stdout.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Delete this dataset's folder and start again.")]
RetryFailed = Annotated[
    bool, typer.Option("--retry-failed", help="Download the rows that failed before again and merge them in.")
]
Processes = Annotated[
    Optional[int], typer.Option("--processes", help="img2dataset processes (default: the number of CPU cores).")
]
Threads = Annotated[int, typer.Option("--threads", help="img2dataset download threads per process.")]
ImageSize = Annotated[int, typer.Option("--image-size", help="img2dataset target image size in pixels.")]
ResizeMode = Annotated[
    str, typer.Option("--resize-mode", help="img2dataset resize mode: no|keep_ratio|keep_ratio_largest|center_crop|border.")
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds before a download counts as timed out.")]
Retries = Annotated[int, typer.Option("--retries", help="img2dataset retries per URL within one run.")]
Distributor = Annotated[str, typer.Option("--distributor", help="multiprocessing or pyspark (needs pyspark).")]
ShardSize = Annotated[int, typer.Option("--shard-size", help="Rows per image shard (the unit of resume).")]
SparkMaster = Annotated[Optional[str], typer.Option(
    "--spark-master", help="With --distributor pyspark: the master URL, e.g. spark://host:7077 (default: "
                           "local[--processes]). The data root must be on a filesystem every executor mounts.")]
Store = Annotated[str, typer.Option(
    "--store", help="What is stored per image: auto (the dataset's protocol default), img2dataset (its resize), "
                    "gill-224 (original squashed to 224x224, PNG, as GILL), center-crop (centre square, LANCZOS "
                    "to --image-size, PNG, FID's input). See docs/protocols.md.")]


def _options(processes: int | None, threads: int, image_size: int, resize_mode: str, timeout: float,
             retries: int, distributor: str, shard_size: int, store: str,
             spark_master: str | None) -> DownloadOptions:
    # None (not given) means every core; an explicit 0 is refused by DownloadOptions, never read as "all"
    return DownloadOptions(processes=processes if processes is not None else os.cpu_count() or 1, threads=threads, image_size=image_size,
                           resize_mode=resize_mode, timeout=timeout, retries=retries, distributor=distributor,
                           shard_size=shard_size, store=store, spark_master=spark_master)


@app.command("cc3m")
def prepare_cc3m_command(
    tsv: Annotated[str, typer.Option("--tsv", help="Header-less caption<TAB>url TSV: a path or an http(s) URL.")],
    split: Annotated[str, typer.Option("--split", help="train or val.")],
    retry_failed: RetryFailed = False,
    processes: Processes = None,
    threads: Threads = 64,
    image_size: ImageSize = 256,
    resize_mode: ResizeMode = "border",
    timeout: Timeout = 10.0,
    retries: Retries = 0,
    distributor: Distributor = "multiprocessing",
    spark_master: SparkMaster = None,
    shard_size: ShardSize = 10_000,
    store: Store = "auto",
    overwrite: Overwrite = False,
    as_json: JsonFlag = False,
    copy: Annotated[Optional[Path], typer.Option(
        "--from", help="Import the images from an existing copy (img2dataset output, webdataset shards or a Hugging "
                       "Face dataset folder) instead of downloading; rows are joined to the TSV by URL.")] = None,
    copy_format: Annotated[Optional[str], typer.Option(
        "--from-format", help="img2dataset|webdataset|hf (default: detected from the folder's files).")] = None,
) -> None:
    """CC3M captions and images (img2dataset, or --from an existing copy) into datasets/cc3m-<split>/, with coverage."""
    from gill_eval.datasets.cc3m import prepare_cc3m
    from gill_eval.datasets.output import print_summary

    options = _options(processes, threads, image_size, resize_mode, timeout, retries, distributor, shard_size, store,
                       spark_master)
    print_summary(prepare_cc3m(tsv, split, options, retry=retry_failed, overwrite=overwrite,
                               copy=str(copy) if copy is not None else None, copy_format=copy_format), as_json)


@app.command("vist")
def prepare_vist_command(
    sis: Annotated[str, typer.Option("--sis", help="<split>.story-in-sequence.json or SIS-with-labels.tar.gz (path or URL).")],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "val",
    retry_failed: RetryFailed = False,
    processes: Processes = None,
    threads: Threads = 64,
    image_size: ImageSize = 512,
    resize_mode: ResizeMode = "keep_ratio",
    timeout: Timeout = 10.0,
    retries: Retries = 0,
    distributor: Distributor = "multiprocessing",
    spark_master: SparkMaster = None,
    shard_size: ShardSize = 1000,
    store: Store = "auto",
    overwrite: Overwrite = False,
    as_json: JsonFlag = False,
    allow_local_urls: Annotated[bool, typer.Option(
        "--allow-local-urls", help="Also read url_o values that are file:// URLs or local paths (relative to the "
                                   "SIS file's folder); default: http(s) only. docs/reliability.md.")] = False,
    copy: Annotated[Optional[Path], typer.Option(
        "--from", help="Import the photos from an existing copy (img2dataset output of the url_o links, webdataset "
                       "shards or a Hugging Face dataset folder) instead of downloading; joined by url_o.")] = None,
    copy_format: Annotated[Optional[str], typer.Option(
        "--from-format", help="img2dataset|webdataset|hf (default: detected from the folder's files).")] = None,
) -> None:
    """VIST stories (one row per story) and their url_o photos into datasets/vist/ (val) or vist-<split>/, with coverage."""
    from gill_eval.datasets.output import print_summary
    from gill_eval.datasets.vist import prepare_vist

    options = _options(processes, threads, image_size, resize_mode, timeout, retries, distributor, shard_size, store,
                       spark_master)
    print_summary(prepare_vist(sis, split, options, retry=retry_failed, overwrite=overwrite,
                               allow_local_urls=allow_local_urls, copy=str(copy) if copy is not None else None,
                               copy_format=copy_format), as_json)


@app.command("visdial")
def prepare_visdial_command(
    dialogs: Annotated[str, typer.Option("--dialogs", help="visdial_1.0_val.json (path or URL).")],
    images: Annotated[Path, typer.Option("--images", help="VisualDialog_val2018.zip or its unpacked folder.")],
    dense: Annotated[
        Optional[str], typer.Option("--dense", help="visdial_1.0_val_dense_annotations.json, checked against the dialogs.")
    ] = None,
    shard_size: ShardSize = 1000,
    overwrite: Overwrite = False,
    as_json: JsonFlag = False,
) -> None:
    """VisDial v1.0 dialogs (one row per dialog) and their images into datasets/visdial/."""
    from gill_eval.datasets.output import print_summary
    from gill_eval.datasets.visdial import prepare_visdial

    print_summary(prepare_visdial(dialogs, str(images), dense, shard_size=shard_size, overwrite=overwrite), as_json)


@app.command("coco")
def prepare_coco_command(
    captions: Annotated[str, typer.Option("--captions", help="captions_val2014.json, or with --year 2017 "
                                                             "captions_val2017.json (path or URL).")],
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="val2014.zip (val2017.zip) or its unpacked folder; or pass --from.")] = None,
    num_captions: Annotated[int, typer.Option("--num-captions", help="Captions to draw for FID-30k.")] = 30_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the caption draw.")] = 0,
    year: Annotated[int, typer.Option("--year", help="2014: the FID-30k manifest (Table 8) into datasets/coco/; "
                                                     "2017: the val captioning split (Table 7) into datasets/coco2017/.")] = 2014,
    shard_size: ShardSize = 1000,
    overwrite: Overwrite = False,
    as_json: JsonFlag = False,
    copy: Annotated[Optional[Path], typer.Option(
        "--from", help="Instead of --images: a Hugging Face dataset folder (save_to_disk, or Parquet files) with an "
                       "image column and an image_id or file_name column, joined to the captions file.")] = None,
    copy_format: Annotated[Optional[str], typer.Option(
        "--from-format", help="hf (the only format COCO is imported from; default: detected).")] = None,
) -> None:
    """COCO val: a seeded caption manifest and the val2014 images (--year 2014), or the val2017 captions (--year 2017)."""
    from gill_eval.datasets.output import print_summary

    given = {"images": str(images) if images is not None else None, "copy": str(copy) if copy is not None else None,
             "copy_format": copy_format}
    if year == 2017:
        from gill_eval.datasets.coco2017 import prepare_coco2017

        print_summary(prepare_coco2017(captions, shard_size=shard_size, overwrite=overwrite, **given), as_json)
        return
    if year != 2014:
        from gill_eval.errors import ConfigError

        raise ConfigError(f"--year {year}: expected 2014 or 2017")
    from gill_eval.datasets.coco import prepare_coco

    summary = prepare_coco(captions, num_captions=num_captions, seed=seed, shard_size=shard_size, overwrite=overwrite,
                           **given)
    print_summary(summary, as_json)


@app.command("vqav2")
def prepare_vqav2_command(
    questions: Annotated[str, typer.Option("--questions", help="v2_OpenEnded_mscoco_val2014_questions.json (path or URL).")],
    annotations: Annotated[str, typer.Option("--annotations", help="v2_mscoco_val2014_annotations.json (path or URL).")],
    train_annotations: Annotated[Optional[str], typer.Option(
        "--train-annotations", help="v2_mscoco_train2014_annotations.json, for the per-question-type prior baseline.")] = None,
    overwrite: Overwrite = False,
    as_json: JsonFlag = False,
) -> None:
    """VQAv2 val questions and answers into datasets/vqav2/; images are those of `prepare coco` (val2014)."""
    from gill_eval.datasets.output import print_summary
    from gill_eval.datasets.vqav2 import prepare_vqav2

    print_summary(prepare_vqav2(questions, annotations, train_annotations, overwrite=overwrite), as_json)


@app.command("partiprompts")
def prepare_partiprompts(
    source: Annotated[
        Optional[str],
        typer.Option("--source", help="Folder with the four TSV files, or a base URL; default: the pinned raw URLs."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Require each file's pinned sha256.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts per decision and split as JSON.")] = False,
) -> None:
    """PartiPrompts and the GILL retrieve-vs-generate annotations into one Parquet table."""
    from gill_eval.console import emit_json, info
    from gill_eval.datasets.partiprompts_prepare import DATASET, prepare
    from gill_eval.store import dataset_dir

    counts = prepare(source, verify=verify)
    if as_json:
        emit_json(counts)
        return
    d, s = counts["decisions"], counts["splits"]
    info(f"partiprompts: {counts['rows']} prompts -> {dataset_dir(DATASET)}")
    info(f"  decisions: {d['gen']} gen / {d['ret']} ret / {d['same']} same ({counts['usable']} usable)")
    for split in ("train", "val"):
        if split in s:
            info(f"  {split}: {s[split]['gen']} gen / {s[split]['ret']} ret")
