"""What is optimised and how it is read back: targets (what can be inverted or walked), losses (distances to a
target), decoders (embeddings -> token ids), the learning-rate schedule and padded batches whose items never see
each other."""
