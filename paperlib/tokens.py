"""Tokenisation and batching: ``Encoded`` tensors, ``encode`` (cached in memory and under ``cache_dir()/tokens``),
``encode_splits`` and the length-grouped batches of ``length_batches``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import cache_dir
from .errors import PaperlibError
from .splits import Splits


@dataclass
class Encoded:
    """Tokenised examples: ``input_ids`` and ``attention_mask`` padded to max_length, ``labels``, ``lengths``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> Encoded:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Encoded(self.input_ids[idx], self.attention_mask[idx], self.labels[idx], self.lengths[idx])

    def to(self, device) -> Encoded:
        return Encoded(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.lengths)))


_MEMORY_CACHE: dict[str, Encoded] = {}


def encode(texts: list[str], labels, tokenizer, max_length: int, use_disk_cache: bool = True) -> Encoded:
    """Tokenise once per (texts, tokenizer, max_length): cached in memory and on disk."""
    if max_length < 8:
        raise PaperlibError(f"max_length must be at least 8 tokens, got {max_length}")
    h = hashlib.sha1()
    h.update(
        repr((getattr(tokenizer, "name_or_path", ""), len(tokenizer), type(tokenizer).__name__, max_length)).encode()
    )
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\0")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    key = h.hexdigest()[:24]
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    disk = cache_dir() / "tokens" / f"{key}.pt"
    if use_disk_cache and disk.is_file():
        enc = _load_token_cache(disk, labels, max_length)
        if enc is not None:
            _MEMORY_CACHE[key] = enc
            return enc
        # a corrupt or tampered cache file is refused and rebuilt (and overwritten) below
    out = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
    mask = out["attention_mask"].to(torch.int64)
    enc = Encoded(out["input_ids"].to(torch.int64), mask, torch.tensor(np.asarray(labels, dtype=np.int64)), mask.sum(1))
    _MEMORY_CACHE[key] = enc
    if use_disk_cache:
        try:
            from .io import atomic_path

            with atomic_path(disk) as tmp:
                torch.save({k: getattr(enc, k) for k in ("input_ids", "attention_mask", "labels", "lengths")}, tmp)
        except OSError:
            pass  # a read-only cache is fine: the memory cache still works
    return enc


def _load_token_cache(path: Path, labels, max_length: int) -> Encoded | None:
    """A cached ``Encoded``, or None when the file is not what ``encode`` writes.

    ``weights_only=True``: the file may hold tensors only, so a pickle planted in the cache cannot run
    code; the tensors must also have the expected names, dtype and shapes, these labels, and lengths
    equal to the mask's row sums."""
    try:
        saved = torch.load(path, weights_only=True, map_location="cpu")
        fields = ("input_ids", "attention_mask", "labels", "lengths")
        if not isinstance(saved, dict) or set(saved) != set(fields):
            return None
        if any(not isinstance(saved[f], torch.Tensor) or saved[f].dtype != torch.int64 for f in fields):
            return None
        enc = Encoded(*(saved[f] for f in fields))
        n = len(enc.labels)
        ok = (
            enc.input_ids.shape == (n, max_length)
            and enc.attention_mask.shape == (n, max_length)
            and enc.lengths.shape == (n,)
            and torch.equal(enc.labels, torch.from_numpy(np.array(labels, dtype=np.int64)))
            and torch.equal(enc.lengths, enc.attention_mask.sum(1))
        )
        return enc if ok else None
    except Exception:
        return None


def encode_splits(splits: Splits, tokenizer, max_length: int) -> dict[str, Encoded]:
    return {
        name: encode(df["text"].tolist(), df["label"].to_numpy(), tokenizer, max_length)
        for name, df in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }


def length_batches(
    enc: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0, multiple_of: int = 1
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield (example indices, batch) with examples grouped by length so padding is small.

    The batch's tensors are cut to its longest example (rounded up to ``multiple_of``, which keeps
    the number of distinct shapes small for ``torch.compile``).  With ``shuffle``, lengths are
    jittered before sorting and batch order is shuffled, seeded."""
    n = len(enc)
    lengths = enc.lengths.cpu().double()
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        keys = lengths + torch.rand(n, generator=g, dtype=torch.float64) * 8.0
        order = torch.argsort(keys, stable=True)
        chunks = list(torch.split(order, batch_size))
        perm = torch.randperm(len(chunks), generator=g).tolist()
        chunks = [chunks[i] for i in perm]
    else:
        order = torch.argsort(lengths, stable=True)
        chunks = list(torch.split(order, batch_size))
    full = enc.input_ids.shape[1]
    for idx in chunks:
        width = int(enc.lengths[idx].max())
        width = min(full, -(-width // multiple_of) * multiple_of)
        dev_idx = idx.to(enc.input_ids.device)
        yield (
            idx,
            {
                "input_ids": enc.input_ids[dev_idx, :width],
                "attention_mask": enc.attention_mask[dev_idx, :width],
                "labels": enc.labels[dev_idx],
            },
        )
