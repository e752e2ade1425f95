"""What a user names when picking a model and what follows its blocks: the default model and the heads. Torch-free,
so that the command line reads and checks its arguments before torch loads."""

DEFAULT_MODEL = "smollm2-135m"
HEADS = ("none", "norm", "logits", "logits_nonorm")
HEAD_HELP = "what follows the blocks: none, the final norm, norm + LM head (logits), the LM head alone (logits_nonorm)"
