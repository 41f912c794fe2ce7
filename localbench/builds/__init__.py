"""Layer 2: building the native tools the runtimes drive (llama.cpp from its sdist, Ollama from its Go module)."""
