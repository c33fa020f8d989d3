"""Backends behind one interface: MuseGPT models, llama.cpp (GGUF), transformers folders."""
