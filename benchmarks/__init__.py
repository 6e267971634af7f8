"""Scripts that print speed and memory figures (see docs/benchmarks.md); run each as a script."""
