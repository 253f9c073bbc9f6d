"""One module per use case: read state through adapters, ask the domain what to do, apply it."""
