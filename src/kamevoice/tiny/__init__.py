"""KAME-tiny (issue 7): an invented-facts task, its tokenizer, and `kamevoice tiny build`."""
