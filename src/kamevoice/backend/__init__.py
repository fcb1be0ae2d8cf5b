"""The back-end: streaming speech-to-text and a text LLM that feed the front-end's oracle stream."""
