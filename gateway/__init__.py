"""lockgate's service and CLI root: the OpenAI-compatible gateway."""
