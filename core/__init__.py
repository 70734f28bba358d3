"""What training (recipes/) and evaluation (evaluate/) share about the model, below both: the
prompt format, precision, where a model comes from, the processor's image budget, and logging."""
