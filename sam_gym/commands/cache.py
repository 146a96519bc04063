"""``sam-gym cache``: precompute a dataset's image embeddings into the on-disk cache."""

from __future__ import annotations

import argparse
import time

from sam_gym.commands.common import add_backend_arguments, add_dataset_arguments, backend_from_args, dataset_from_args

HELP = "precompute a dataset's image embeddings into the on-disk cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_dataset_arguments(parser, default=None)
    add_backend_arguments(parser)
    parser.add_argument("--cache-dir", default="~/.cache/sam_gym/embeddings", help="default: %(default)s")


def run(args: argparse.Namespace) -> int:
    """Encode every image of the dataset not yet in the cache, with a progress bar."""
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
