"""LoRA adapters for GGUF models (the default Gemma 3 270M above all).

The GGUF file is dequantised once through `transformers` into a cached Hugging Face folder
(`base.py`); a LoRA is trained on it with `peft` (`train.py`); llama.cpp's own
`convert_lora_to_gguf.py` writes the adapter as a GGUF LoRA (`convert.py`), which llama.cpp
applies on top of the quantised model at load time. `registry.py` names adapters as models;
`corpus.py` builds the corpora of the shipped adapters.
"""
