"""How Codec 2's bits are folded into the tokens of an 80 ms frame (see `kamevoice.frontend.codec2`).

Bit layout (`FrameLayout`). The codec's bit string of one 80 ms frame is the
concatenation of its codec-2 frames' fields (voicing flags, pitch, energy,
LSP indices). Each bit gets a tier: a scalar quantiser's natural-binary index
is ordered (its top bits are a coarse value, each further bit halves the
step, like the levels of a residual VQ), so its bit j sits at tier
`rank + j`; a vector quantiser's index is kept whole at tier `rank`. Bits are
sorted by (tier, codec-2 frame, field) and read `bits_per_codebook` at a
time, the first bit of a token its most significant. The most phonetic
information comes first, so codebook 0 is the "semantic" one, as in Mimi,
and the later ones refine, which suits the LM's one-frame acoustic delay.

Default mode 1200 (94 bits per 80 ms, 11 codebooks of 512; `kamevoice bench
codec` measures it far more intelligible to PocketSphinx than 1300, 1600 or
3200): codebooks 0-1 the first LSP VQ stage (the coarse spectral envelope)
of each 40 ms half, 2-5 the two refining LSP stages, 6-9 a joint pitch +
energy index with the voicing flag of its 10 ms sub-frame, 10 the other 4
voicing flags (+5 padding bits). Caveat: 1200 codes pitch and energy
predictively (each index is relative to 0.8-0.9 x the previous value), so
an LM's token also nudges the next frames' values; the effect decays.

Mode 1300 (104 bits, 13 codebooks of 256) is memoryless and all scalar:
codebook 0 holds, for each 40 ms half, the top bit of the energy, of LSP 1
and LSP 2 (first two formant regions) and the voicing flag where the
parameters are sampled: speech or silence, voiced or not, the coarse vowel
shape. Then the other voicing flags, the top bits of LSP 3-4 and pitch, the
refinements, and the high LSPs (5-10, above ~2 kHz) last. `describe()` /
`layout_table()` print the table of any mode.

Decoding fewer codebooks than K (an LM that models only the first k) fills
the rest: a cut scalar field at the middle of its remaining interval, a cut
VQ index with 0.

Measured (`kamevoice bench codec --keep 4,8`, 2026-11-22, PocketSphinx task
LM, 20 sentences, word accuracy flite / espeak-ng): originals 0.986 / 0.651;
1200 0.918 / 0.945; 1300 0.678 / 0.753, its first 8 of 13 codebooks 0.199 /
0.500, first 4 0.075 / 0.130. The leading codebooks do carry the most, but
an LM that drops codebooks loses intelligibility fast: model all K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Field:
    """One quantiser index inside a codec-2 frame, as codec 2 packs it.

    `ordered`: a scalar quantiser's natural-binary index, whose bits are
    spread over tiers by significance (tier = rank + bit position); otherwise
    a vector quantiser's index, atomic: all its bits sit at tier `rank`, kept
    together. `spare`: a bit codec 2 does not use, not carried by any token.
    """

    name: str
    bits: int
    rank: int
    ordered: bool = True
    spare: bool = False


# LSP tiers of the scalar modes: LSP 1-2 (F1/F2 regions) first, 3-4 one tier later, 5-10
# (above ~2 kHz) two tiers later.
_LSP_RANKS = (0, 0, 1, 1, 2, 2, 2, 2, 2, 2)


def _lsp_fields(prefix: str, widths: tuple[int, ...]) -> tuple[Field, ...]:
    return tuple(Field(f"{prefix}{i + 1}", w, _LSP_RANKS[i]) for i, w in enumerate(widths))


# Bit fields of one codec-2 frame, in the order codec 2 packs them (codec2.c, codec2_encode_<mode>).
# The voicing flag of the 10 ms sub-frame where pitch and energy are sampled ranks with energy.
#
# 1200 (the default), per 40 ms: voicing x2, joint Wo+energy VQ (8), voicing x2, joint VQ (8),
# a 3-stage LSP VQ (9 + 9 + 9), 1 spare bit. With 9-bit tokens every VQ index is one token:
# codebooks 0-1 the first LSP stage (the coarse spectral envelope) of each 40 ms half,
# 2-5 the two refining stages, 6-9 a Wo+energy index with its voicing flag, 10 the other flags.
_FIELDS_1200 = (
    Field("v1", 1, 3),
    Field("v2", 1, 2),
    Field("woe1", 8, 2, ordered=False),
    Field("v3", 1, 3),
    Field("v4", 1, 2),
    Field("woe2", 8, 2, ordered=False),
    Field("lspvq1", 9, 0, ordered=False),
    Field("lspvq2", 9, 1, ordered=False),
    Field("lspvq3", 9, 1, ordered=False),
    Field("spare", 1, 0, spare=True),
)
# 1300, per 40 ms: four 10 ms voicing flags, Wo 7, energy 5, 10 scalar LSPs (36 bits).
_FIELDS_1300 = (
    Field("v1", 1, 1),
    Field("v2", 1, 1),
    Field("v3", 1, 1),
    Field("v4", 1, 0),
    Field("wo", 7, 1),
    Field("energy", 5, 0),
    *_lsp_fields("lsp", (4, 4, 4, 4, 4, 4, 4, 3, 3, 2)),
)
# 1600, per 40 ms: (voicing, voicing + Wo + energy) twice, then 10 scalar LSPs (36 bits).
_FIELDS_1600 = (
    Field("v1", 1, 1),
    Field("v2", 1, 1),
    Field("wo2", 7, 2),
    Field("energy2", 5, 1),
    Field("v3", 1, 1),
    Field("v4", 1, 0),
    Field("wo4", 7, 1),
    Field("energy4", 5, 0),
    *_lsp_fields("lsp", (4, 4, 4, 4, 4, 4, 4, 3, 3, 2)),
)
# 3200, per 20 ms: two 10 ms voicing flags, Wo 7, energy 5, 10 LSP differences of 5 bits.
_FIELDS_3200 = (
    Field("v1", 1, 1),
    Field("v2", 1, 0),
    Field("wo", 7, 1),
    Field("energy", 5, 0),
    *_lsp_fields("lspd", (5,) * 10),
)
MODE_FIELDS: dict[int, tuple[Field, ...]] = {
    1200: _FIELDS_1200,
    1300: _FIELDS_1300,
    1600: _FIELDS_1600,
    3200: _FIELDS_3200,
}
# Token width per mode: 1200's VQ indices are 9 bits (card 512); the scalar modes use 8 (card 256),
# which 1300's 104 bits per 80 ms fill exactly (13 codebooks). Small cards keep the tiny LM's
# embedding and output tables small (KAME-tiny must fit in 25 MB).
DEFAULT_BITS_PER_CODEBOOK = {1200: 9, 1300: 8, 1600: 8, 3200: 8}


class FrameLayout:
    """The permutation between an 80 ms frame's codec-2 bits and its K tokens.

    Bits are sorted by (tier, codec-2 frame, field position, bit position),
    tier = rank + bit position for scalar (ordered) fields, rank for VQ
    indices, and read `bits_per_codebook` at a time; spare bits are dropped.
    """

    def __init__(self, fields: tuple[Field, ...], token_bits: int, c2_frames: int, bytes_per_c2_frame: int):
        self.c2_frames = c2_frames  # codec-2 frames per 80 ms frame
        self.bytes_per_c2_frame = bytes_per_c2_frame
        self.c2_bits = sum(f.bits for f in fields)  # bits of one codec-2 frame, spare included
        self.bits_per_codebook = token_bits
        keys = []  # (tier, codec-2 frame, field index, bit, stream position, name)
        start = 0
        for index, f in enumerate(fields):
            for j in range(f.bits):
                for t in range(c2_frames):
                    if not f.spare:
                        tier = f.rank + j if f.ordered else f.rank
                        position = t * bytes_per_c2_frame * 8 + start + j  # in the unpacked byte stream
                        keys.append((tier, t, index, j, position, f"{f.name}[{j}]@{t}"))
            start += f.bits
        keys.sort()
        self.bits = len(keys)  # bits the tokens carry per 80 ms frame
        self.num_codebooks = -(-self.bits // token_bits)
        self.pad = self.num_codebooks * token_bits - self.bits
        self.order = np.array([k[4] for k in keys], dtype=np.int64)  # token bit i <- stream bit order[i]
        self.names = [k[5] for k in keys] + ["pad"] * self.pad
        self._field_of = [(k[1], k[2]) for k in keys]
        self._ordered = [fields[k[2]].ordered for k in keys]
        self.weights = 1 << np.arange(token_bits - 1, -1, -1, dtype=np.int64)

    def describe(self) -> list[list[str]]:
        """Per codebook, the bits it carries, e.g. `energy[0]@1`: field, bit from its MSB, codec-2 frame."""
        b = self.bits_per_codebook
        return [self.names[k * b : (k + 1) * b] for k in range(self.num_codebooks)]

    def fill_bits(self, kept: int) -> np.ndarray:
        """Bits standing in for the codebooks after the first `kept`.

        The top missing bit of a scalar field is 1 and the others 0 (the middle of
        the interval its kept bits define); a cut VQ index gets 0.
        """
        start = min(kept * self.bits_per_codebook, self.bits)
        seen: set[tuple[int, int]] = set()
        fill = np.zeros(self.bits - start, dtype=np.int64)
        for i in range(start, self.bits):
            field = self._field_of[i]
            if self._ordered[i] and field not in seen:  # a field's bits come most significant first
                fill[i - start] = 1
            seen.add(field)
        return fill

    def to_tokens(self, stream_bits: np.ndarray) -> np.ndarray:
        """`[B, c2_frames * bytes * 8]` bits (0/1) -> `[B, K]` tokens."""
        bits = stream_bits[:, self.order].astype(np.int64)
        if self.pad:
            bits = np.concatenate([bits, np.zeros((len(bits), self.pad), dtype=np.int64)], axis=1)
        return bits.reshape(len(bits), self.num_codebooks, self.bits_per_codebook) @ self.weights

    def from_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """`[B, k <= K]` tokens -> `[B, c2_frames * bytes * 8]` bits (spare and padding bits 0).

        Missing trailing codebooks (an LM that models only the first k) are filled by `fill_bits`.
        """
        bits = (tokens[:, :, None] >> np.arange(self.bits_per_codebook - 1, -1, -1)) & 1
        bits = bits.reshape(len(tokens), -1)[:, : self.bits]
        if bits.shape[1] < self.bits:
            fill = np.broadcast_to(self.fill_bits(tokens.shape[1]), (len(tokens), self.bits - bits.shape[1]))
            bits = np.concatenate([bits, fill], axis=1)
        stream = np.zeros((len(tokens), self.c2_frames * self.bytes_per_c2_frame * 8), dtype=np.uint8)
        stream[:, self.order] = bits
        return stream
