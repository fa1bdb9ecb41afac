"""A per-process cache of the character BiLSTM's word encodings (inference only).

A word's character encoding depends only on its character ids and the
encoder's weights, and a few thousand frequent word types make up most
tokens, so at inference each batch only needs to encode the types it has
not seen. The cache is keyed by the character ids themselves (a 64-bit
hash to find the entry, then the ids are compared, so a hash collision
can never return another word's encoding), bounded to ``max_entries``
types (the most often looked-up ones are kept), and emptied whenever the
encoder's weights change: training steps, ``use_params``, loading weights
all write the parameters in place (bumping their version counters) or
replace them (new storage), and both change the weights' fingerprint.
"""
from typing import Callable, Iterable, Optional, Tuple

import numpy
import torch

_MULTIPLIER = numpy.uint64(0x9E3779B97F4A7C15)  # odd: the row hash is a bijection per step
_MIX = numpy.uint64(0xBF58476D1CE4E5B9)


def weights_fingerprint(parameters: Iterable[torch.Tensor]) -> Tuple:
    """Changes whenever a parameter is written in place (its version counter)
    or replaced (its storage)."""
    return tuple((p.data_ptr(), p._version, tuple(p.shape)) for p in parameters)


def row_keys(char_ids: numpy.ndarray, lengths: numpy.ndarray) -> numpy.ndarray:
    """A 64-bit hash of each row's first ``length`` ids (the length included,
    so padding never makes two rows equal)."""
    width = char_ids.shape[1]
    inside = numpy.arange(width)[None, :] < lengths[:, None]
    ids = numpy.where(inside, char_ids, 0).astype(numpy.uint64)
    keys = lengths.astype(numpy.uint64) * _MIX
    for column in range(width):
        keys = (keys ^ ids[:, column]) * _MULTIPLIER
        keys ^= keys >> numpy.uint64(29)
    return keys


class CharEncodingCache:
    """Encodings of word types by their character ids, for one encoder.

    ``encode`` is the uncached encoder (``(char_ids, char_lengths) -> (n, dim)``);
    the cache calls it only on the rows it does not hold.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be a positive number of word types, got {max_entries}")
        self.max_entries = max_entries
        self.clear()

    def clear(self) -> None:
        """Forget every entry (the next lookup re-encodes)."""
        self._fingerprint: Optional[Tuple] = None
        self._keys = numpy.zeros(0, dtype=numpy.uint64)  # sorted
        self._ids = numpy.zeros((0, 1), dtype=numpy.int64)  # the rows, padded with 0
        self._lengths = numpy.zeros(0, dtype=numpy.int64)
        self._hits = numpy.zeros(0, dtype=numpy.int64)
        self._encodings: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self):
        # a pickled pipeline (spawned workers) starts with an empty cache
        return {"max_entries": self.max_entries}

    def __setstate__(self, state) -> None:
        self.__init__(state["max_entries"])

    def __call__(
        self,
        encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        parameters: Iterable[torch.Tensor],
        char_ids: torch.Tensor,
        char_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """The encodings of every row of ``char_ids``; only unseen rows are encoded."""
        fingerprint = weights_fingerprint(parameters)
        if fingerprint != self._fingerprint:
            self.clear()
            self._fingerprint = fingerprint
        ids = char_ids.numpy()
        lengths = char_lengths.numpy().astype(numpy.int64, copy=False)
        ids = numpy.where(numpy.arange(ids.shape[1])[None, :] < lengths[:, None], ids, 0)
        keys = row_keys(ids, lengths)
        found, positions = self._find(keys, ids, lengths)
        missing = numpy.flatnonzero(~found)
        if not len(missing):
            self._hits[positions] += 1
            return self._encodings[torch.from_numpy(positions)]
        computed = encode(char_ids[torch.from_numpy(missing)], char_lengths[torch.from_numpy(missing)])
        out = computed.new_empty(len(keys), computed.shape[1])
        out[torch.from_numpy(missing)] = computed
        hit = numpy.flatnonzero(found)
        if len(hit):
            out[torch.from_numpy(hit)] = self._encodings[torch.from_numpy(positions[hit])]
            self._hits[positions[hit]] += 1
        self._admit(keys[missing], ids[missing], lengths[missing], computed.detach())
        return out

    def _find(self, keys: numpy.ndarray, ids: numpy.ndarray, lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """For each key: whether the cache holds exactly that row, and where."""
        if not len(self._keys):
            return numpy.zeros(len(keys), dtype=bool), numpy.zeros(len(keys), dtype=numpy.int64)
        positions = numpy.minimum(numpy.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[positions] == keys
        # confirm the ids: a key collision must not return another word's encoding
        width = min(ids.shape[1], self._ids.shape[1])
        same = (self._lengths[positions] == lengths) & (lengths <= width)
        same &= (self._ids[positions, :width] == ids[:, :width]).all(axis=1)
        return found & same, positions

    def _admit(self, keys: numpy.ndarray, ids: numpy.ndarray, lengths: numpy.ndarray, encodings: torch.Tensor) -> None:
        """Add new rows; past ``max_entries``, keep the most looked-up entries."""
        keys, first = numpy.unique(keys, return_index=True)
        if len(self._keys):
            fresh = ~numpy.isin(keys, self._keys)
            keys, first = keys[fresh], first[fresh]
        if not len(keys):
            return
        width = max(ids.shape[1], self._ids.shape[1])
        all_keys = numpy.concatenate([self._keys, keys])
        all_ids = numpy.zeros((len(all_keys), width), dtype=numpy.int64)
        all_ids[: len(self._keys), : self._ids.shape[1]] = self._ids
        all_ids[len(self._keys) :, : ids.shape[1]] = ids[first]
        all_lengths = numpy.concatenate([self._lengths, lengths[first]])
        all_hits = numpy.concatenate([self._hits, numpy.ones(len(keys), dtype=numpy.int64)])
        new = encodings[torch.from_numpy(first)]
        all_encodings = new if self._encodings is None else torch.cat([self._encodings, new])
        keep = numpy.arange(len(all_keys))
        if len(all_keys) > self.max_entries:
            keep = numpy.argsort(-all_hits, kind="stable")[: self.max_entries]
        order = keep[numpy.argsort(all_keys[keep])]
        self._keys, self._ids = all_keys[order], all_ids[order]
        self._lengths, self._hits = all_lengths[order], all_hits[order]
        self._encodings = all_encodings[torch.from_numpy(order)]
