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
        self._sorted_keys = numpy.zeros(0, dtype=numpy.uint64)  # the index: keys, sorted ...
        self._sorted_slots = numpy.zeros(0, dtype=numpy.int64)  # ... and the slot of each
        self._used = 0  # slots 0.._used-1 hold entries (preallocated: no copy per batch)
        self._ids = numpy.zeros((0, 1), dtype=numpy.int64)  # per slot: the row, padded with 0
        self._lengths = numpy.zeros(0, dtype=numpy.int64)
        self._hits = numpy.zeros(0, dtype=numpy.int64)
        self._encodings: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self._sorted_keys)

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
        lengths = char_lengths.numpy().astype(numpy.int64, copy=False)
        ids = numpy.where(numpy.arange(char_ids.shape[1])[None, :] < lengths[:, None], char_ids.numpy(), 0)
        keys = row_keys(ids, lengths)
        found, slots = self._find(keys, ids, lengths)
        hit, missing = numpy.flatnonzero(found), numpy.flatnonzero(~found)
        self._hits[slots[hit]] += 1
        if not len(missing):
            return self._encodings[torch.from_numpy(slots)]
        computed = encode(char_ids[torch.from_numpy(missing)], char_lengths[torch.from_numpy(missing)])
        out = computed.new_empty(len(keys), computed.shape[1])
        out[torch.from_numpy(missing)] = computed
        if len(hit):
            out[torch.from_numpy(hit)] = self._encodings[torch.from_numpy(slots[hit])]
        self._admit(keys[missing], ids[missing], lengths[missing], computed.detach())
        return out

    def _find(self, keys: numpy.ndarray, ids: numpy.ndarray, lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """For each key: whether the cache holds exactly that row, and its slot."""
        if not len(self._sorted_keys):
            return numpy.zeros(len(keys), dtype=bool), numpy.zeros(len(keys), dtype=numpy.int64)
        positions = numpy.minimum(numpy.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        slots = self._sorted_slots[positions]
        found = self._sorted_keys[positions] == keys
        # confirm the ids: a key collision must not return another word's encoding
        width = min(ids.shape[1], self._ids.shape[1])
        found &= (self._lengths[slots] == lengths) & (lengths <= width)
        found &= (self._ids[slots, :width] == ids[:, :width]).all(axis=1)
        return found, slots

    def _admit(self, keys: numpy.ndarray, ids: numpy.ndarray, lengths: numpy.ndarray, encodings: torch.Tensor) -> None:
        """Store new rows in free slots; when full, in the slots of the least
        looked-up entries."""
        keys, first = numpy.unique(keys, return_index=True)
        if len(self._sorted_keys):
            fresh = ~numpy.isin(keys, self._sorted_keys)
            keys, first = keys[fresh], first[fresh]
        keys, first = keys[: self.max_entries], first[: self.max_entries]
        if not len(keys):
            return
        if self._encodings is None:
            self._encodings = encodings.new_empty(self.max_entries, encodings.shape[1])
            self._ids = numpy.zeros((self.max_entries, ids.shape[1]), dtype=numpy.int64)
            self._lengths = numpy.zeros(self.max_entries, dtype=numpy.int64)
            self._hits = numpy.zeros(self.max_entries, dtype=numpy.int64)
        if ids.shape[1] > self._ids.shape[1]:
            wider = numpy.zeros((self.max_entries, ids.shape[1]), dtype=numpy.int64)
            wider[:, : self._ids.shape[1]] = self._ids
            self._ids = wider
        n_free = self.max_entries - self._used
        slots = numpy.arange(self._used, self._used + min(n_free, len(keys)))
        if len(keys) > n_free:
            # evict entries never looked up since they came (a new entry is no
            # worse); entries found again are kept, and new rows that still
            # don't fit are not stored
            unused = numpy.flatnonzero(self._hits[: self._used] <= 1)[: len(keys) - n_free]
            kept = ~numpy.isin(self._sorted_slots, unused)
            self._sorted_keys, self._sorted_slots = self._sorted_keys[kept], self._sorted_slots[kept]
            slots = numpy.concatenate([slots, unused])
            keys, first = keys[: len(slots)], first[: len(slots)]
            if not len(keys):
                return
        self._used += min(n_free, len(keys))
        self._ids[slots] = 0
        self._ids[slots, : ids.shape[1]] = ids[first]
        self._lengths[slots] = lengths[first]
        self._hits[slots] = 1
        self._encodings[torch.from_numpy(slots)] = encodings[torch.from_numpy(first)]
        where = numpy.searchsorted(self._sorted_keys, keys)
        self._sorted_keys = numpy.insert(self._sorted_keys, where, keys)
        self._sorted_slots = numpy.insert(self._sorted_slots, where, slots)
