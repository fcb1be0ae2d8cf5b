"""The adversarial bench: attacks against a live server beside an honest conversation.

`server` runs `kamevoice serve` in its own process; `attacks` are the unauthenticated
clients; `reference` is the honest caller and the probes; `run` puts them together and
judges; `commands` is `kamevoice bench adversarial`.
"""
