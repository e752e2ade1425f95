"""lmrep: what do the layers of a language model keep about their input?

The public API, in the order a researcher meets it::

    lm = load_model("smollm2-135m")                      # or "gpt2", untrained=True; a hub name; a folder
    O = layer_model(lm, 3)                                # O_l: embeddings (B, T, d) -> layer output
    recs = list(invert(O, ["The sky is blue."], InvertConfig(steps=500)))
    Decoder(lm, "pinv")(embeddings)                       # embeddings -> token ids
    list(invert(O, prompts, InvertConfig(method="exact")))  # left-to-right search with a certificate
    list(invert_outputs(O, states, InvertConfig(method="exact")))  # observed (T, D) / (N, T, D) states, no text
    walk(O, ["The sky is blue."], WalkConfig(method="jacobian"))  # inputs that leave O's output unchanged

The package, by idea: models/ (loading, architectures, truncation to O_l, the self-check), objective/ (targets,
losses, decoders, the lr schedule, batches), records/ (run folders, checks of what users give, statistics, figures);
inversion/ (gd, pez, exact/, states files), walks/, vision/; experiments/ (the page's claims as measured
experiments) and cli/ sit on top and are never imported by the rest.
"""
from .errors import LmrepError
from .lazy import lazy

__all__ = ["Decoder", "InvertConfig", "LayerModel", "LmrepError", "LoadedModel", "invert", "invert_outputs",
           "layer_model", "load_model", "resolve_layer", "summarize", "walk", "WalkConfig"]
# the API's names, each imported from its module on first use, so that the command line can read and check its
# arguments before torch loads
__getattr__, __dir__ = lazy(__name__, {
    "Decoder": "objective.decode", "InvertConfig": "inversion", "invert": "inversion",
    "invert_outputs": "inversion", "summarize": "inversion", "LayerModel": "models.layers",
    "layer_model": "models.layers", "resolve_layer": "models.layers", "LoadedModel": "models.load",
    "load_model": "models.load", "WalkConfig": "walks", "walk": "walks"})
