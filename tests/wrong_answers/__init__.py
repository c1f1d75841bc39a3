"""A plausible wrong answer per exercise, one module per chapter (``chNN.py`` with ``WRONG``)."""
