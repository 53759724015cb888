"""The HTTP API of webhook handoff: integration settings, handoffs, test sends and history."""
