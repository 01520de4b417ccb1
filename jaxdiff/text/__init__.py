"""Text for text-to-image models: tokenizers, text encoders (a small one trained with the
diffusion model; a frozen Flax T5 / FLAN-T5 loaded from a Hugging Face checkpoint directory)."""
