"""KameLM: Moshi's language model plus KAME's oracle embedding.

KAME changes one thing in Moshi (docs/kame.md section 2): an embedding table
`oracle_emb` of shape `[text_card + 1, dim]` whose output is added to the
temporal transformer's input, next to the text-token embedding. The depth
transformer and every output head are Moshi's, untouched.

We extend `moshi.models.lm.LMModel` rather than fork it. Moshi's
`forward_text(sequence, sum_condition, ...)` takes a per-position
`sum_condition` `[B, S, dim]`; the oracle embedding travels through exactly that
argument, both in the batch forward pass here and in streaming (see
`kamevoice.frontend.generator`), so both compute the same sum in the same order.
KAME checkpoints have no condition fuser, so the argument is the oracle's alone.
Where it is summed follows the model's `oracle_layout`
(`kamevoice.oracle.layouts`): the published `audio + (text + oracle)` by
default, moshi's `(audio + text) + oracle` for checkpoints trained that way.

Oracle ids are given in *frame* coordinates, like the text stream of `codes`:
`oracle[b, t]` is input together with `codes[b, 0, t]` (the text token of
frame t), i.e. at step t + 1; step 0 reads the layout's initial input (the
published layout: PAD; `kamevoice-v1`: the start id, as for text).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from moshi.models.lm import LMModel, LMOutput
from moshi.models.lm_utils import ScaledEmbedding, _delay_sequence, _undelay_sequence

from kamevoice.errors import InputError
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.layouts import DEFAULT_LAYOUT, OracleLayout

# The one state-dict key KAME adds to Moshi's (the published checkpoint's name).
ORACLE_KEY = "oracle_emb.weight"

# Constructor arguments that `LMModel` accepts (its own plus the transformer's **kwargs,
# which it forwards). Used to reject unknown keys in a checkpoint's config.json.
_LM_OWN_ARGS = frozenset(inspect.signature(LMModel.__init__).parameters) - {"self", "kwargs"}


class KameLM(LMModel):
    """Moshi's `LMModel` with an oracle input stream.

    Args:
        **lm_kwargs: exactly `moshi.models.lm.LMModel`'s constructor arguments.

    The oracle table starts as a copy of `text_emb`, which is how KAME
    initialises fine-tuning from Moshi and how a plain Moshi checkpoint loads.
    `oracle_layout` is the convention the checkpoint was trained with (set by the
    loaders from config.json; the published one by default).
    """

    def __init__(self, **lm_kwargs: Any):
        super().__init__(**lm_kwargs)
        self.oracle_layout: OracleLayout = DEFAULT_LAYOUT
        device, dtype = self.text_emb.weight.device, self.text_emb.weight.dtype
        self.oracle_emb = ScaledEmbedding(
            self.text_card + 1,
            self.dim,
            norm=self.text_emb.norm is not None,
            zero_idx=self.zero_token_id,
            demux_second_stream=self.text_emb.demux_second_stream,
            device=device,
            dtype=dtype,
        )
        self.copy_text_to_oracle()

    @torch.no_grad()
    def copy_text_to_oracle(self) -> None:
        """Make `oracle_emb` an exact copy of `text_emb` (weights and any sub-layers)."""
        self.oracle_emb.load_state_dict(self.text_emb.state_dict())

    @property
    def text_ids(self) -> TextIds:
        """The text stream's special ids, as this model uses them (the oracle stream shares them:
        `start` marks the frame where a new oracle begins, `pad` a frame without an oracle token)."""
        return TextIds(
            pad=self.existing_text_padding_id,
            end_of_padding=self.end_of_text_padding_id,
            start=self.text_initial_token_id,
        )

    def oracle_condition(self, oracle_inputs: torch.Tensor) -> torch.Tensor:
        """Embed oracle ids `[B, S]` into the per-position sum condition `[B, S, dim]`."""
        return self.oracle_emb(oracle_inputs)

    def check_oracle_ids(self, oracle: torch.Tensor, where: str = "oracle") -> None:
        """Raise `InputError` unless every id is in `[0, text_card]` (or -1, the zero token)."""
        if oracle.dtype not in (torch.int64, torch.int32):
            raise InputError(f"{where}: expected integer token ids, got dtype {oracle.dtype}")
        if oracle.numel() and (int(oracle.min()) < self.zero_token_id or int(oracle.max()) > self.text_card):
            bad = oracle[(oracle < self.zero_token_id) | (oracle > self.text_card)]
            raise InputError(
                f"{where}: token id {int(bad[0])} out of range [0, {self.text_card}] "
                f"(text_card={self.text_card}; -1 means 'no input')"
            )

    def forward(  # type: ignore[override]
        self,
        codes: torch.Tensor,
        condition_tensors: Any = None,
        oracle: torch.Tensor | None = None,
        text_only: bool = False,
    ) -> LMOutput:
        """Teacher-forced forward pass, as Moshi's, with an optional oracle stream.

        Args:
            codes: `[B, K, T]` int64, K = 1 text + n_q audio streams.
            condition_tensors: Moshi's conditioning (None for Moshi/KAME checkpoints).
            oracle: `[B, T]` or `[B, 1, T]` oracle ids in frame coordinates (see module doc),
                typically from `kamevoice.oracle.timeline`. None: no oracle input at all
                (plain Moshi behaviour).
            text_only: skip the depth transformer (the audio logits come back NaN, masked out):
                for batches with no audio targets, e.g. oracle copy episodes, where it would
                cost ~4/5 of the step on the tiny model for nothing.
        Returns:
            Moshi's `LMOutput`: logits `[B, dep_q, T, card]`, mask, text_logits `[B, 1, T, text_card]`,
            text_mask; already aligned with `codes`.
        """
        self._check_codes(codes)
        if oracle is None and not text_only:
            return super().forward(codes, condition_tensors)
        B, _, T = codes.shape
        if oracle is None:
            oracle = torch.full((B, T), self.text_ids.pad, dtype=torch.long, device=codes.device)
        if oracle.dim() == 3:
            if oracle.shape[1] != 1:
                raise InputError(f"oracle: expected shape [B, 1, T] or [B, T], got {tuple(oracle.shape)}")
            oracle = oracle[:, 0]
        if tuple(oracle.shape) != (B, T):
            raise InputError(f"oracle: expected shape ({B}, {T}) to match codes, got {tuple(oracle.shape)}")
        self.check_oracle_ids(oracle)
        # Step s reads the oracle id of frame s - 1; step 0 the layout's initial input.
        initial = self.oracle_layout.initial_input(self.text_ids)
        first = torch.full((B, 1), initial, dtype=oracle.dtype, device=oracle.device)
        oracle_inputs = torch.cat([first, oracle[:, :-1]], dim=1)  # [B, T]
        oracle_sum = self.oracle_condition(oracle_inputs)  # [B, T, dim]
        if text_only:
            return self._forward_text_only(codes, condition_tensors, oracle_sum)
        return self._forward_with_sum(codes, condition_tensors, oracle_sum)

    def forward_text(
        self,
        sequence: torch.Tensor,
        sum_condition: torch.Tensor | None = None,
        cross_attention_src: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Moshi's `forward_text`, with the sum condition (the oracle embedding) added where the
        layout puts it: to the text embedding before the audio embeddings (`text_first`, the
        published order), else after both (moshi's own order)."""
        if sum_condition is None or not self.oracle_layout.text_first:
            return super().forward_text(sequence, sum_condition, cross_attention_src)
        if sequence.shape[1] != self.num_codebooks:
            raise InputError(f"sequence: expected {self.num_codebooks} streams, got {tuple(sequence.shape)}")
        audio = None
        for cb_index in range(self.num_audio_codebooks):
            emb = self.emb[cb_index](sequence[:, cb_index + self.audio_offset])
            audio = emb if audio is None else audio + emb
        text = self.text_emb(sequence[:, 0])
        text = text + sum_condition.to(text)
        input_ = text if audio is None else audio + text
        if cross_attention_src is not None:
            cross_attention_src = cross_attention_src.to(input_)
        out = self.transformer(input_, cross_attention_src=cross_attention_src)
        if self.out_norm:
            out = self.out_norm(out)
        text_logits = self.text_linear(out)[:, None]
        return out, text_logits

    def _forward_text_only(
        self, codes: torch.Tensor, condition_tensors: Any, extra_sum: torch.Tensor
    ) -> LMOutput:
        """The temporal transformer and text head only, laid out as Moshi's `forward` lays them out."""
        if condition_tensors is not None:
            raise InputError("text_only: conditioned models are not supported")
        B, _, T = codes.shape
        initial = self._get_initial_token().expand(B, -1, -1)
        delayed = torch.cat([initial, _delay_sequence(self.delays, codes, initial)], dim=2)  # [B, K, T + 1]
        _, text_logits = self.forward_text(delayed[:, :, :-1], extra_sum)  # [B, 1, T, text_card]
        text_logits, text_mask = _undelay_sequence(self.delays[:1], text_logits, fill_value=float("nan"))
        text_mask &= codes[:, :1] != self.zero_token_id
        # No audio prediction: a NaN view of the right shape (no memory) and an all-False mask.
        audio_logits = text_logits.new_full((), float("nan")).expand(B, self.dep_q, T, self.card)
        audio_mask = torch.zeros(B, self.dep_q, T, dtype=torch.bool, device=codes.device)
        return LMOutput(audio_logits, audio_mask, text_logits, text_mask)

    def _forward_with_sum(
        self, codes: torch.Tensor, condition_tensors: Any, extra_sum: torch.Tensor
    ) -> LMOutput:
        """Moshi's forward pass with `extra_sum` added into `forward_text`'s sum condition."""
        original = self.forward_text

        def forward_text(sequence, sum_condition=None, cross_attention_src=None):
            total = extra_sum if sum_condition is None else extra_sum + sum_condition.to(extra_sum)
            return original(sequence, total, cross_attention_src)

        # Moshi's forward reaches forward_text by attribute lookup; an instance attribute
        # shadows the method for the duration of this call only.
        self.forward_text = forward_text  # type: ignore[method-assign]
        try:
            return super().forward(codes, condition_tensors)
        finally:
            del self.forward_text

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise InputError(
                f"codes: expected shape [B, {self.num_codebooks}, T] (1 text + {self.n_q} audio streams), "
                f"got {tuple(codes.shape)}"
            )
        if codes.dtype != torch.int64:
            raise InputError(f"codes: expected int64 token ids, got {codes.dtype}")
        text, audio = codes[:, :1], codes[:, 1:]
        if codes.numel() and (int(text.min()) < -1 or int(text.max()) > self.text_card):
            raise InputError(f"codes: text token ids must lie in [-1, {self.text_card}]")
        if codes.numel() and (int(audio.min()) < -1 or int(audio.max()) > self.card):
            raise InputError(f"codes: audio token ids must lie in [-1, {self.card}]")


def text_ids_for(lm_kwargs: dict[str, Any]) -> TextIds:
    """The text ids a model built from config.json-style `lm_kwargs` will use: the configured
    values, else moshi's `LMModel` defaults (what `KameLM.text_ids` would report)."""
    defaults = inspect.signature(LMModel.__init__).parameters

    def value(name: str) -> int:
        return int(lm_kwargs.get(name, defaults[name].default))

    # Moshi's initial text id is `text_card` (LMModel.text_initial_token_id).
    return TextIds(
        pad=value("existing_text_padding_id"),
        end_of_padding=value("existing_text_end_padding_id"),
        start=int(lm_kwargs["text_card"]),
    )


def lm_argument_names() -> frozenset[str]:
    """Names `KameLM(**kwargs)` accepts directly (transformer extras are checked separately)."""
    return _LM_OWN_ARGS
