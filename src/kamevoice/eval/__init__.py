"""Evaluation: spoken MT-Bench with an LLM judge, response latency, baselines and reports.

    kamevoice eval mtbench --checkpoint DIR                     # offline: no judge, knowledge-word metric
    kamevoice eval mtbench --checkpoint DIR --judge-base-url http://127.0.0.1:8080/v1 --judge-model M
    kamevoice eval mtbench --systems kame --delays paper        # the latency-quality curve
    kamevoice eval mtbench --categories stem --limit 2 --judge-runs 1 --out /tmp/quick

What happens (modules):

- `mtbench`: FastChat question/reference files (vendored in `data/`, Apache-2.0,
  see `data/SOURCE.md`); each question's user turns are synthesised (espeak by
  default) and laid out on one timeline with a fixed reply window after each turn.
- `systems`: `kame` (front-end + back-end), `frontend` (oracle off),
  `backend-text` (the back-end's final oracle per turn, text only) and
  `kame-delay-<D>s` (`forcing`: the front-end is forced silent until D s after
  each turn) run through file mode on the virtual clock (`--realtime`: wall
  clock); `cascade` (STT -> LLM -> TTS) in `cascade`.
- Replies per turn are read from the inner monologue and, separately, from an
  STT transcript of the system's audio (`transcribe`); both are scored.
- `judge`: FastChat single-answer grading (reference-guided for reasoning,
  multi-turn prompts for turn 2), N runs, raw outputs kept. Without a judge:
  the knowledge-word metric (`metrics`).
- Latency per turn from the event log (`kamevoice.runtime.latency`) against the true end
  of speech: reply onset, first oracle piece, first content word of the final
  oracle; medians with raw values (`runner.CLIPPING_NOTE` states the clipping).
- `tiny` (`kamevoice eval tiny`): KAME-tiny's knowledge injection, held-out spoken
  questions with the live, absent or delayed oracle, key words scored by `keywords`
  in the inner monologue and the STT of the audio; report in `tiny_report`.
- `harness`: what both evaluations run on: the full configuration and the run
  log next to the results, resumable records (atomic files with fingerprints),
  work counts, progress bars, engines loaded once; `runner`: MT-Bench's run on it;
  `report`: table.md (the paper's Table 2 shape), results.json,
  latency_quality.png (the paper's points for reference).
"""
