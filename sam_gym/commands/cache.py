"""``sam-gym cache``: precompute a dataset's image embeddings into the on-disk cache.

In one process by default; with ``--ray``, with Ray Data's encoder actors on a Ray cluster
(:mod:`sam_gym.ray_cache`), which write the same entries, to a local folder or a pyarrow/fsspec URI.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sam_gym.commands.common import (
    add_backend_arguments,
    add_dataset_arguments,
    backend_from_args,
    check_out,
    dataset_from_args,
)

HELP = "precompute a dataset's image embeddings into the on-disk cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_dataset_arguments(parser, default=None)
    add_backend_arguments(parser)
    parser.add_argument("--cache-dir", default="~/.cache/sam_gym/embeddings",
                        help="the cache folder; with --ray also a URI that pyarrow or fsspec understands "
                             "(s3://bucket/prefix, file:///path) (default: %(default)s)")
    ray = parser.add_argument_group("Ray (pip install \"sam-gym[ray]\"; see docs/scaling.md)")
    ray.add_argument("--ray", action="store_true",
                     help="encode with Ray Data's encoder actors (one GPU each when the backend runs on CUDA)")
    ray.add_argument("--address", default=None,
                     help="the Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto; default: a new local one, "
                          "or RAY_ADDRESS)")
    ray.add_argument("--num-actors", type=int, default=None, metavar="K",
                     help="encoder actors (default: the cluster's GPUs for a CUDA backend, else its CPUs)")
    ray.add_argument("--batch-size", type=int, default=16, metavar="B",
                     help="images per batch handed to an actor (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Encode every image of the dataset not yet in the cache, with a progress bar (or on Ray with ``--ray``)."""
    if not args.ray:
        given = [flag for flag, value in (("--address", args.address), ("--num-actors", args.num_actors))
                 if value is not None]
        if given:
            raise ValueError(f"Expected {' and '.join(given)} only with --ray, got them without it")
        if "://" in str(args.cache_dir):
            raise ValueError(f"Expected a local --cache-dir without --ray, got the URI {args.cache_dir}; "
                             "add --ray to write to it")
    if "://" not in str(args.cache_dir):
        check_out(args.cache_dir, flag="--cache-dir")
    return _run_ray(args) if args.ray else _run_local(args)


def _run_local(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sam_gym.cache import EmbeddingCache

    dataset = dataset_from_args(args)
    backend = backend_from_args(args)
    cache = EmbeddingCache(backend, cache_dir=args.cache_dir, max_items=1)
    seen: set[str] = set()
    start = time.perf_counter()
    for i in tqdm(range(len(dataset)), desc=f"cache {dataset.name} ({backend.name})", unit="img"):
        image = dataset[i].image
        key = cache.key(image)
        if key in seen:  # instance datasets repeat images
            continue
        seen.add(key)
        cache.get(image, key=key)
    s = cache.stats
    print(f"{len(seen)} images, {s.encoder_calls} encoded, {s.disk_hits} already cached, {s.corrupt} repaired, "
          f"in {time.perf_counter() - start:.1f} s -> {cache.directory} [backend: {backend.description}]")
    return 0


def _run_ray(args: argparse.Namespace) -> int:
    from sam_gym.backends import backend_entry
    from sam_gym.ray_cache import check_address, check_cache_dir, import_ray, precompute

    ray = import_ray()
    for flag, value in (("--num-actors", args.num_actors), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"Expected {flag} to be a positive integer, got {value}")
    if backend_entry(args.backend).checkpoint and args.checkpoint == "random":
        raise ValueError("Expected a weights file or auto as --checkpoint with --ray, got random: random weights "
                         "differ in every process, so the actors' embeddings would not match their key")
    for name in ("dataset", "image_dir", "cache_dir"):  # the same absolute path on every node of a cluster
        value = getattr(args, name, None)
        if value and "://" not in str(value) and (name == "cache_dir" or Path(value).expanduser().exists()):
            setattr(args, name, str(Path(value).expanduser().resolve()))
    dataset = dataset_from_args(args)
    check_cache_dir(str(args.cache_dir))
    if args.address is not None:
        check_address(args.address)
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address)
    elif args.address is not None:
        raise ValueError(f"Expected no --address when Ray is already initialised in this process, got {args.address}")
    start = time.perf_counter()
    try:
        report = precompute(dataset, {"backend": args.backend, "checkpoint": args.checkpoint, "device": args.device,
                                      "half": args.half},
                            str(args.cache_dir), num_actors=args.num_actors, batch_size=args.batch_size)
    finally:
        if started:
            ray.shutdown()
    print(f"{report.images} images, {report.encoded} encoded, {report.cached} already cached, "
          f"{report.repaired} repaired, in {time.perf_counter() - start:.1f} s -> {report.folder} "
          f"[backend: {report.description}] [Ray: {report.actors} encoder actors, "
          f"{report.gpus_per_actor:g} GPU each]")
    return 0
