"""Workstation side of mrrec-edge: training the model and exporting it to the device bundle.

Everything here may import torch (the ``train`` extra); the installed assistant never imports this
package. ``training.export`` turns the base model (plus an optional LoRA adapter) into the
onnxruntime-genai folder that becomes a bundle's ``llm/``.
"""
