"""Padded <-> packed sequences and per-sequence time reversal."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence


def unpack_to_padded(sequence: PackedSequence) -> tuple[Tensor, Tensor]:
    """A PackedSequence -> ``(padded (T, B, *), lengths (B,))``, both in the caller's batch order."""
    padded, lengths = pad_packed_sequence(sequence)
    return padded, lengths.to(padded.device)


def pack_like(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a time-major ``(T, B, *)`` tensor (caller's batch order) with the layout of ``like``.

    The result has ``like``'s ``batch_sizes``, ``sorted_indices`` and ``unsorted_indices``, as the
    output of ``torch.nn.LSTM`` on a packed input does.
    """
    batch_sizes = like.batch_sizes
    if like.sorted_indices is not None:
        padded = padded.index_select(1, like.sorted_indices)  # (T, B, *) sorted by length
    steps, batch = padded.shape[0], padded.shape[1]
    valid = torch.arange(batch)[None, :] < batch_sizes[:steps, None]  # (T, B) on CPU like batch_sizes
    data = padded[valid.to(padded.device)]  # time-major: step 0's batch, then step 1's ...
    return PackedSequence(data, batch_sizes, like.sorted_indices, like.unsorted_indices)


def dropout_between_layers(x: Tensor, p: float, packed: PackedSequence | None) -> Tensor:
    """Dropout on a layer's ``(T, B, F)`` output, drawn as torch.nn's recurrent layers draw it.

    torch drops the tensor its next layer reads: ``(T, B, F)`` for padded input, the packed data
    ``(sum of lengths, F)`` for a PackedSequence. Dropping the packed data here too takes the same
    random numbers in the same order, so a seeded program gives torch's masks and leaves the
    generator where torch leaves it. The padding steps stay zero."""
    if packed is None:
        return nn.functional.dropout(x, p, training=True)
    data = nn.functional.dropout(pack_like(x, packed).data, p, training=True)  # (N, F)
    steps = x.shape[0]
    padded, _ = pad_packed_sequence(
        PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        total_length=steps,
    )
    return padded  # (T, B, F)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a ``(T, B, *)`` batch within its own length.

    Steps past a sequence's length stay where they are, so applying it twice is the identity.
    """
    if lengths is None:
        return x.flip(0)
    steps = x.shape[0]
    t = torch.arange(steps, device=x.device)[:, None]  # (T, 1)
    index = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, B)
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)
