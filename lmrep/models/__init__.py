"""Loading and truncating models: known names, hub names and folders (load), GGUF conversion (gguf, hub), where
each architecture keeps its blocks (architectures), the layer output O_l by name (layers) and the first self-check
of every loaded model against its own hidden states (selfcheck)."""
