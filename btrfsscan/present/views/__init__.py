"""Result objects turned into format-neutral documents, one module per family of commands."""
