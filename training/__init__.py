"""mrrec_train: the workstation side of mrrec-edge (the ``mrrec-edge-train`` distribution).

Training the model (SFT, GRPO) and writing the model bundle devices run: the LLM export
(:mod:`mrrec_train.export`), the embedder export (:mod:`mrrec_train.embedder_export`) and the
bundle writer (:mod:`mrrec_train.bundle_writer`, the ``mrrec bundle build`` plugin). Installed
from this folder (``pip install ./training``; ``-e`` in a checkout, so publishing writes here);
everything here may import torch. It imports ``mrrec_edge``; ``mrrec_edge`` never imports it.
"""
