"""A model trained a few steps, streamed with `BatchedGenerator`, reads the oracle ids it was trained on.

The training sample's oracle is laid out by `ShardDataset` (via `layout_oracle`);
streaming feeds the same events live through `begin_oracle` / `feed_oracle`.
Step s of the stream reads frame s - 1 (step 0 reads the layout's initial
input, as `KameLM.forward` prepends it: PAD in the published layout the run
trains with), so the ids of steps 1..T must equal the training sample's
`oracle[0 .. T-1]` (that streaming then computes what `forward` computes is
`tests/frontend/test_generator.py`'s job).
"""

from __future__ import annotations

import torch

from kamevoice.data.shards import read_example
from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.oracle.timeline import OracleEvent, layout_oracle
from kamevoice.train.distributed import DistContext
from kamevoice.train.loop import Trainer
from tests.train.helpers import tiny_config


def test_trained_model_streams_the_oracle_it_was_trained_with(tmp_path, shards, spm_path):
    train_dir, _ = shards
    # Whole dialogues (seq_len above every length), no augmentation: the events are the shard's own.
    config = tiny_config(tmp_path / "run", train_dir, spm_path, data={"seq_len": 64, "augment": False})
    trainer = Trainer(config, DistContext())
    trainer.fit(stop_at=3)
    model = trainer.model.eval()

    mix = trainer.train_data
    index = mix.order(0)[0]
    sample = mix.sample(index, epoch=0)  # exactly what training read (no augmentation: epoch-independent)
    shard, item_id, frames = mix.parts[0].entries[index]
    example = read_example(shard, item_id)
    events = [OracleEvent(o.frame, o.tokens) for o in example.oracles]
    assert events and torch.equal(
        sample["oracle"], torch.from_numpy(layout_oracle(events, frames, trainer.ids))
    )

    T = frames
    user = sample["codes"][1 + model.dep_q :]  # [n_user, T]
    streamed = []
    with torch.no_grad(), BatchedGenerator(model, 1, SamplingOptions(greedy=True)) as gen:
        handle = gen.start()
        for step in range(T + 1):
            # An event at frame f begins before step f + 1, the step that reads frame f.
            for event in events:
                if event.frame + 1 == step:
                    gen.begin_oracle(handle)
                    gen.feed_oracle(handle, event.tokens)
            codes = user[:, min(step, T - 1)][None]  # user tokens (their values do not matter here)
            streamed.append(int(gen.step(codes).oracle[0]))
    ids = model.text_ids
    assert model.oracle_layout.name == "kame"  # a run without a declared layout trains the published one
    assert streamed[0] == model.oracle_layout.initial_input(ids) == ids.pad
    assert streamed[1:] == sample["oracle"].tolist()
    assert streamed.count(ids.start) == len(events)
