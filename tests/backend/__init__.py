"""Tests of the back-end: STT, LLM providers, knowledge base, oracle scheduler."""
