"""Pure-functional diffusion math: no Flax, no I/O, no global state."""
