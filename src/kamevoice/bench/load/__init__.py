"""The load bench (`kamevoice bench serve`, `kamevoice bench tiny`): load on a real server, measured.

For each client count N, a `KameServer` with `max_sessions=N` (so the engine
steps a batch of N) is started in-process on loopback, and N simulated
clients connect over WebSocket, each sending the question speech in a loop as
Ogg/Opus at speaking pace (one 80 ms frame every 80 ms on an absolute
schedule) for `seconds`, with the back-end (STT + LLM) on unless told
otherwise. Clients and server share this process and its cores, as a browser
on the same laptop would; the clients run on a thread (and event loop) of their
own, so that their CPU is measured apart from the session's.

Figures per N (the first `rounds.WARMUP_S` are left out), each defined in the
module that measures it:
- `rounds`: step time percentiles, overruns and underruns, memory, step RTF, back-end lag;
- `clients`: audio latency (the delay the system adds to model audio);
- `cpu`: CPU seconds of every part, `cpu_rtf`, `cpu_cores`, `cpu_rtf_with_clients`;
- `realtime`: when a round held real time, and `max_realtime_sessions`.

The other modules: `question` (what the clients say), `options` (what to measure and where the
figures go), `run` (the one run function, `run_load_bench`), `report` (table, JSON),
`plot` (the PNG), `commands` (the two commands' options, and where settings are resolved).
"""
